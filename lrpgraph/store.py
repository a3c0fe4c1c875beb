"""Deprecated import path, kept for one release: the dataset store moved to
:mod:`lrpgraph.data.store` (import from there)."""

from .data.store import *  # noqa: F401,F403
from .data.store import __all__  # noqa: F401
