"""The numbers behind a stage's figures, the neuron-parameter history, and which checkpoint a folder means."""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .files import *  # noqa: F403 - the file names
from .files import Series, read_json, write_json


# -- the numbers behind a stage's figures --------------------------------------------------------------
# A stage data file (``figures/data/<stage>.json``, and ``snn-analyze``'s ``data.json``) holds
# {"stage", "global_step", "neurons", "histograms", "predictions", "pca"}: what the monitors collected
# in one evaluation pass (or one recorded training step), as plain numbers. The observability
# callbacks and ``snn-analyze`` write it through :func:`write_stage_data`; the figures are drawn
# from it by ``plots.draw_stage_data``.
STAGE_PARTS = ("neurons", "histograms", "predictions", "pca", "operations", "gradients")
STAGES = ("train", "val", "test")
ANALYSIS_DIR = "analysis"
ANALYSIS_SUMMARY = "summary.json"
ANALYSIS_DATA = "data.json"
PARAM_HISTORY = "params.jsonl"


def figures_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / FIGURES_DIR


def write_stage_data(path: str | os.PathLike, stage: str, global_step: int | None = None, **parts) -> Path:
    """Write the given ``parts`` (a subset of :data:`STAGE_PARTS`) of ``stage``'s data file, keeping the
    parts already in the file for the same stage (each callback contributes its own), atomically."""
    unknown = sorted(set(parts) - set(STAGE_PARTS))
    if unknown:
        raise ValueError(f"unknown stage data part {unknown[0]!r}; allowed: {', '.join(STAGE_PARTS)}")
    payload = {"stage": stage, "global_step": global_step, **dict.fromkeys(STAGE_PARTS)}
    old = read_stage_data(path)
    if old is not None and old.get("stage") == stage:
        payload.update({k: old.get(k) for k in STAGE_PARTS})
        if global_step is None:
            payload["global_step"] = old.get("global_step")
    payload.update(parts)
    return write_json(path, payload)


def read_stage_data(path: str | os.PathLike) -> dict | None:
    """A stage data file as written by :func:`write_stage_data` (None when missing or unreadable)."""
    data = read_json(path)
    return data if isinstance(data, dict) and any(data.get(k) for k in STAGE_PARTS) else None


def clear_stage_data(figures_dir: str | os.PathLike, stages: Iterable[str]) -> None:
    """Remove the data files of ``stages`` (a new pass writes them afresh, so figures never mix runs)."""
    for stage in stages:
        stage_data_path(figures_dir, stage).unlink(missing_ok=True)


# -- neuron parameters over training (for runs without a CSV log) -----------------------------------
def param_history_path(figures_dir: str | os.PathLike) -> Path:
    return Path(figures_dir) / "data" / PARAM_HISTORY


def append_history(path: str | os.PathLike, step: float, values: Mapping[str, float]) -> None:
    """Append one record ``{"step": step, name: value, …}`` as a JSON line (O(1) per record)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"step": float(step), **{k: float(v) for k, v in values.items()}}) + "\n")


def read_history(path: str | os.PathLike) -> dict[str, Series]:
    """``{name: (steps, values)}`` from a file of :func:`append_history` records (``{}`` when missing);
    a line cut short by a crash is skipped."""
    out: dict[str, Series] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        step = rec.pop("step", math.nan)
        for k, v in rec.items():
            s = out.setdefault(k, ([], []))
            s[0].append(step)
            s[1].append(v)
    return out


# -- checkpoints -----------------------------------------------------------------------------------------
def _val_acc(path: Path) -> float:
    """The ``val_acc`` in a checkpoint's file name (``conf/callbacks/default.yaml``'s pattern), or -inf."""
    m = re.search(r"val_acc(\d+(?:\.\d+)?)", path.name)
    return float(m.group(1)) if m else float("-inf")


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> tuple[Path, Path]:
    """(checkpoint file, run folder) for a checkpoint or a run folder.

    In a folder, ``which="best"`` takes ``metrics.json``'s ``best_checkpoint`` (looked up in the
    folder's own ``checkpoints/`` when the run folder was moved), else the checkpoint with the highest
    ``val_acc`` in its name, else ``last.ckpt``; ``which="last"`` takes ``last.ckpt``. Raises
    :class:`~snn_lightning.errors.UserError` for a missing path or a folder without checkpoints.
    """
    from .._checks import choice
    from ..errors import UserError

    choice("checkpoint choice", which, ("best", "last"))
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path} does not exist")
    if p.is_file():
        run_dir = p.parent.parent if p.parent.name == CKPT_DIR else p.parent
        return p, run_dir
    ckpt_dir = checkpoint_dir(p) if checkpoint_dir(p).is_dir() else p
    ckpts = sorted(ckpt_dir.glob("*.ckpt"))
    if not ckpts:
        raise UserError(f"no checkpoint in {path} (looked for {ckpt_dir}/*.ckpt)")
    last = ckpt_dir / LAST_CKPT
    if which == "last":
        if not last.is_file():
            raise UserError(f"no {LAST_CKPT} in {ckpt_dir}")
        return last, p
    payload = read_json(p / METRICS_FILE)
    best = payload.get("best_checkpoint") if isinstance(payload, dict) else None
    best = best if isinstance(best, str) else None
    if best and Path(best).is_file():
        return Path(best), p
    if best and (ckpt_dir / Path(best).name).is_file():  # the run folder was moved
        return ckpt_dir / Path(best).name, p
    scored = [c for c in ckpts if c.name != LAST_CKPT and _val_acc(c) > float("-inf")]
    if scored:
        return max(scored, key=_val_acc), p
    return (last if last.is_file() else ckpts[-1]), p
