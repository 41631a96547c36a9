"""PNG figures at the end of fit and test, written to the run folder and logged to wandb."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl

from .. import plots
from ..runs import write_json
from ._logging import csv_metrics_path, log_images
from .neuron_stats import NeuronStatsCallback
from .predictions import TimestepPredictionCallback


class FigureCallback(pl.Callback):
    """Draws the paper's analysis figures from what the other observability callbacks collected.

    At the end of fit (from the last validation epoch; the last recorded training step when there
    was no validation) and at the end of test, into ``dirpath`` (default
    ``<trainer.default_root_dir>/figures``):

    * ``<stage>_membrane_<layer>.png`` — M[t] distribution per timestep (Fig. 1), for each
      histogram layer of :class:`NeuronStatsCallback`;
    * ``<stage>_firing_rate.png`` — firing rate per timestep, ``fr_layers`` layers (Fig. 6);
    * ``<stage>_predictions.png`` — predicted-class distribution per timestep (Fig. 7);
    * ``<stage>_logit_pca.png`` — PCA of logits per timestep (Figs. 4-5);
    * ``training_curves.png``, ``neuron_params.png`` (fit only) — loss/accuracy curves and V_thr, τ,
      MP-Init mean of every layer over training, from the CSV logger's ``metrics.csv`` (or from the
      callbacks' own history when no CSV logger is attached).

    The numbers behind each stage's figures go to ``data/<stage>.json``. Every PNG is also logged
    to each wandb logger as the image ``figures/<name>``. Runs on global rank 0 only.
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
        if pred_mode not in ("instant", "cumulative"):
            raise ValueError(f"pred_mode must be 'instant' or 'cumulative', got {pred_mode!r}")
        self.dirpath = dirpath
        self.fr_layers = int(fr_layers)
        self.pred_mode = pred_mode
        self.at_fit_end = bool(at_fit_end)
        self.at_test_end = bool(at_test_end)
        self.log_to_wandb = bool(log_to_wandb)
        self.history: dict[str, tuple[list[float], list[float]]] = {}
        self.written: dict[str, Path] = {}

    def _dir(self, trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "figures"

    @staticmethod
    def _find(trainer, cls):
        return next((cb for cb in trainer.callbacks if isinstance(cb, cls)), None)

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
        stage = "val" if self._has_stage(trainer, "val") else "train"
        written = self._stage_figures(trainer, stage)
        history = None
        csv_path = csv_metrics_path(trainer)
        if csv_path is not None:
            history = plots.load_metrics_csv(csv_path)
        if not history:
            history = dict(self.history)
            stats = self._find(trainer, NeuronStatsCallback)
            if stats is not None:
                history.update(stats.history)
        written.update(plots.write_history_figures(self._dir(trainer), history))
        self._publish(trainer, written)

    def on_test_end(self, trainer, pl_module) -> None:
        if not (self.at_test_end and trainer.is_global_zero):
            return
        self._publish(trainer, self._stage_figures(trainer, "test"))

    def _has_stage(self, trainer, stage: str) -> bool:
        stats = self._find(trainer, NeuronStatsCallback)
        preds = self._find(trainer, TimestepPredictionCallback)
        return bool((stats and stage in stats.last) or (preds and stage in preds.last))

    def _stage_figures(self, trainer, stage: str) -> dict[str, Path]:
        stats = self._find(trainer, NeuronStatsCallback)
        preds = self._find(trainer, TimestepPredictionCallback)
        neurons = stats.last.get(stage) if stats else None
        hists = stats.last_hist.get(stage) if stats else None
        pred = preds.last.get(stage, {}) if preds else {}
        data = {"stage": stage, "global_step": trainer.global_step, "neurons": neurons, "histograms": hists,
                "predictions": pred.get("predictions"), "pca": pred.get("pca")}
        if not any(data[k] for k in ("neurons", "histograms", "predictions", "pca")):
            return {}
        outdir = self._dir(trainer)
        write_json(outdir / "data" / f"{stage}.json", data)
        return plots.write_stage_figures(
            outdir, stage, neurons, hists, data["predictions"], data["pca"], self.fr_layers, pred_mode=self.pred_mode
        )

    def _publish(self, trainer, written: dict[str, Path]) -> None:
        self.written.update(written)
        if written and self.log_to_wandb:
            log_images(trainer, written, step=trainer.global_step)
