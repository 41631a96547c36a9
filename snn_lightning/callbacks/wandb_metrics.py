"""wandb step axes and summaries for SNN runs, set when a run starts (``wandb_workspace.define_metrics``)."""
from __future__ import annotations

import lightning.pytorch as pl

from ._logging import is_wandb


class WandbMetricDefinitions(pl.Callback):
    """Calls :func:`snn_lightning.wandb_workspace.define_metrics` on every wandb logger's run at setup (rank 0):
    epoch-level keys against ``epoch``, ``val/acc`` summarized by its maximum, ``val/loss`` by its minimum.
    Without a wandb logger it does nothing."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        from ..wandb_workspace import define_metrics

        for logger in trainer.loggers:
            if is_wandb(logger):
                define_metrics(logger.experiment)
