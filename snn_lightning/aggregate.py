"""`snn-aggregate`: turn a sweep folder into the paper-style table (mean ± std over seeds) and plots.

    snn-aggregate outputs/sweeps/fig9/smoke                  # writes outputs/sweeps/fig9/smoke/aggregate/
    snn-aggregate outputs/sweeps/table1/full --out docs/results/table1
    snn-aggregate SWEEP --group-by norm mp_init --metric val/acc

Every job folder below the sweep folder (one holding ``.hydra/config.yaml`` or ``status.json``) is
read: its configuration (``.hydra/config.yaml``, ``.hydra/overrides.yaml``, the group choices in
``.hydra/hydra.yaml``), its state (``status.json``: finished / failed / running) and its final
metrics (``metrics.json``; the membrane statistics of the test pass in ``csv/metrics.csv`` when the
run logged them). Jobs are grouped by the keys the sweep varied (every override whose value differs
between jobs, the seed excepted) and written to ``--out`` (default ``<sweep>/aggregate``):

* ``jobs.csv``: one row per job (folder, status, error, the group keys, seed, every metric);
* ``summary.csv`` / ``summary.md``: per group the number of finished and failed jobs, the mean and
  standard deviation (sample std, ddof=1) over seeds of the final accuracy, of the accuracy from
  timesteps 1..t (``acc_t<t>``) and of the temporal drift of the mean membrane potential
  (mean over layers of |E[M[1]] − E[M[T]]|, all neurons and active neurons), with the paper's number
  beside it when the sweep (``study.paper_reference``) or the experiment (``paper``) carries one;
  ``summary.md`` also lists the failed and unfinished jobs;
* ``accuracy_vs_<x>.png``: the Fig. 9-style plot, final accuracy against ``--x`` (default: the
  initial V_thr), one line per ``--line`` (default: the SG formulation), one panel per combination
  of ``--panels`` (default: the other keys, e.g. reset x surrogate shape), with a robustness table
  (mean, min, max, spread across x per line and panel) in ``summary.md``;
* ``accuracy_per_timestep.png``: accuracy from timesteps 1..t against t, one line per group.
* ``training_curves.png``: the Fig. 9 bottom row, at one initial V_thr (``--curves-at``, default 1.0):
  training loss (``train/loss_epoch``) and validation accuracy (``val/acc``) per epoch from each
  job's ``csv/metrics.csv``, one line per SG formulation (mean over seeds, band ±std), one column per
  panel of the Fig. 9-style plot; skipped when V_thr was not swept or no job logged per-epoch values.

Accuracies are reported in percent.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
SEED_KEYS = ("seed",)
# overrides that are not part of a job's identity
IGNORED_KEYS = {"sweep", "scale", "hydra.sweep.dir", "hydra.run.dir", "seed_sweep_marker", "skip_finished"}
DEFAULT_METRIC = "test/acc"
ACC_T = re.compile(r"^(?P<stage>test|val)/acc_t(?P<t>\d+)$")
NEURON_COL = re.compile(r"^test_neuron/(?P<layer>.+)/(?P<stat>v_mean|v_mean_active)_t(?P<t>\d+)$")


class AggregateError(ValueError):
    """Bad input: reported in one line."""


# -- reading jobs --------------------------------------------------------------------------------
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


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parse_override(line: str) -> tuple[str, str] | None:
    """``+group/x=val`` -> (``group/x``, ``val``); deletions (``~key``) and malformed lines -> None."""
    line = str(line).strip()
    if not line or line.startswith("~") or "=" not in line:
        return None
    key, value = line.split("=", 1)
    key = key.lstrip("+")
    return key.strip(), value.strip().strip("'\"")


def read_neuron_drift(job_dir: Path) -> dict[str, float]:
    """Drift of the mean membrane potential in the test pass, from the job's CSV log:
    ``drift`` (all neurons) and ``drift_active`` (neurons that fired), each the mean over layers of
    |E[M[1]] − E[M[T]]|; ``v_mean_t<t>`` the mean over layers per timestep."""
    files = sorted(job_dir.glob("csv/**/metrics.csv")) or sorted(job_dir.glob("**/metrics.csv"))
    if not files:
        return {}
    last: dict[str, float] = {}
    try:
        with files[-1].open(newline="") as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k and v not in (None, "") and NEURON_COL.match(k):
                        try:
                            last[k] = float(v)
                        except ValueError:
                            pass
    except OSError:
        return {}
    series: dict[tuple[str, str], dict[int, float]] = {}
    for k, v in last.items():
        m = NEURON_COL.match(k)
        series.setdefault((m["stat"], m["layer"]), {})[int(m["t"])] = v
    out: dict[str, float] = {}
    for stat, name in (("v_mean", "drift"), ("v_mean_active", "drift_active")):
        per_layer = []
        per_t: dict[int, list[float]] = {}
        for (s, _layer), vals in series.items():
            if s != stat or len(vals) < 2:
                continue
            ts = sorted(vals)
            a, b = vals[ts[0]], vals[ts[-1]]
            if not (math.isnan(a) or math.isnan(b)):
                per_layer.append(abs(a - b))
            for t in ts:
                if not math.isnan(vals[t]):
                    per_t.setdefault(t, []).append(vals[t])
        if per_layer:
            out[name] = sum(per_layer) / len(per_layer)
        if stat == "v_mean":
            for t, vs in sorted(per_t.items()):
                out[f"v_mean_t{t}"] = sum(vs) / len(vs)
    return out


def read_epoch_metrics(job_dir: Path, columns: tuple[str, ...]) -> dict[str, dict[int, float]]:
    """Per-epoch values of ``columns`` from the job's CSV log (Lightning's CSVLogger writes sparse rows):
    the last non-empty value of each column in each epoch, as ``{column: {epoch: value}}``."""
    files = sorted(job_dir.glob("csv/**/metrics.csv")) or sorted(job_dir.glob("**/metrics.csv"))
    out: dict[str, dict[int, float]] = {c: {} for c in columns}
    if not files:
        return out
    try:
        with files[-1].open(newline="") as f:
            for row in csv.DictReader(f):
                epoch = _num(row.get("epoch"))
                if epoch is None:
                    continue
                for c in columns:
                    v = _num(row.get(c) or None)
                    if v is not None:
                        out[c][int(epoch)] = v
    except OSError:
        pass
    return out


def is_job_dir(p: Path) -> bool:
    return (p / ".hydra" / "config.yaml").is_file() or (p / STATUS_FILE).is_file()


SKIP_DIRS = {".hydra", "csv", "checkpoints", "wandb", "wandb_home", "aggregate", "figures", "analysis"}


def find_job_dirs(root: Path) -> list[Path]:
    """Job folders below ``root`` (or ``root`` itself), without descending into a job's own folders."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        p = Path(dirpath)
        if is_job_dir(p):
            found.append(p)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
    return sorted(found)


def read_job(job_dir: Path, root: Path) -> Job:
    status = _read_json(job_dir / STATUS_FILE) or {}
    state = status.get("status") or ("finished" if (job_dir / METRICS_FILE).is_file() else "missing")
    job = Job(
        path=job_dir,
        name=str(job_dir.relative_to(root)) if job_dir != root else job_dir.name,
        status=state,
        error=str(status.get("error", "") or ""),
        seconds=status.get("seconds"),
        started=_num(status.get("started")),
    )
    over = _read_yaml(job_dir / ".hydra" / "overrides.yaml") or []
    for line in over if isinstance(over, list) else []:
        kv = parse_override(line)
        if kv and kv[0] not in IGNORED_KEYS and not kv[0].startswith("hydra"):
            job.overrides[kv[0]] = kv[1]
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
    choices = lookup(hydra_cfg, "hydra.runtime.choices") or {}
    job.choices = {k: "null" if v is None else str(v) for k, v in choices.items() if not str(k).startswith("hydra")}
    job.config = _read_yaml(job_dir / ".hydra" / "config.yaml") or {}
    payload = _read_json(job_dir / METRICS_FILE) or {}
    metrics = payload.get("metrics", payload) if isinstance(payload, dict) else {}
    for k, v in (metrics or {}).items():
        try:
            job.metrics[k] = float(v)
        except (TypeError, ValueError):
            continue
    if state == "finished" and DEFAULT_METRIC not in job.metrics and not job.metrics:
        job.status, job.error = "missing", "finished, but no metrics.json"
    job.drift = read_neuron_drift(job_dir) if state == "finished" else {}
    return job


def read_sweep(paths: list[Path]) -> list[Job]:
    jobs = []
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            raise AggregateError(f"{root} is not a folder")
        dirs = find_job_dirs(root)
        jobs += [read_job(d, root if len(paths) == 1 else root.parent) for d in dirs]
    if not jobs:
        raise AggregateError(f"no job folders (with .hydra/config.yaml or status.json) under {', '.join(map(str, paths))}")
    return jobs


# -- grouping ------------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def same_value(a: Any, b: Any) -> bool:
    """Loose equality for config values: 1 == '1.0', 'on' == True, 'off' == False, 'null' == None."""
    norm = {"true": "on", "false": "off", "none": "null", "yes": "on", "no": "off"}
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return math.isclose(na, nb)
    sa, sb = str(a).strip().lower(), str(b).strip().lower()
    return norm.get(sa, sa) == norm.get(sb, sb)


def swept_keys(jobs: list[Job], exclude=SEED_KEYS) -> list[str]:
    """Override keys whose value differs between jobs (in the order they first appear)."""
    keys: "OrderedDict[str, None]" = OrderedDict()
    for j in jobs:
        for k in j.overrides:
            keys.setdefault(k, None)
    out = []
    for k in keys:
        if k in exclude:
            continue
        vals = {str(j.fact(k)) for j in jobs}
        if len(vals) > 1:
            out.append(k)
    return out


def unique(items) -> list:
    """Distinct items in order of first appearance."""
    return list(OrderedDict.fromkeys(items))


def display(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        return str(v)
    return str(v)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if n == 0:
        return float("nan"), float("nan"), 0
    m = sum(vals) / n
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    return m, s, n


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
        p = papers[0]
        return {k: p.get(k) for k in ("accuracy", "std", "dataset", "table")}
    return None


@dataclass
class Group:
    key: tuple
    jobs: list[Job]
    failed: list[Job]
    stats: dict[str, tuple[float, float, int]]
    paper: dict | None
    T: int


def value_order(jobs: list[Job], keys: list[str]) -> list[dict[str, tuple]]:
    """Sort order of each key's values: numbers ascending, other values in the order the sweep ran
    them (Hydra runs the grid in the order its values were given, e.g. tdbn, tebn, tab)."""
    ordered = sorted(jobs, key=lambda j: (j.started is None, j.started or 0.0, j.name))
    ranks = []
    for k in keys:
        vals = [display(j.fact(k)) for j in ordered]
        r: dict[str, tuple] = {}
        for v in vals:
            if v not in r:
                n = _num(v)
                r[v] = (0, n, "") if n is not None else (1, float(len(r)), v)
        ranks.append(r)
    return ranks


def summarize(jobs: list[Job], keys: list[str], metric: str = DEFAULT_METRIC) -> list[Group]:
    groups: "OrderedDict[tuple, list[Job]]" = OrderedDict()
    for j in jobs:
        groups.setdefault(tuple(display(j.fact(k)) for k in keys), []).append(j)
    rank = value_order(jobs, keys)
    out = []
    for key in sorted(groups, key=lambda t: tuple(rank[i].get(v, (2, 0.0, v)) for i, v in enumerate(t))):
        members = groups[key]
        done = [j for j in members if j.status == "finished"]
        failed = [j for j in members if j.status != "finished"]
        stage = metric.split("/")[0]
        T = max((int(m["t"]) for j in done for k in j.metrics if (m := ACC_T.match(k)) and m["stage"] == stage), default=0)
        stats: dict[str, tuple[float, float, int]] = {}
        stats["acc"] = mean_std([100 * j.metrics[metric] for j in done if metric in j.metrics])
        for t in range(1, T + 1):
            k = f"{stage}/acc_t{t}"
            stats[f"acc_t{t}"] = mean_std([100 * j.metrics[k] for j in done if k in j.metrics])
        for k in ("drift", "drift_active"):
            vals = [j.drift[k] for j in done if k in j.drift]
            if vals:
                stats[k] = mean_std(vals)
        secs = [float(j.seconds) for j in done if j.seconds is not None]
        if secs:
            stats["seconds"] = mean_std(secs)
        out.append(Group(key=key, jobs=done, failed=failed, stats=stats, paper=paper_for(members), T=T))
    return out


# -- writing -------------------------------------------------------------------------------------
def fmt(m: float, s: float, digits: int = 2) -> str:
    if m is None or math.isnan(m):
        return "–"
    if abs(m) < 0.5 * 10 ** -digits:
        m = 0.0  # no "-0.00"
    return f"{m:.{digits}f}" if s is None or math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def paper_text(p: dict | None) -> str:
    if not p or p.get("accuracy") is None:
        return ""
    txt = f"{p['accuracy']:.2f}" + (f" ± {p['std']:.2f}" if p.get("std") is not None else "")
    return txt + (f" ({p['dataset']})" if p.get("dataset") else "")


def write_jobs_csv(path: Path, jobs: list[Job], keys: list[str]) -> None:
    metric_keys = sorted({k for j in jobs for k in j.metrics})
    drift_keys = sorted({k for j in jobs for k in j.drift})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "status", "error", *keys, "seed", "seconds", *metric_keys, *drift_keys])
        for j in jobs:
            w.writerow([j.name, j.status, j.error, *[display(j.fact(k)) for k in keys], display(j.seed),
                        "" if j.seconds is None else f"{float(j.seconds):.2f}",
                        *[j.metrics.get(k, "") for k in metric_keys], *[j.drift.get(k, "") for k in drift_keys]])


def write_summary_csv(path: Path, groups: list[Group], keys: list[str]) -> None:
    T = max((g.T for g in groups), default=0)
    stat_cols = ["acc"] + [f"acc_t{t}" for t in range(1, T + 1)] + ["drift", "drift_active", "seconds"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        head = [*keys, "n", "n_failed"]
        for c in stat_cols:
            head += [f"{c}_mean", f"{c}_std"]
        head += ["paper_accuracy", "paper_std", "paper_dataset", "paper_table"]
        w.writerow(head)
        for g in groups:
            row = [*g.key, len(g.jobs), len(g.failed)]
            for c in stat_cols:
                m, s, _ = g.stats.get(c, (float("nan"), float("nan"), 0))
                row += ["" if math.isnan(m) else round(m, 6), "" if math.isnan(s) else round(s, 6)]
            p = g.paper or {}
            row += [p.get("accuracy", ""), p.get("std", ""), p.get("dataset", "") or "", p.get("table", "") or ""]
            w.writerow(["" if v is None else v for v in row])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(groups: list[Group], keys: list[str], jobs: list[Job], metric: str, title: str,
                     robustness: str = "") -> str:
    T_all = {g.T for g in groups if g.jobs}
    T = max(T_all, default=0)
    same_T = len(T_all) == 1
    has_drift = any("drift" in g.stats for g in groups)
    has_paper = any(g.paper for g in groups)
    header = [*keys] if keys else ["run"]
    header += ["n", f"{metric} (%)"]
    if T:
        header += [f"acc@t{t} (%)" for t in range(1, T + 1)] if same_T and T <= 6 else ["acc@t1 (%)"]
    if has_drift:
        header += ["drift (all)", "drift (active)"]
    if has_paper:
        header += ["paper (%)"]
    rows = []
    for g in groups:
        n = f"{len(g.jobs)}" + (f" ({len(g.failed)} failed)" if g.failed else "")
        row = [*g.key] if keys else ["all"]
        row += [n, fmt(*g.stats["acc"][:2])]
        if T:
            ts = range(1, T + 1) if same_T and T <= 6 else [1]
            row += [fmt(*g.stats.get(f"acc_t{t}", (float("nan"), float("nan"), 0))[:2]) for t in ts]
        if has_drift:
            row += [fmt(*g.stats.get(k, (float("nan"), float("nan"), 0))[:2], digits=3) for k in ("drift", "drift_active")]
        if has_paper:
            row += [paper_text(g.paper)]
        rows.append(row)
    n_done = sum(j.status == "finished" for j in jobs)
    parts = [f"# {title}", "",
             f"{len(jobs)} jobs: {n_done} finished, {len(jobs) - n_done} failed or unfinished. "
             f"Mean ± sample std (ddof=1) over seeds; accuracies in %. acc@t: accuracy of the mean "
             f"logits of timesteps 1..t.", ""]
    if has_drift:
        parts += ["drift: mean over neuron layers of |E[M[1]] − E[M[T]]| (membrane before firing, test "
                  "set; all neurons / neurons that fired).", ""]
    if has_paper:
        parts += ["paper: the paper's number for the same configuration at full scale (dataset in "
                  "brackets); at a smaller scale it is a reference, not a target.", ""]
    parts += [markdown_table(header, rows), ""]
    if robustness:
        parts += [robustness, ""]
    bad = [j for j in jobs if j.status != "finished"]
    if bad:
        parts += ["## Failed or unfinished jobs", ""]
        parts += [f"- `{j.name}`: {j.status}" + (f" — {j.error}" if j.error else "") for j in bad]
        parts.append("")
    return "\n".join(parts)


# -- plots ---------------------------------------------------------------------------------------
def plot_spec(jobs: list[Job], keys: list[str], x: str | None, line: str | None, panels: list[str] | None):
    """(x, line, panels) for the Fig. 9-style plot, or None when the sweep has no such axes."""
    study_plot = next((j.study.get("plot") for j in jobs if j.study.get("plot")), None) or {}
    x = x or study_plot.get("x") or ("neuron.v_threshold" if "neuron.v_threshold" in keys else None)
    line = line or study_plot.get("line") or ("sg" if "sg" in keys else None)
    if not x or x not in keys:
        return None
    if line and line not in keys:
        line = None
    if panels is None:
        panels = [k for k in (study_plot.get("panels") or []) if k in keys]
        panels += [k for k in keys if k not in (x, line, *panels)]
    return x, line, [p for p in panels if p in keys and p not in (x, line)]


def robustness_markdown(groups: list[Group], keys: list[str], spec) -> str:
    """Per panel and line: accuracy averaged over x, its min, max and spread (max − min)."""
    x, line, panels = spec
    idx = {k: i for i, k in enumerate(keys)}
    cells: "OrderedDict[tuple, list[float]]" = OrderedDict()
    for g in groups:
        m = g.stats["acc"][0]
        if math.isnan(m):
            continue
        pk = tuple(g.key[idx[p]] for p in panels)
        lk = g.key[idx[line]] if line else "all"
        cells.setdefault((pk, lk), []).append(m)
    rows = []
    pos = {pk: i for i, pk in enumerate(unique(pk for pk, _ in cells))}
    for (pk, lk), vals in sorted(cells.items(), key=lambda kv: pos[kv[0][0]]):
        rows.append([*pk, lk, len(vals), f"{sum(vals) / len(vals):.2f}", f"{min(vals):.2f}", f"{max(vals):.2f}",
                     f"{max(vals) - min(vals):.2f}"])
    # overall per line
    per_line: "OrderedDict[str, list[float]]" = OrderedDict()
    for (pk, lk), vals in cells.items():
        per_line.setdefault(lk, []).append((sum(vals) / len(vals), max(vals) - min(vals)))
    header = [*panels, line or "line", f"#{x}", "mean acc (%)", "min", "max", "spread (max−min)"]
    out = [f"## Robustness across {x}", "",
           f"Per {' × '.join(panels) if panels else 'sweep'} and {line or 'line'}: the mean over seeds at each {x}, "
           f"then its average, minimum, maximum and spread across {x}.", "",
           markdown_table(header, rows), ""]
    if panels:
        summary = [[lk, f"{sum(a for a, _ in v) / len(v):.2f}", f"{sum(s for _, s in v) / len(v):.2f}",
                    f"{max(s for _, s in v):.2f}"] for lk, v in per_line.items()]
        out += [f"Averaged over the panels ({' × '.join(panels)}):", "",
                markdown_table([line or "line", "mean acc (%)", "mean spread", "largest spread"], summary), ""]
    return "\n".join(out)


def plot_accuracy_vs(path: Path, groups: list[Group], keys: list[str], spec, metric: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, line, panels = spec
    idx = {k: i for i, k in enumerate(keys)}
    panel_vals = [unique(g.key[idx[p]] for g in groups) for p in panels]
    combos = list(product(*panel_vals)) if panels else [()]
    n = len(combos)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    lines = unique(g.key[idx[line]] for g in groups) if line else [None]
    markers = "osD^vP*X"
    for ax, combo in zip(axes.flat, combos):
        for li, lv in enumerate(lines):
            pts = []
            for g in groups:
                if any(g.key[idx[p]] != v for p, v in zip(panels, combo)):
                    continue
                if line and g.key[idx[line]] != lv:
                    continue
                m, s, _ = g.stats["acc"]
                xv = _num(g.key[idx[x]])
                if math.isnan(m) or xv is None:
                    continue
                pts.append((xv, m, 0.0 if math.isnan(s) else s))
            if not pts:
                continue
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                        marker=markers[li % len(markers)], capsize=3, label=str(lv) if line else None)
        ax.set_title(", ".join(f"{p}={v}" for p, v in zip(panels, combo)) or title, fontsize=9)
        ax.set_xlabel(x)
        xs = sorted({_num(g.key[idx[x]]) for g in groups if _num(g.key[idx[x]]) is not None})
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 4:
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([display(v) for v in xs])
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric} (%)")
    if line:
        axes.flat[0].legend(title=line, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_timestep(path: Path, groups: list[Group], keys: list[str], title: str, panels: list[str] | None = None,
                      max_lines: int = 20) -> None:
    """Accuracy of the mean logits of timesteps 1..t against t: one line per group, one panel per
    combination of ``panels`` (the Fig. 9 panels when the sweep has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in (panels or []) if p in keys]
    idx = {k: i for i, k in enumerate(keys)}
    rest = [k for k in keys if k not in panels]
    drawn = [g for g in groups if g.T and g.jobs]
    combos = unique(tuple(g.key[idx[p]] for p in panels) for g in drawn)
    combos = combos or [()]
    n = len(combos)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    per_panel = max((sum(1 for g in drawn if tuple(g.key[idx[p]] for p in panels) == c) for c in combos), default=1)
    per_panel = min(per_panel, max_lines)
    legend_rows = math.ceil(per_panel / (2 if n > 1 else 1))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols + (2.5 if n == 1 else 0), 3.0 * nrows + 0.22 * legend_rows),
                             squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10" if per_panel <= 10 else "tab20")
    T = max((g.T for g in drawn), default=1)
    for ax, combo in zip(axes.flat, combos):
        members = [g for g in drawn if tuple(g.key[idx[p]] for p in panels) == combo][:max_lines]
        for i, g in enumerate(members):
            ts = [t for t in range(1, g.T + 1) if not math.isnan(g.stats[f"acc_t{t}"][0])]
            ms = [g.stats[f"acc_t{t}"][0] for t in ts]
            ss = [0.0 if math.isnan(g.stats[f"acc_t{t}"][1]) else g.stats[f"acc_t{t}"][1] for t in ts]
            label = ", ".join(f"{k}={g.key[idx[k]]}" for k in rest) or "all"
            ax.errorbar(ts, ms, yerr=ss, marker="o", markersize=3, capsize=2, label=label, color=cmap(i % cmap.N))
        ax.set_title(", ".join(f"{p}={v}" for p, v in zip(panels, combo)) or title, fontsize=9)
        ax.set_xticks(range(1, T + 1))
        ax.set_xlabel("t (mean logits of steps 1..t)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if n == 1:
        axes.flat[0].legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)))
    if n > 1:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 * legend_rows if n > 1 else 0, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- training curves (Fig. 9 bottom row) ---------------------------------------------------------
VTHR_KEY = "neuron.v_threshold"
CURVE_COLUMNS = (("train/loss_epoch", "training loss", 1.0), ("val/acc", "validation accuracy (%)", 100.0))


def training_curves(jobs: list[Job], keys: list[str], at: float = 1.0, line: str | None = None,
                    panels: list[str] | None = None) -> dict | None:
    """Per-epoch curves of the finished jobs whose initial V_thr equals ``at``: ``{"panels": keys,
    "line": key, "curves": {panel values: {line value: {column: [(epoch, mean, std, n), ...]}}}}``,
    mean and sample std over seeds (columns scaled as plotted: val/acc in percent). None when V_thr
    was not swept or no such job logged a per-epoch value."""
    spec = plot_spec(jobs, keys, VTHR_KEY, line, panels)
    if spec is None:
        return None
    _, line, panels = spec
    chosen = [j for j in jobs if j.status == "finished" and same_value(j.fact(VTHR_KEY), at)]
    rank = value_order(jobs, keys)
    order = lambda k, v: rank[keys.index(k)].get(v, (2, 0.0, v))  # noqa: E731
    per: "OrderedDict[tuple, OrderedDict[str, dict[str, dict[int, list[float]]]]]" = OrderedDict()
    for j in sorted(chosen, key=lambda j: tuple(order(k, display(j.fact(k))) for k in [*panels, *([line] if line else [])])):
        data = read_epoch_metrics(j.path, tuple(c for c, _, _ in CURVE_COLUMNS))
        if not any(data.values()):
            continue
        combo = tuple(display(j.fact(p)) for p in panels)
        lv = display(j.fact(line)) if line else "all"
        cell = per.setdefault(combo, OrderedDict()).setdefault(lv, {c: {} for c, _, _ in CURVE_COLUMNS})
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


def plot_training_curves(path: Path, data: dict, title: str) -> None:
    """Fig. 9 bottom row: one column per panel, training loss (top) and validation accuracy (bottom)
    against the epoch, one line per ``data["line"]`` value with a ±std band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = list(data["curves"])
    n = len(combos)
    rows = len(CURVE_COLUMNS)
    fig, axes = plt.subplots(rows, n, figsize=(3.6 * n, 2.8 * rows), squeeze=False, sharey="row", sharex=True)
    markers = "osD^vP*X"
    line_vals = unique(lv for c in combos for lv in data["curves"][c])
    colors = {lv: f"C{i % 10}" for i, lv in enumerate(line_vals)}
    for col, combo in enumerate(combos):
        for r, (c, label, _) in enumerate(CURVE_COLUMNS):
            ax = axes[r, col]
            for lv, cols in data["curves"][combo].items():
                pts = [(e, m, 0.0 if math.isnan(s) else s) for e, m, s, k in cols[c] if k and not math.isnan(m)]
                if not pts:
                    continue
                es, ms, ss = ([p[i] for p in pts] for i in range(3))
                li = line_vals.index(lv)
                ax.plot(es, ms, marker=markers[li % len(markers)], markersize=3, color=colors[lv],
                        label=str(lv) if data["line"] else None)
                ax.fill_between(es, [m - s for m, s in zip(ms, ss)], [m + s for m, s in zip(ms, ss)],
                                color=colors[lv], alpha=0.15, linewidth=0)
            if r == 0:
                ax.set_title(", ".join(f"{p}={v}" for p, v in zip(data["panels"], combo)) or title, fontsize=9)
            if r == rows - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    epochs = sorted({e for combo in combos for cols in data["curves"][combo].values() for c, _, _ in CURVE_COLUMNS
                     for e, *_ in cols[c]})
    if epochs and len(epochs) <= 20:
        axes[-1, 0].set_xticks(epochs)
    if data["line"]:
        axes[0, 0].legend(title=data["line"], fontsize=8)
    fig.suptitle(f"{title}: training curves at {VTHR_KEY} = {display(data['at'])} (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- paired comparison ---------------------------------------------------------------------------
def paired_markdown(jobs: list[Job], keys: list[str], key: str, metric: str = DEFAULT_METRIC) -> str:
    """Differences to the first value of ``key`` (the baseline), paired by seed within each
    combination of the other keys: mean ± std of the per-seed differences and wins/ties/losses.
    Pairing removes what a seed shares (initialization, data split, batch order)."""
    if key not in keys:
        raise AggregateError(f"--paired {key}: not one of the group keys ({', '.join(keys) or 'none'})")
    done = [j for j in jobs if j.status == "finished"]
    rank = value_order(done, keys)
    ki = keys.index(key)
    values = sorted(rank[ki], key=lambda v: rank[ki][v])
    base, others = values[0], values[1:]
    rest = [k for k in keys if k != key]
    stage = metric.split("/")[0]
    measures = [("acc", metric, 100.0), ("acc@t1", f"{stage}/acc_t1", 100.0)]
    has_drift = any("drift_active" in j.drift for j in done)
    table: dict[tuple, dict[str, dict]] = OrderedDict()
    for j in sorted(done, key=lambda j: tuple(rank[keys.index(k)].get(display(j.fact(k)), (2, 0.0, "")) for k in rest)):
        ctx = tuple(display(j.fact(k)) for k in rest)
        table.setdefault(ctx, {}).setdefault(display(j.fact(key)), {})[display(j.seed)] = j
    rows = []
    for ctx, by_value in table.items():
        for v in others:
            a, b = by_value.get(base, {}), by_value.get(v, {})
            seeds = [s for s in a if s in b]
            if not seeds:
                continue
            row = [*ctx, f"{v} − {base}", len(seeds)]
            for _, mkey, scale in measures:
                d = [scale * (b[s].metrics[mkey] - a[s].metrics[mkey]) for s in seeds
                     if mkey in a[s].metrics and mkey in b[s].metrics]
                m, sd, _ = mean_std(d)
                row += [fmt(m, sd), f"{sum(x > 0 for x in d)}/{sum(x == 0 for x in d)}/{sum(x < 0 for x in d)}"]
            if has_drift:
                d = [b[s].drift["drift_active"] - a[s].drift["drift_active"] for s in seeds
                     if "drift_active" in a[s].drift and "drift_active" in b[s].drift]
                m, sd, _ = mean_std(d)
                row += [fmt(m, sd, digits=3)]
            rows.append(row)
    header = [*rest, key, "seeds"]
    for name, _, _ in measures:
        header += [f"Δ {name} (points)", "wins/ties/losses"]
    if has_drift:
        header += ["Δ drift (active)"]
    return "\n".join([f"## Paired by seed: {key}", "",
                      f"Per seed, the value of {key} minus the baseline {key}={base} in the same seed and "
                      f"configuration; mean ± std over seeds. wins/ties/losses count the seeds where the "
                      f"difference is > 0 / = 0 / < 0.", "", markdown_table(header, rows), ""])


# -- entry point ---------------------------------------------------------------------------------
def aggregate(paths: list[Path], out: Path | None = None, group_by: list[str] | None = None,
              metric: str = DEFAULT_METRIC, x: str | None = None, line: str | None = None,
              panels: list[str] | None = None, plots: bool = True, title: str | None = None,
              paired: list[str] | None = None, curves_at: float | None = 1.0) -> dict:
    """Read the sweep(s), write the CSVs, the Markdown table and the plots; return what was written."""
    paths = [Path(p) for p in paths]
    jobs = read_sweep(paths)
    keys = list(group_by) if group_by else swept_keys(jobs)
    groups = summarize(jobs, keys, metric)
    out = Path(out) if out else paths[0] / "aggregate"
    out.mkdir(parents=True, exist_ok=True)
    study = next((j.study for j in jobs if j.study), {})
    title = title or (f"{study.get('name', paths[0].name)} ({study.get('scale', '?')} scale)" if study else paths[0].name)
    spec = plot_spec(jobs, keys, x, line, panels)
    robust = robustness_markdown(groups, keys, spec) if spec else ""
    for key in paired or []:
        robust = (robust + "\n" if robust else "") + paired_markdown(jobs, keys, key, metric)
    written = {"jobs_csv": out / "jobs.csv", "summary_csv": out / "summary.csv", "summary_md": out / "summary.md"}
    write_jobs_csv(written["jobs_csv"], jobs, keys)
    write_summary_csv(written["summary_csv"], groups, keys)
    md = summary_markdown(groups, keys, jobs, metric, title, robust)
    written["summary_md"].write_text(md)
    if plots:
        if spec:
            p = out / f"accuracy_vs_{spec[0].split('.')[-1]}.png"
            plot_accuracy_vs(p, groups, keys, spec, metric, title)
            written["accuracy_vs"] = p
        if any(g.T for g in groups):
            p = out / "accuracy_per_timestep.png"
            plot_per_timestep(p, groups, keys, title, panels=spec[2] if spec else None)
            written["per_timestep"] = p
    curves = training_curves(jobs, keys, curves_at, line, panels) if curves_at is not None else None
    if plots and curves:
        p = out / "training_curves.png"
        plot_training_curves(p, curves, title)
        written["training_curves"] = p
    return {"jobs": jobs, "groups": groups, "keys": keys, "markdown": md, "written": written, "curves": curves}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snn-aggregate",
        description="Summarize a sweep folder (Hydra multirun output of snn-train): mean ± std over seeds "
        "per configuration as CSV and Markdown, the failed jobs, a Fig. 9-style plot and the per-timestep "
        "accuracy plot.",
        epilog="example: snn-aggregate outputs/sweeps/fig9/smoke --out docs/results/fig9_smoke",
    )
    p.add_argument("sweep", nargs="+", type=Path, help="sweep folder(s): every job folder below is read")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <sweep>/aggregate)")
    p.add_argument("--group-by", nargs="+", default=None, metavar="KEY",
                   help="group by these keys (override keys, group names such as sg, or dotted config keys); "
                   "default: every swept override except the seed")
    p.add_argument("--metric", default=DEFAULT_METRIC, help=f"final accuracy metric in metrics.json (default {DEFAULT_METRIC})")
    p.add_argument("--x", default=None, help="x axis of the Fig. 9-style plot (default: neuron.v_threshold if swept)")
    p.add_argument("--line", default=None, help="one line per value of this key (default: sg if swept)")
    p.add_argument("--panels", nargs="*", default=None, metavar="KEY", help="one panel per combination of these keys (default: the other swept keys)")
    p.add_argument("--title", default=None, help="title of the table and plots")
    p.add_argument("--paired", nargs="+", default=None, metavar="KEY",
                   help="also compare each value of KEY with its first value, paired by seed (e.g. --paired mp_init)")
    p.add_argument("--curves-at", type=float, default=1.0, metavar="V_THR",
                   help="initial V_thr of the training-curves plot (loss and val accuracy per epoch; default 1.0)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        res = aggregate(args.sweep, out=args.out, group_by=args.group_by, metric=args.metric, x=args.x,
                        line=args.line, panels=args.panels, plots=not args.no_plots, title=args.title,
                        paired=args.paired, curves_at=args.curves_at)
    except AggregateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(res["markdown"])
    for name, path in res["written"].items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
