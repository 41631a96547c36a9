"""Loggers of snn-lightning."""
from __future__ import annotations

import csv

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ContinuingWriter(ExperimentWriter):
    """Continues an existing ``metrics.csv`` (keeps its rows and header) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ContinuingCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a writer created on an existing ``metrics.csv`` appends to it.

    Why: under ``strategy=ddp_spawn`` (``trainer=ddp_cpu``) ``trainer.fit`` and ``trainer.test`` each run
    in freshly spawned processes holding a pickled copy of the logger; the test stage's copy creates a
    new writer, and Lightning's writer deletes the ``metrics.csv`` the fit stage wrote, so the training
    rows were lost. A run resumed (``ckpt_path``) into its own folder appends too.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
