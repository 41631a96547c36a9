"""Read a sweep: one :class:`Job` per run folder (configuration, state, final metrics, membrane drift).

Every file of a run folder is read through :mod:`snn_lightning.runs` (the run-folder contract); the
drift of the mean membrane potential is :func:`snn_lightning.monitor.drift`, the one definition the
callbacks and ``snn-analyze`` use too, applied to per-layer summaries rebuilt from the test pass's
``test_neuron/<layer>/v_mean[_active]_t<t>`` columns of ``csv/metrics.csv``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import UserError
from ..monitor import drift

SEED_KEYS = ("seed",)
# overrides that are not part of a job's identity
IGNORED_KEYS = {"sweep", "scale", "hydra.sweep.dir", "hydra.run.dir", "seed_sweep_marker", "skip_finished"}
DEFAULT_METRIC = "test/acc"
NEURON_COL = re.compile(r"^test_neuron/(?P<layer>.+)/(?P<stat>v_mean|v_mean_active)_t(?P<t>\d+)$")
MEMBRANE_STATS = ("v_mean", "v_mean_active")


class AggregateError(UserError, ValueError):
    """Bad input to the aggregator (no job folders, an unknown key): reported in one line."""


@dataclass
class Job:
    path: Path
    name: str
    status: str
    error: str = ""
    seconds: float | None = None
    started: float | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    # from csv/metrics.csv: drift, drift_active, v_mean_t<t> (see read_neuron_drift)
    drift: dict[str, float] = field(default_factory=dict)

    def fact(self, key: str) -> Any:
        """The value of ``key`` in this job: an override, a group choice, or a (dotted) config key."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return self.choices[key]
        return lookup(self.config, key)

    @property
    def seed(self) -> Any:
        return self.fact("seed")

    @property
    def paper(self) -> dict | None:
        p = self.config.get("paper") if isinstance(self.config, dict) else None
        return p if isinstance(p, dict) and p.get("accuracy") is not None else None

    @property
    def study(self) -> dict:
        s = self.config.get("study") if isinstance(self.config, dict) else None
        return s if isinstance(s, dict) else {}


def lookup(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def parse_override(line: str) -> tuple[str, str] | None:
    """``+group/x=val`` -> (``group/x``, ``val``); deletions (``~key``) and malformed lines -> None."""
    line = str(line).strip()
    if not line or line.startswith("~") or "=" not in line:
        return None
    key, value = line.split("=", 1)
    key = key.lstrip("+")
    return key.strip(), value.strip().strip("'\"")


# -- the CSV log ------------------------------------------------------------------------------------
def membrane_columns(log: runs.MetricsLog) -> dict[str, dict[str, dict[int, float]]]:
    """The last logged ``test_neuron/<layer>/<stat>_t<t>`` values as ``{layer: {stat: {t: value}}}``
    for ``stat`` in ``v_mean``/``v_mean_active``; layers in the order their first column appears."""
    by_layer: dict[str, dict[str, dict[int, float]]] = {}
    for col, v in log.last_values(c for c in log.columns if NEURON_COL.match(c)).items():
        m = NEURON_COL.match(col)
        by_layer.setdefault(m["layer"], {s: {} for s in MEMBRANE_STATS})[m["stat"]][int(m["t"])] = v
    return by_layer


def as_summary(columns: dict[str, dict[str, dict[int, float]]]) -> dict[str, dict[str, list[float]]]:
    """Per layer, each statistic over its timesteps in t order, shaped like
    :meth:`snn_lightning.monitor.NeuronRecorder.summary` for :func:`~snn_lightning.monitor.drift`.

    A statistic logged at fewer than two timesteps has no drift: it becomes ``[nan]``, which
    ``drift`` leaves out of its mean, as it does a layer with a NaN end (no neuron fired at t = 1 or T).
    """
    return {layer: {s: [vals[t] for t in sorted(vals)] if len(vals) >= 2 else [math.nan] for s, vals in stats.items()}
            for layer, stats in columns.items()}


def read_neuron_drift(job_dir: Path) -> dict[str, float]:
    """Drift of the mean membrane potential in the test pass, from the job's CSV log:
    ``drift`` (all neurons) and ``drift_active`` (neurons that fired), each the mean over layers of
    |E[M[1]] − E[M[T]]| (:func:`snn_lightning.monitor.drift`; absent when no layer has both ends);
    ``v_mean_t<t>`` the mean over layers of E[M[t]] (layers with a NaN at t, or logged at fewer than
    two timesteps, left out)."""
    columns = membrane_columns(runs.read_run_metrics_csv(job_dir))
    if not columns:
        return {}
    d = drift(as_summary(columns))
    out = {name: d[key] for key, name in (("mean_all", "drift"), ("mean_active", "drift_active"))
           if not math.isnan(d[key])}
    per_t: dict[int, list[float]] = {}
    for stats in columns.values():
        if len(stats["v_mean"]) >= 2:
            for t in sorted(stats["v_mean"]):
                if not math.isnan(stats["v_mean"][t]):
                    per_t.setdefault(t, []).append(stats["v_mean"][t])
    out.update({f"v_mean_t{t}": sum(vs) / len(vs) for t, vs in sorted(per_t.items())})
    return out


def read_epoch_metrics(job_dir: Path, columns: Sequence[str]) -> dict[str, dict[int, float]]:
    """Per-epoch values of ``columns`` from the job's CSV log: the last value of each column in each
    epoch, ``{column: {epoch: value}}`` (:meth:`snn_lightning.runs.MetricsLog.per_epoch`)."""
    log = runs.read_run_metrics_csv(job_dir)
    return {c: log.per_epoch(c) for c in columns}


# -- job folders ------------------------------------------------------------------------------------
def read_job(job_dir: Path, root: Path) -> Job:
    status = runs.read_status(job_dir) or {}
    # a "running" job whose process is gone reads as "died" (runs.effective_status)
    state = runs.effective_status(job_dir) or (runs.FINISHED if (job_dir / runs.METRICS_FILE).is_file() else "missing")
    job = Job(
        path=job_dir,
        name=str(job_dir.relative_to(root)) if job_dir != root else job_dir.name,
        status=state,
        error=str(status.get("error", "") or ""),
        seconds=status.get("seconds"),
        started=runs.as_float(status.get("started")),
    )
    over = runs.read_hydra_file(job_dir, runs.OVERRIDES_YAML) or []
    for line in over if isinstance(over, list) else []:
        kv = parse_override(line)
        if kv and kv[0] not in IGNORED_KEYS and not kv[0].startswith("hydra"):
            job.overrides[kv[0]] = kv[1]
    choices = lookup(runs.read_hydra_file(job_dir, runs.HYDRA_YAML) or {}, "hydra.runtime.choices") or {}
    job.choices = {k: "null" if v is None else str(v) for k, v in choices.items() if not str(k).startswith("hydra")}
    job.config = runs.read_hydra_file(job_dir, runs.CONFIG_YAML) or {}
    job.metrics = runs.read_final_metrics(job_dir)
    if state == runs.FINISHED and not job.metrics:
        job.status, job.error = "missing", f"finished, but no {runs.METRICS_FILE}"
    job.drift = read_neuron_drift(job_dir) if state == runs.FINISHED else {}
    return job


def read_sweep(paths: Sequence[Path]) -> list[Job]:
    """Every job below the sweep folder(s); names relative to the folder (to its parent for several)."""
    jobs = []
    for root in map(Path, paths):
        if not root.is_dir():
            raise AggregateError(f"{root} is not a folder")
        jobs += [read_job(d, root if len(paths) == 1 else root.parent) for d in runs.find_run_dirs(root)]
    if not jobs:
        raise AggregateError(f"no job folders (with {runs.HYDRA_DIR}/{runs.CONFIG_YAML} or {runs.STATUS_FILE}) under "
                             f"{', '.join(map(str, paths))}")
    return jobs
