"""The run folder's contract, written once: file names, JSON files, status, the CSV metrics log.

Every writer (the entry points, the callbacks) and every reader (``snn-analyze``, ``snn-aggregate``,
the figures) goes through this module, so a file name or a status word lives in one place. Layout of
a run folder (``snn-train`` makes one per run, a multirun one per job)::

    <run>/
      .hydra/{config,overrides,hydra}.yaml   the composed config, the overrides, Hydra's own config
      status.json      {"status": running|finished|failed|interrupted, "started": ..., "pid": ..., ...}
      .lock            held (flock) by the live process that runs in the folder
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
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    return (p / HYDRA_DIR / "config.yaml").is_file() or (p / STATUS_FILE).is_file()


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


# -- liveness, locks and who may write into a run folder ---------------------------------------------
def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_is_held(run_dir: str | os.PathLike) -> bool:
    """Whether a live process holds the run folder's lock (False when there is no lock file)."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def is_live(run_dir: str | os.PathLike, status: Mapping | None = None) -> bool:
    """Whether the run recorded in the folder is still running (its lock held, or its pid alive here)."""
    status = read_status(run_dir) if status is None else status
    if not status or status.get("status") != RUNNING:
        return False
    if (Path(run_dir) / LOCK_FILE).exists():
        return lock_is_held(run_dir)
    host = status.get("host")
    return pid_alive(status.get("pid")) if host in (None, socket.gethostname()) else True


def effective_status(run_dir: str | os.PathLike) -> str | None:
    """The folder's status word, with ``running`` read as ``died`` when its process is gone."""
    status = read_status(run_dir)
    if not status:
        return None
    state = status.get("status")
    if state == RUNNING and not is_live(run_dir, status):
        return DIED
    return state


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock`` for as long as the process lives (the OS drops it on any exit).

    A lock this process already holds on the same folder is reused (:meth:`acquire` returns True):
    ``snn-train`` takes it before Hydra writes into an explicit ``hydra.run.dir``, and the job keeps it.
    """

    _held: dict[str, int] = {}  # resolved run folder -> fd, for the locks this process holds

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    @property
    def _key(self) -> str:
        return str(self.path.resolve())

    def acquire(self) -> bool:
        import fcntl

        if self._key in RunLock._held:
            self.fd = RunLock._held[self._key]
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        RunLock._held[self._key] = fd
        return True

    def wait(self) -> None:
        """Block until the lock is free (used to wait for a job another sweep is running)."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            RunLock._held.pop(self._key, None)
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def refusal(run_dir: str | os.PathLike, *, resuming: bool, overwrite: bool, locked: bool = False) -> str | None:
    """Why a new run may not write into ``run_dir`` (None when it may).

    A live run always keeps the folder; a finished one unless the new run resumes it or
    ``overwrite=true``. Failed, interrupted and died runs may be re-run or resumed in place.
    ``locked``: the caller holds the folder's lock, so no other process runs there.
    """
    status = read_status(run_dir)
    if not locked and status and status.get("status") == RUNNING and is_live(run_dir, status):
        return (f"run folder {run_dir} is in use by a live run (pid {status.get('pid')}); "
                f"wait for it or choose another hydra.run.dir")
    if status and status.get("status") == FINISHED and not (resuming or overwrite):
        return (f"run folder {run_dir} holds a finished run; resume it with ckpt_path=auto, "
                f"choose another hydra.run.dir, or pass overwrite=true")
    return None


def auto_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The folder's ``checkpoints/last.ckpt`` if it has one (what ``ckpt_path=auto`` resumes from)."""
    path = checkpoint_dir(run_dir) / LAST_CKPT
    return path if path.is_file() else None
