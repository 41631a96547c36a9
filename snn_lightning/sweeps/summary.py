"""Summarize a sweep: group the jobs by the keys the sweep varied, mean ± sample std over seeds.

Plain Python over :class:`~snn_lightning.sweeps.read.Job` lists (no pandas: the grouping needs the
sweep's own value order and loose equality of config values, and the tables must come out to the
digit as before; see the package docstring). A per-job number becomes a table column by adding one
:class:`Measure` to :data:`MEASURES`; :mod:`snn_lightning.sweeps.report` writes whatever is there.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..runs import as_float
from .read import DEFAULT_METRIC, SEED_KEYS, AggregateError, Job

ACC_T = re.compile(r"^(?P<stage>test|val)/acc_t(?P<t>\d+)$")
VTHR_KEY = "neuron.v_threshold"
Stat = tuple[float, float, int]  # mean, sample std, number of values
NO_STAT: Stat = (float("nan"), float("nan"), 0)


# -- values --------------------------------------------------------------------------------------
def same_value(a: Any, b: Any) -> bool:
    """Loose equality for config values: 1 == '1.0', 'on' == True, 'off' == False, 'null' == None."""
    norm = {"true": "on", "false": "off", "none": "null", "yes": "on", "no": "off"}
    na, nb = as_float(a), as_float(b)
    if na is not None and nb is not None:
        return math.isclose(na, nb)
    sa, sb = str(a).strip().lower(), str(b).strip().lower()
    return norm.get(sa, sa) == norm.get(sb, sb)


def display(v: Any) -> str:
    return "null" if v is None else str(v)


def unique(items) -> list:
    """Distinct items in order of first appearance."""
    return list(OrderedDict.fromkeys(items))


def mean_std(values: Sequence[float | None]) -> Stat:
    """Mean and sample standard deviation (ddof=1; NaN for one value) of the non-NaN values."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if n == 0:
        return NO_STAT
    m = sum(vals) / n
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    return m, s, n


def swept_keys(jobs: list[Job], exclude=SEED_KEYS) -> list[str]:
    """Override keys whose value differs between jobs (in the order they first appear)."""
    keys = unique(k for j in jobs for k in j.overrides)
    return [k for k in keys if k not in exclude and len({str(j.fact(k)) for j in jobs}) > 1]


def value_order(jobs: list[Job], keys: list[str]) -> list[dict[str, tuple]]:
    """Sort order of each key's values: numbers ascending, other values in the order the sweep ran
    them (Hydra runs the grid in the order its values were given, e.g. tdbn, tebn, tab)."""
    ordered = sorted(jobs, key=lambda j: (j.started is None, j.started or 0.0, j.name))
    ranks = []
    for k in keys:
        r: dict[str, tuple] = {}
        for v in (display(j.fact(k)) for j in ordered):
            if v not in r:
                n = as_float(v)
                r[v] = (0, n, "") if n is not None else (1, float(len(r)), v)
        ranks.append(r)
    return ranks


def sort_key(rank: list[dict[str, tuple]], values: Sequence[str]) -> tuple:
    """Sort key of a tuple of displayed values (one per key of ``rank``); unknown values last."""
    return tuple(rank[i].get(v, (2, 0.0, v)) for i, v in enumerate(values))


def paper_for(group_jobs: list[Job]) -> dict | None:
    """The paper's number for a group: the first ``study.paper_reference`` entry whose ``match``
    holds for the group's jobs, else the experiment's own ``paper`` key (when all jobs agree)."""
    j0 = group_jobs[0]
    for ref in j0.study.get("paper_reference") or []:
        match = ref.get("match") or {}
        if match and all(same_value(j0.fact(k), v) for k, v in match.items()):
            return {k: ref.get(k) for k in ("accuracy", "std", "dataset", "table")}
    papers = [j.paper for j in group_jobs]
    if papers[0] and all(p == papers[0] for p in papers):
        return {k: papers[0].get(k) for k in ("accuracy", "std", "dataset", "table")}
    return None


# -- groups --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measure:
    """A per-job number summarized per group after the accuracies: ``<name>_mean``/``<name>_std`` in
    ``summary.csv``; a ``summary.md`` column titled ``label`` (None: CSV only) shown when any group has
    the measure ``shown_with`` (default: this one), printed with ``digits`` decimals."""

    name: str
    value: Callable[[Job], float | None]
    label: str | None = None
    digits: int = 2
    shown_with: str | None = None


MEASURES: tuple[Measure, ...] = (
    Measure("drift", lambda j: j.drift.get("drift"), "drift (all)", 3),
    Measure("drift_active", lambda j: j.drift.get("drift_active"), "drift (active)", 3, shown_with="drift"),
    Measure("seconds", lambda j: None if j.seconds is None else float(j.seconds)),
)


@dataclass
class Group:
    key: tuple
    jobs: list[Job]  # the finished ones
    failed: list[Job]  # failed, running or missing
    stats: dict[str, Stat]  # acc, acc_t<t> (always) and each measure some job has
    paper: dict | None
    T: int


def summarize(jobs: list[Job], keys: list[str], metric: str = DEFAULT_METRIC,
              measures: Sequence[Measure] = MEASURES) -> list[Group]:
    """One :class:`Group` per combination of ``keys``, in the sweep's value order; accuracies in %."""
    groups: "OrderedDict[tuple, list[Job]]" = OrderedDict()
    for j in jobs:
        groups.setdefault(tuple(display(j.fact(k)) for k in keys), []).append(j)
    rank = value_order(jobs, keys)
    stage = metric.split("/")[0]
    out = []
    for key in sorted(groups, key=lambda t: sort_key(rank, t)):
        members = groups[key]
        done = [j for j in members if j.status == "finished"]
        failed = [j for j in members if j.status != "finished"]
        T = max((int(m["t"]) for j in done for k in j.metrics if (m := ACC_T.match(k)) and m["stage"] == stage), default=0)
        stats = {"acc": mean_std([100 * j.metrics[metric] for j in done if metric in j.metrics])}
        for t in range(1, T + 1):
            k = f"{stage}/acc_t{t}"
            stats[f"acc_t{t}"] = mean_std([100 * j.metrics[k] for j in done if k in j.metrics])
        for ms in measures:
            vals = [v for v in map(ms.value, done) if v is not None]
            if vals:
                stats[ms.name] = mean_std(vals)
        out.append(Group(key=key, jobs=done, failed=failed, stats=stats, paper=paper_for(members), T=T))
    return out


# -- the Fig. 9 view: accuracy against one key, a line per another, a panel per the rest ----------
def plot_spec(jobs: list[Job], keys: list[str], x: str | None, line: str | None, panels: list[str] | None):
    """(x, line, panels) for the Fig. 9-style plot, or None when the sweep has no such axes."""
    study_plot = next((j.study.get("plot") for j in jobs if j.study.get("plot")), None) or {}
    x = x or study_plot.get("x") or (VTHR_KEY if VTHR_KEY in keys else None)
    line = line or study_plot.get("line") or ("sg" if "sg" in keys else None)
    if not x or x not in keys:
        return None
    if line and line not in keys:
        line = None
    if panels is None:
        panels = [k for k in (study_plot.get("panels") or []) if k in keys]
        panels += [k for k in keys if k not in (x, line, *panels)]
    return x, line, [p for p in panels if p in keys and p not in (x, line)]


def robustness_cells(groups: list[Group], keys: list[str], spec) -> "OrderedDict[tuple, list[float]]":
    """``{(panel values, line value): [mean accuracy at each x]}`` in the groups' order."""
    _, line, panels = spec
    idx = {k: i for i, k in enumerate(keys)}
    cells: "OrderedDict[tuple, list[float]]" = OrderedDict()
    for g in groups:
        m = g.stats["acc"][0]
        if not math.isnan(m):
            cells.setdefault((tuple(g.key[idx[p]] for p in panels), g.key[idx[line]] if line else "all"), []).append(m)
    return cells


# -- paired by seed --------------------------------------------------------------------------------
@dataclass
class PairedRow:
    context: tuple  # the values of the other keys
    value: str  # compared with the baseline
    seeds: int
    diffs: dict[str, list[float]]  # per measure the per-seed differences (value − baseline)


def paired(jobs: list[Job], keys: list[str], key: str, metric: str = DEFAULT_METRIC) -> dict:
    """Differences to the first value of ``key`` (the baseline), paired by seed within each
    combination of the other keys. Pairing removes what a seed shares (initialization, data split,
    batch order). ``{"base", "rest", "measures", "rows": [PairedRow]}``; measures: final accuracy and
    acc@t1 in points, and the active drift when a job has it."""
    if key not in keys:
        raise AggregateError(f"--paired {key}: not one of the group keys ({', '.join(keys) or 'none'})")
    done = [j for j in jobs if j.status == "finished"]
    rank = value_order(done, keys)
    ki = keys.index(key)
    values = sorted(rank[ki], key=lambda v: rank[ki][v])
    if not values:
        raise AggregateError(f"--paired {key}: no finished job to compare")
    base, others = values[0], values[1:]
    rest = [k for k in keys if k != key]
    stage = metric.split("/")[0]
    # name -> (value of a job, scale of the difference)
    measures: dict[str, tuple[Callable[[Job], float | None], float]] = {
        "acc": (lambda j: j.metrics.get(metric), 100.0),
        "acc@t1": (lambda j: j.metrics.get(f"{stage}/acc_t1"), 100.0),
    }
    if any("drift_active" in j.drift for j in done):
        measures["drift_active"] = (lambda j: j.drift.get("drift_active"), 1.0)
    table: "OrderedDict[tuple, dict[str, dict]]" = OrderedDict()
    rest_rank = [rank[keys.index(k)] for k in rest]
    for j in sorted(done, key=lambda j: tuple(r.get(display(j.fact(k)), (2, 0.0, "")) for r, k in zip(rest_rank, rest))):
        table.setdefault(tuple(display(j.fact(k)) for k in rest), {}).setdefault(display(j.fact(key)), {})[display(j.seed)] = j
    rows = []
    for ctx, by_value in table.items():
        for v in others:
            a, b = by_value.get(base, {}), by_value.get(v, {})
            seeds = [s for s in a if s in b]
            if not seeds:
                continue
            diffs = {}
            for name, (value, scale) in measures.items():
                pairs = [(value(a[s]), value(b[s])) for s in seeds]
                diffs[name] = [scale * (y - x) for x, y in pairs if x is not None and y is not None]
            rows.append(PairedRow(ctx, v, len(seeds), diffs))
    return {"base": base, "rest": rest, "measures": list(measures), "rows": rows}


# -- training curves (Fig. 9 bottom row) ---------------------------------------------------------
CURVE_COLUMNS = (("train/loss_epoch", "training loss", 1.0), ("val/acc", "validation accuracy (%)", 100.0))


def training_curves(jobs: list[Job], keys: list[str], per_epoch: Callable[[Job, tuple[str, ...]], dict],
                    at: float = 1.0, line: str | None = None, panels: list[str] | None = None) -> dict | None:
    """Per-epoch curves of the finished jobs whose initial V_thr equals ``at``: ``{"panels": keys,
    "line": key, "at": at, "curves": {panel values: {line value: {column: [(epoch, mean, std, n), ...]}}}}``,
    mean and sample std over seeds (columns scaled as plotted: val/acc in percent). ``per_epoch(job,
    columns)`` reads a job's ``{column: {epoch: value}}``. None when V_thr was not swept or no such
    job logged a per-epoch value."""
    spec = plot_spec(jobs, keys, VTHR_KEY, line, panels)
    if spec is None:
        return None
    _, line, panels = spec
    chosen = [j for j in jobs if j.status == "finished" and same_value(j.fact(VTHR_KEY), at)]
    rank = value_order(jobs, keys)
    axes = [*panels, *([line] if line else [])]
    axis_rank = [rank[keys.index(k)] for k in axes]
    columns = tuple(c for c, _, _ in CURVE_COLUMNS)
    per: "OrderedDict[tuple, OrderedDict[str, dict[str, dict[int, list[float]]]]]" = OrderedDict()
    for j in sorted(chosen, key=lambda j: sort_key(axis_rank, [display(j.fact(k)) for k in axes])):
        data = per_epoch(j, columns)
        if not any(data.values()):
            continue
        combo = tuple(display(j.fact(p)) for p in panels)
        lv = display(j.fact(line)) if line else "all"
        cell = per.setdefault(combo, OrderedDict()).setdefault(lv, {c: {} for c in columns})
        for c, _, scale in CURVE_COLUMNS:
            for e, v in data[c].items():
                cell[c].setdefault(e, []).append(scale * v)
    if not per:
        return None
    curves = OrderedDict(
        (combo, OrderedDict((lv, {c: [(e, *mean_std(vals)) for e, vals in sorted(by_epoch.items())]
                                  for c, by_epoch in cols.items()}) for lv, cols in lines.items()))
        for combo, lines in per.items())
    return {"panels": panels, "line": line, "at": at, "curves": curves}
