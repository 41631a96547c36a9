"""What every observability callback shares: the val/test hook mapping, the record schedule, the files.

Lightning has six hooks for an evaluation epoch (``on_{validation,test}_{epoch_start,batch_end,
epoch_end}``); :class:`StageCallback` maps them once onto three stage-level hooks, so a callback that
watches evaluation epochs (neuron statistics, predictions, and later gradient or operation counts)
writes only what it does with a stage. What a stage collected goes to the run's stage data file
(``runs.stage_data_path``) through ``runs.write_stage_data``; :class:`~.figures.FigureCallback`
draws from those files, so no callback looks for another in ``trainer.callbacks``.
"""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from .. import runs
from .._checks import positive_int

# the stage data files a Trainer entry point produces anew (cleared when it starts)
STAGES_OF_FN = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def figures_dir(trainer, dirpath: str | None) -> Path:
    """``dirpath``, or the run's ``<trainer.default_root_dir>/figures``."""
    return Path(dirpath) if dirpath else runs.figures_dir(trainer.default_root_dir)


def clear_stale_stage_data(trainer, dirpath: str | None, fn: str) -> None:
    """Remove the data files the Trainer entry point ``fn`` is about to write (global rank 0), so
    the figures of this run never show a stage left over from an earlier one in the same folder."""
    if trainer.is_global_zero:
        runs.clear_stage_data(figures_dir(trainer, dirpath), STAGES_OF_FN.get(fn, ()))


class RecordSchedule:
    """Every ``every_n_steps`` optimizer steps (None: never), once per step even with gradient
    accumulation (the first micro-batch of the step records)."""

    def __init__(self, every_n_steps: int | None):
        self.every_n_steps = None if every_n_steps is None else positive_int("every_n_steps", every_n_steps)
        self._last: int | None = None

    def due(self, step: int) -> bool:
        """True (once) when ``step`` is a record step; marks it as recorded."""
        if self.every_n_steps is None or step % self.every_n_steps or step == self._last:
            return False
        self._last = step
        return True

    def start(self, recorder, step: int) -> int | None:
        """Reset and attach ``recorder`` when ``step`` is due; the step recorded, or None."""
        if recorder is None or not self.due(step):
            return None
        recorder.reset()
        recorder.attach()
        return step


class StageCallback(pl.Callback):
    """Base of the callbacks that collect over validation and test epochs.

    Subclasses implement :meth:`eval_start` (return False to skip the epoch), :meth:`eval_batch_end`,
    :meth:`eval_end` and :meth:`eval_stop` (drop whatever is installed; also called on teardown and
    on an exception). The stage hooks run only for enabled stages (``on_validation``, ``on_test``,
    read when the epoch starts) and never during the sanity check. :meth:`write_stage` writes a
    stage's parts to ``<dirpath>/data/<stage>.json`` (default dirpath: ``<default_root_dir>/figures``).
    """

    def __init__(self, on_validation: bool = True, on_test: bool = True, dirpath: str | None = None):
        super().__init__()
        self.on_validation = bool(on_validation)
        self.on_test = bool(on_test)
        self.dirpath = None if dirpath is None else str(dirpath)
        self._stage: str | None = None

    # -- for subclasses -------------------------------------------------------------------------
    def eval_start(self, stage: str, trainer, pl_module) -> bool | None:
        """An enabled evaluation epoch of ``stage`` ("val" or "test") begins."""

    def eval_batch_end(self, stage: str, trainer, pl_module, outputs, batch) -> None:
        """One batch of the running evaluation epoch is done."""

    def eval_end(self, stage: str, trainer, pl_module) -> None:
        """The evaluation epoch that :meth:`eval_start` accepted ends (every rank calls this)."""

    def eval_stop(self) -> None:
        """Remove hooks and monitors; forget a running epoch."""

    def stage_enabled(self, stage: str) -> bool:
        return self.on_validation if stage == "val" else self.on_test

    def figures_dir(self, trainer) -> Path:
        return figures_dir(trainer, self.dirpath)

    def write_stage(self, trainer, stage: str, step: int | None = None, **parts) -> None:
        """Write ``parts`` of ``stage``'s data file, stamped with ``step`` (default: the trainer's
        global step), on global rank 0 only; call it after reducing across ranks."""
        if trainer.is_global_zero:
            step = trainer.global_step if step is None else step
            runs.write_stage_data(runs.stage_data_path(self.figures_dir(trainer), stage), stage, step, **parts)

    # -- the mapping, once ----------------------------------------------------------------------
    def _start(self, stage: str, trainer, pl_module) -> None:
        self._stage = None
        if trainer.sanity_checking or not self.stage_enabled(stage):
            return
        if self.eval_start(stage, trainer, pl_module) is not False:
            self._stage = stage

    def _batch_end(self, stage: str, trainer, pl_module, outputs, batch) -> None:
        if self._stage == stage:
            self.eval_batch_end(stage, trainer, pl_module, outputs, batch)

    def _end(self, stage: str, trainer, pl_module) -> None:
        if self._stage == stage:
            self._stage = None
            self.eval_end(stage, trainer, pl_module)

    def setup(self, trainer, pl_module, stage: str) -> None:
        clear_stale_stage_data(trainer, self.dirpath, stage)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start("val", trainer, pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end("val", trainer, pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end("val", trainer, pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test", trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end("test", trainer, pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end("test", trainer, pl_module)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stage = None
        self.eval_stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stage = None
        self.eval_stop()
