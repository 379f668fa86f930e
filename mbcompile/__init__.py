"""mbcompile: a declarative, spec-driven compiler for the MobileNet family."""

from .version import __version__

__all__ = ["__version__"]
