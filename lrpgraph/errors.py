"""The errors lrpgraph raises for input it cannot use, in the library's own terms.

:class:`InputError` (a ValueError) is raised for a model, image, file, text, class
name, method or parameter the library cannot use.  Its message names the cause and
the fix as the library spells it (the argument of the call: ``vocab=``,
``unsafe=True``...); ``param`` names that argument, so that a front end can give the
same advice in its own spelling: the command line (:mod:`lrpgraph.cli`) turns
``param="vocab"`` into ``--vocab FILE``.  Imports nothing, so every module may use it.
"""

from __future__ import annotations

__all__ = ["LrpgraphError", "InputError"]


class LrpgraphError(Exception):
    """Base of lrpgraph's own errors."""


class InputError(LrpgraphError, ValueError):
    """A model, image, file, text, class name, method or parameter the library cannot
    use; the message names it and the fix.

    ``param``: the name of the argument whose value is at fault or that fixes it
    (``"vocab"``, ``"text"``, ``"unsafe"``, ``"size"``, ``"labels"``, ``"target"``,
    ``"weights"``, ``"method"``, ``"preprocess"``), or None.  ``value``: the value to
    pass to it where the fix is one value (``param="target", value="predicted"``)."""

    def __init__(self, message, *, param=None, value=None):
        super().__init__(message)
        self.param = param
        self.value = value
