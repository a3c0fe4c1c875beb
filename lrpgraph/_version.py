"""The package version, in a module of its own so that any module can read it
without importing the package root (``from lrpgraph._version import __version__``)."""

__version__ = "0.1.0"
