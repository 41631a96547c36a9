"""PNG figures at the end of fit and test, written to the run folder and logged to wandb."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from .. import plots, runs
from .._checks import choice
from ._base import clear_stale_stage_data, figures_dir
from ._logging import csv_metrics_path, log_images


class FigureCallback(pl.Callback):
    """Draws the paper's analysis figures from the stage data files the observability callbacks write.

    At the end of fit (from the last validation epoch; the last recorded training step when there
    was no validation) and at the end of test, into ``dirpath`` (default
    ``<trainer.default_root_dir>/figures``):

    * ``<stage>_membrane_<layer>.png`` — M[t] distribution per timestep (Fig. 1), for each
      histogram layer of :class:`NeuronStatsCallback`;
    * ``<stage>_firing_rate.png`` — firing rate per timestep, ``fr_layers`` layers (Fig. 6);
    * ``<stage>_predictions.png`` — predicted-class distribution per timestep (Fig. 7);
    * ``<stage>_logit_pca.png`` — PCA of logits per timestep (Figs. 4-5);
    * ``training_curves.png``, ``neuron_params.png`` (fit only) — loss/accuracy curves and V_thr, τ,
      MP-Init mean of every layer over training, from the CSV logger's ``metrics.csv`` (without a
      CSV logger: this callback's own record of ``train/``/``val/`` metrics per epoch and the
      ``data/params.jsonl`` history :class:`NeuronStatsCallback` appends to).

    The stage figures come from ``<dirpath>/data/<stage>.json`` (``runs.stage_data_path``), written by
    :class:`NeuronStatsCallback` and :class:`TimestepPredictionCallback` given the same ``dirpath``
    (``conf/callbacks/default.yaml`` sets all three to the run's ``figures/``), and are drawn by
    ``plots.draw_stage_data``, as ``snn-analyze`` draws its own. Every PNG is also logged to each
    wandb logger as the image ``figures/<name>``. Runs on global rank 0 only.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        fr_layers: int = 6,
        pred_mode: str = "instant",
        at_fit_end: bool = True,
        at_test_end: bool = True,
        log_to_wandb: bool = True,
    ):
        super().__init__()
        self.dirpath = None if dirpath is None else str(dirpath)
        self.fr_layers = int(fr_layers)
        self.pred_mode = choice("pred_mode", pred_mode, ("instant", "cumulative"))
        self.at_fit_end = bool(at_fit_end)
        self.at_test_end = bool(at_test_end)
        self.log_to_wandb = bool(log_to_wandb)
        self.history: dict[str, tuple[list[float], list[float]]] = {}
        self.written: dict[str, Path] = {}

    def _dir(self, trainer) -> Path:
        return figures_dir(trainer, self.dirpath)

    def setup(self, trainer, pl_module, stage: str) -> None:
        clear_stale_stage_data(trainer, self.dirpath, stage)

    # memory fallback for the curves when no CSV logger is attached
    def _snapshot(self, trainer) -> None:
        if trainer.sanity_checking:
            return
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")):
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    continue
                s = self.history.setdefault(key, ([], []))
                s[0].append(float(trainer.global_step))
                s[1].append(v)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._snapshot(trainer)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit":
            self._snapshot(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not (self.at_fit_end and trainer.is_global_zero):
            return
        outdir = self._dir(trainer)
        has_val = runs.read_stage_data(runs.stage_data_path(outdir, "val")) is not None
        written = self.draw_stage(outdir, "val" if has_val else "train")
        csv_path = csv_metrics_path(trainer)
        history = runs.read_metrics_csv(csv_path).history() if csv_path is not None else {}
        if not history:
            history = dict(self.history)
            history.update(runs.read_history(runs.param_history_path(outdir)))
        written.update(plots.write_history_figures(outdir, history))
        self._publish(trainer, written)

    def on_test_end(self, trainer, pl_module) -> None:
        if not (self.at_test_end and trainer.is_global_zero):
            return
        self._publish(trainer, self.draw_stage(self._dir(trainer), "test"))

    def draw_stage(self, outdir: Path, stage: str) -> dict[str, Path]:
        """The figures of ``stage`` from its data file in ``outdir`` (``{}`` when there is none)."""
        return plots.draw_stage_data(runs.stage_data_path(outdir, stage), outdir, self.fr_layers, pred_mode=self.pred_mode)

    def _publish(self, trainer, written: dict[str, Path]) -> None:
        self.written.update(written)
        if written and self.log_to_wandb:
            log_images(trainer, written, step=trainer.global_step)
