"""SIGTERM / SIGINT while a run is going: record the signal, stop at a consistent point (plain Python).

A preemptible queue (SLURM) sends SIGTERM some time before it kills the job; Ctrl+C sends SIGINT.
While a training loop runs (``deferring``), the handler only records the signal, and
:class:`snn_lightning.callbacks.interrupt.InterruptCallback` acts at the next training-batch (or
epoch) end: it writes ``last.ckpt`` and raises :class:`Interrupted`, which ``snn-train`` turns into
status ``interrupted`` and exit code 128 + signal (143 for SIGTERM, 130 for SIGINT). Outside a
training loop, or on a second signal, the handler raises at once. No torch here: ``snn-train``
installs the handlers before it imports torch.
"""
from __future__ import annotations

import signal
import threading

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The run was stopped by a signal; ``checkpoint`` is where its state was saved (or None).

    A BaseException (like KeyboardInterrupt), so no `except Exception` on the way up swallows it.
    """

    def __init__(self, signum: int, epoch: int | None = None, step: int | None = None, checkpoint: str | None = None):
        self.signum, self.epoch, self.step, self.checkpoint = int(signum), epoch, step, checkpoint
        where = "" if step is None else f" at epoch {epoch}, step {step}"
        saved = f"; checkpoint saved to {checkpoint}" if checkpoint else ""
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}{where}{saved}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    requested: int | None = None  # the signal received while a training loop runs
    deferring: bool = False  # a training loop will act on the signal at its next batch end


def _handler(signum, _frame) -> None:
    if _State.deferring and _State.requested is None:
        _State.requested = signum
        return
    raise Interrupted(signum)


def install_signal_handlers() -> dict:
    """Install the handler for SIGTERM and SIGINT; returns the previous handlers (for :func:`restore`)."""
    _State.requested, _State.deferring = None, False
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return {}
    return {s: signal.signal(s, _handler) for s in HANDLED}


def restore_signal_handlers(previous: dict) -> None:
    for s, h in previous.items():
        signal.signal(s, h)
    _State.requested, _State.deferring = None, False


def take_over_handlers() -> None:
    """Install our handler again (Lightning replaces SIGTERM's at the start of fit) and defer signals."""
    if threading.current_thread() is threading.main_thread():
        for s in HANDLED:
            signal.signal(s, _handler)
    _State.deferring = True


def requested_signal() -> int | None:
    return _State.requested


