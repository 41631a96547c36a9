"""The training-loop half of SIGTERM / SIGINT handling (the signal half is :mod:`snn_lightning.signals`).

While training, :class:`InterruptCallback` owns the handlers (Lightning's own SIGTERM handler, which
it installs at the start of ``fit``, would stop the run with exit 0 and no checkpoint); at the next
training-batch or epoch end after a signal it writes ``last.ckpt`` there and raises
:class:`~snn_lightning.signals.Interrupted`.
"""
from __future__ import annotations

import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from .. import runs
from ..signals import Interrupted, _State, take_over_handlers
from .checkpoint import save_checkpoint_atomic

__all__ = ["InterruptCallback", "Interrupted"]


class InterruptCallback(Callback):
    """Defers SIGTERM/SIGINT to the next batch end while training; saves ``last.ckpt`` there and raises."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_train_start(self, trainer, pl_module) -> None:
        take_over_handlers()  # Lightning registered its SIGTERM handler at the start of fit

    def on_train_end(self, trainer, pl_module) -> None:
        _State.deferring = False

    def on_exception(self, trainer, pl_module, exception) -> None:
        _State.deferring = False

    def _stop_if_requested(self, trainer) -> None:
        signum = _State.requested
        # every rank stops at the same step (a signal may reach the ranks a step apart, and the
        # checkpoint below is collective); one process: no communication
        if not trainer.strategy.reduce_boolean_decision(signum is not None, all=False):
            return
        signum = signum if signum is not None else signal.SIGTERM
        _State.deferring = False
        path = str(save_checkpoint_atomic(trainer, self.dirpath / runs.LAST_CKPT))
        raise Interrupted(signum, epoch=trainer.current_epoch, step=trainer.global_step, checkpoint=path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop_if_requested(trainer)
