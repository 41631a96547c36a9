"""Callbacks that plant failures inside a real `snn-train` process (used by tests/test_faults.py)."""
from __future__ import annotations

import os
import signal

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Sends ``signum`` to this process at the end of training step ``at_step`` (SIGKILL: dies there)."""

    def __init__(self, at_step: int, signum: str = "SIGTERM"):
        self.at_step, self.signum = at_step, getattr(signal, signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)
