"""Sending metrics, histograms and images to every logger a Trainer has."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import runs


def is_wandb(logger) -> bool:
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return False
    return isinstance(logger, WandbLogger)


def is_csv(logger) -> bool:
    from lightning.pytorch.loggers import CSVLogger

    return isinstance(logger, CSVLogger)


def log_scalars(trainer, metrics: Mapping[str, float], step: int) -> None:
    """Log straight to each logger (CSV, wandb, …), bypassing ``self.log``: no per-key bookkeeping,
    and the run's ``callback_metrics`` (hence ``metrics.json``) stays free of per-layer numbers."""
    if not metrics:
        return
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)


def log_histograms(trainer, hists: Mapping[str, dict], prefix: str, step: int) -> None:
    """Per-timestep histograms to wandb only, as ``<prefix>/<layer>/v_hist_t<t>``."""
    loggers = [lg for lg in trainer.loggers if is_wandb(lg)]
    if not loggers or not hists:
        return
    import numpy as np
    import wandb

    payload = {}
    for layer, h in hists.items():
        edges = np.asarray(h["edges"], dtype=np.float64)
        for t, counts in enumerate(h["counts"], start=1):
            payload[f"{prefix}/{layer}/v_hist_t{t}"] = wandb.Histogram(np_histogram=(np.asarray(counts), edges))
    for logger in loggers:
        logger.log_metrics(payload, step=step)


def log_images(trainer, paths: Mapping[str, Path], step: int | None = None) -> None:
    """PNG files to every wandb logger as ``figures/<key>``."""
    for logger in trainer.loggers:
        if is_wandb(logger):
            for key, path in paths.items():
                logger.log_image(key=f"figures/{key}", images=[str(path)], step=step)


def csv_metrics_path(trainer) -> Path | None:
    """Flush the first CSVLogger and return its ``metrics.csv`` (None without one)."""
    for logger in trainer.loggers:
        if is_csv(logger):
            logger.save()
            path = Path(logger.log_dir) / runs.METRICS_CSV
            return path if path.is_file() else None
    return None
