"""File names, JSON files, status and final metrics of a run folder; finding run folders."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
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

LOCK_FILE = ".lock"

RUNNING, FINISHED, FAILED = "running", "finished", "failed"
# stopped by a signal (its last.ckpt is where it stopped); DIED is never written: it is what a
# "running" status whose process is gone (SIGKILL, a node lost) reads as (effective_status)
INTERRUPTED, DIED = "interrupted", "died"

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

