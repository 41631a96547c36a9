"""The run folder's contract, written once: file names, JSON files, status, the CSV metrics log.

Every writer (the entry points, the callbacks) and every reader (``snn-analyze``, ``snn-aggregate``,
the figures) goes through this module, so a file name or a status word lives in one place. Layout of
a run folder (``snn-train`` makes one per run, a multirun one per job)::

    <run>/
      .hydra/{config,overrides,hydra}.yaml   the composed config, the overrides, Hydra's own config
      status.json      {"status": running|finished|failed|..., "started": ..., ...}
      metrics.json     {"metrics": {...final scalars...}, "best_checkpoint": ...}
      error.log        traceback of a failed run
      train.log        the run's log
      checkpoints/     best-k *.ckpt and last.ckpt
      csv/             Lightning's CSVLogger: csv/version_*/metrics.csv (sparse rows)
      figures/         PNGs; figures/data/<stage>.json the numbers behind them
      wandb/           offline wandb run
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
ERROR_LOG = "error.log"
TRAIN_LOG = "train.log"
CKPT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
CSV_DIR = "csv"
METRICS_CSV = "metrics.csv"
FIGURES_DIR = "figures"
HYDRA_DIR = ".hydra"
# Hydra's files inside HYDRA_DIR: the composed config, the overrides, Hydra's own config (group choices)
CONFIG_YAML, OVERRIDES_YAML, HYDRA_YAML = "config.yaml", "overrides.yaml", "hydra.yaml"
# folders inside a run that never hold another run (a sweep reader does not descend into them)
INNER_DIRS = frozenset({HYDRA_DIR, CSV_DIR, CKPT_DIR, FIGURES_DIR, "wandb", "wandb_home", "aggregate", "analysis"})

RUNNING, FINISHED, FAILED = "running", "finished", "failed"

Series = tuple[list[float], list[float]]


# -- JSON ------------------------------------------------------------------------------------------
def write_json(path: str | os.PathLike, payload: Mapping) -> Path:
    """Write ``payload`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """The parsed file, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_hydra_file(run_dir: str | os.PathLike, name: str) -> Any:
    """``<run>/.hydra/<name>`` parsed as plain YAML (no interpolation), or None when it is missing or
    not YAML."""
    try:
        return yaml.safe_load((Path(run_dir) / HYDRA_DIR / name).read_text())
    except (OSError, yaml.YAMLError):
        return None


# -- status and final metrics --------------------------------------------------------------------
def read_status(run_dir: str | os.PathLike) -> dict | None:
    status = read_json(Path(run_dir) / STATUS_FILE)
    return status if isinstance(status, dict) else None


def write_status(run_dir: str | os.PathLike, state: str, **fields) -> Path:
    return write_json(Path(run_dir) / STATUS_FILE, {"status": state, **fields})


def read_final_metrics(run_dir: str | os.PathLike) -> dict[str, float]:
    """The scalar metrics of ``metrics.json`` (``{}`` when there is none)."""
    payload = read_json(Path(run_dir) / METRICS_FILE)
    metrics = payload.get("metrics", payload) if isinstance(payload, dict) else {}
    out = {}
    for k, v in (metrics or {}).items():
        f = as_float(v)
        if f is not None:
            out[k] = f
    return out


def write_final_metrics(run_dir: str | os.PathLike, metrics: Mapping[str, Any], **fields) -> Path:
    return write_json(Path(run_dir) / METRICS_FILE, {"metrics": dict(metrics), **fields})


def as_float(v: Any) -> float | None:
    """``v`` as a float, or None for empty cells, text and other non-numbers."""
    if v is None or v == "" or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# -- the CSV metrics log ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricsLog:
    """Lightning's ``metrics.csv``: sparse rows (each logging call fills only its own columns).

    ``rows`` keeps, per CSV row, the numeric cells that are present (``step`` and ``epoch`` too).
    """

    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def series(self, key: str, x: str = "step") -> Series:
        """``(x values, values)`` of the rows that have ``key`` (x is NaN where a row lacks it)."""
        xs, vs = [], []
        for row in self.rows:
            if key in row:
                xs.append(row.get(x, math.nan))
                vs.append(row[key])
        return xs, vs

    def history(self) -> dict[str, Series]:
        """Every column but ``step``/``epoch`` against the step: ``{name: (steps, values)}``."""
        return {k: self.series(k) for k in self.columns if k not in ("step", "epoch")}

    def last(self, key: str) -> float | None:
        """The last value logged under ``key``."""
        for row in reversed(self.rows):
            if key in row:
                return row[key]
        return None

    def last_values(self, keys: Iterable[str]) -> dict[str, float]:
        """``{key: last value}`` for the keys that were logged."""
        out = {}
        for k in keys:
            v = self.last(k)
            if v is not None:
                out[k] = v
        return out

    def per_epoch(self, key: str) -> dict[int, float]:
        """The last value of ``key`` in each epoch, ``{epoch: value}``."""
        out: dict[int, float] = {}
        for row in self.rows:
            if key in row and "epoch" in row and math.isfinite(row["epoch"]):
                out[int(row["epoch"])] = row[key]
        return out


def read_metrics_csv(path: str | os.PathLike) -> MetricsLog:
    """Parse one ``metrics.csv`` (raises OSError when it cannot be read)."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                fv = as_float(v)
                if k and fv is not None:
                    row[k] = fv
            rows.append(row)
    return MetricsLog(rows)


def find_metrics_csv(run_dir: str | os.PathLike) -> Path | None:
    """The run's CSV log: the newest ``csv/**/metrics.csv``, else any ``metrics.csv`` outside
    ``analysis``/``aggregate`` folders; None when there is none."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob(f"{CSV_DIR}/**/{METRICS_CSV}"))
    if not files:
        files = [p for p in sorted(run_dir.rglob(METRICS_CSV))
                 if not ({"analysis", "aggregate"} & set(p.relative_to(run_dir).parts[:-1]))]
    return files[-1] if files else None


def read_run_metrics_csv(run_dir: str | os.PathLike) -> MetricsLog:
    """The run's CSV log, or an empty one when there is none (or it cannot be read)."""
    path = find_metrics_csv(run_dir)
    if path is None:
        return MetricsLog()
    try:
        return read_metrics_csv(path)
    except OSError:
        return MetricsLog()


# -- folders -----------------------------------------------------------------------------------------
def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CKPT_DIR


def stage_data_path(figures_dir: str | os.PathLike, stage: str) -> Path:
    """Where the numbers behind a stage's figures go (written by the callbacks and ``snn-analyze``)."""
    return Path(figures_dir) / "data" / f"{stage}.json"


def is_run_dir(p: str | os.PathLike) -> bool:
    p = Path(p)
    return (p / HYDRA_DIR / CONFIG_YAML).is_file() or (p / STATUS_FILE).is_file()


def find_run_dirs(root: str | os.PathLike) -> list[Path]:
    """Run folders below ``root`` (or ``root`` itself), without descending into a run's own folders."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        p = Path(dirpath)
        if is_run_dir(p):
            found.append(p)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in INNER_DIRS)
    return sorted(found)


# -- the numbers behind a stage's figures --------------------------------------------------------------
# A stage data file (``figures/data/<stage>.json``, and ``snn-analyze``'s ``data.json``) holds
# {"stage", "global_step", "neurons", "histograms", "predictions", "pca"}: what the monitors collected
# in one evaluation pass (or one recorded training step), as plain numbers. The observability
# callbacks and ``snn-analyze`` write it through :func:`write_stage_data`; the figures are drawn
# from it by ``plots.draw_stage_data``.
STAGE_PARTS = ("neurons", "histograms", "predictions", "pca")
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
    from ._checks import choice
    from .errors import UserError

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
