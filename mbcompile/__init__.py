"""mbcompile: a declarative, spec-driven compiler for the MobileNet family."""

__version__ = "0.1.0"
