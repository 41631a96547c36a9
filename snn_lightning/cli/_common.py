"""The one failure policy of every console script.

A :class:`~snn_lightning.errors.UserError` (a bad value, a missing file or dataset, a bad path) is
printed as one ``error:`` line on stderr and the process exits 2. Anything else is a bug and keeps
its traceback (the run's ``error.log`` gets it too, where a run folder exists).
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from ..errors import UserError

T = TypeVar("T")
EXIT_USER_ERROR = 2


def one_line(text: object) -> str:
    """Collapse whitespace (newlines included) so a message fits on one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


def error_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line (its type name when it has no message)."""
    return one_line(exc) or type(exc).__name__


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


def guarded(fn: Callable[..., T], *args, **kwargs) -> T:
    """Call ``fn``; a UserError becomes one ``error:`` line and exit 2, anything else propagates."""
    try:
        return fn(*args, **kwargs)
    except UserError as e:
        fail(error_line(e))
