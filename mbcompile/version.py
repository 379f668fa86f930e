"""The version of mbcompile, named in every generated header."""

__version__ = "0.1.0"
