"""The two kinds of failure the command-line tools tell apart (plain Python, no dependencies).

A :class:`UserError` is a mistake in what the user asked for (a bad config value, a missing dataset,
a bad path): the entry points print it as one ``error:`` line and exit 2. Every other exception is a
bug in our code (or a library's) and keeps its traceback. The library's validators raise
:class:`InvalidValue`, which is both: a ``ValueError`` for code that calls the library directly, and a
``UserError`` for the entry points — so a *plain* ``ValueError`` from deep inside a library is never
mistaken for the user's fault.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for; reported as one line, never with a traceback."""


class InvalidValue(UserError, ValueError):
    """An argument with a value outside what is allowed (raised by :mod:`snn_lightning._checks`)."""
