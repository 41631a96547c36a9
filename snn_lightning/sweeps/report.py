"""Write a summarized sweep: ``jobs.csv``, ``summary.csv`` and the Markdown report ``summary.md``.

Numbers come from :mod:`snn_lightning.sweeps.summary`; this module only formats them. The columns
after the accuracies follow :data:`~snn_lightning.sweeps.summary.MEASURES`.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from .read import Job
from .summary import MEASURES, NO_STAT, Group, Measure, display, mean_std, paired, robustness_cells, unique


def fmt(m: float, s: float, digits: int = 2) -> str:
    """``m ± s`` with ``digits`` decimals; ``–`` for no value, ``m`` alone without a spread."""
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


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- CSV ---------------------------------------------------------------------------------------------
def write_jobs_csv(path: Path, jobs: list[Job], keys: list[str]) -> None:
    """One row per job: folder, status, error, the group keys, seed, seconds, every metric and drift value."""
    metric_keys = sorted({k for j in jobs for k in j.metrics})
    drift_keys = sorted({k for j in jobs for k in j.drift})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", "status", "error", *keys, "seed", "seconds", *metric_keys, *drift_keys])
        for j in jobs:
            w.writerow([j.name, j.status, j.error, *[display(j.fact(k)) for k in keys], display(j.seed),
                        "" if j.seconds is None else f"{float(j.seconds):.2f}",
                        *[j.metrics.get(k, "") for k in metric_keys], *[j.drift.get(k, "") for k in drift_keys]])


def write_summary_csv(path: Path, groups: list[Group], keys: list[str], measures: Sequence[Measure] = MEASURES) -> None:
    """One row per group: keys, n, n_failed, ``<stat>_mean``/``<stat>_std`` (6 decimals), the paper's number."""
    T = max((g.T for g in groups), default=0)
    stat_cols = ["acc"] + [f"acc_t{t}" for t in range(1, T + 1)] + [ms.name for ms in measures]
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
                m, s, _ = g.stats.get(c, NO_STAT)
                row += ["" if math.isnan(m) else round(m, 6), "" if math.isnan(s) else round(s, 6)]
            p = g.paper or {}
            row += [p.get("accuracy", ""), p.get("std", ""), p.get("dataset", "") or "", p.get("table", "") or ""]
            w.writerow(["" if v is None else v for v in row])


# -- Markdown ----------------------------------------------------------------------------------------
def summary_markdown(groups: list[Group], keys: list[str], jobs: list[Job], metric: str, title: str,
                     sections: str = "", measures: Sequence[Measure] = MEASURES) -> str:
    """The report: the group table, then ``sections`` (robustness, paired tables), then the failures."""
    T_all = {g.T for g in groups if g.jobs}
    T = max(T_all, default=0)
    ts = (range(1, T + 1) if len(T_all) == 1 and T <= 6 else [1]) if T else []
    shown = [ms for ms in measures if ms.label and any((ms.shown_with or ms.name) in g.stats for g in groups)]
    has_drift = any("drift" in g.stats for g in groups)
    has_paper = any(g.paper for g in groups)
    header = [*(keys or ["run"]), "n", f"{metric} (%)", *[f"acc@t{t} (%)" for t in ts], *[ms.label for ms in shown]]
    if has_paper:
        header += ["paper (%)"]
    rows = []
    for g in groups:
        n = f"{len(g.jobs)}" + (f" ({len(g.failed)} failed)" if g.failed else "")
        row = [*(g.key if keys else ["all"]), n, fmt(*g.stats["acc"][:2])]
        row += [fmt(*g.stats.get(f"acc_t{t}", NO_STAT)[:2]) for t in ts]
        row += [fmt(*g.stats.get(ms.name, NO_STAT)[:2], digits=ms.digits) for ms in shown]
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
    if sections:
        parts += [sections, ""]
    bad = [j for j in jobs if j.status != "finished"]
    if bad:
        parts += ["## Failed or unfinished jobs", ""]
        parts += [f"- `{j.name}`: {j.status}" + (f" — {j.error}" if j.error else "") for j in bad]
        parts.append("")
    return "\n".join(parts)


def robustness_markdown(groups: list[Group], keys: list[str], spec) -> str:
    """Per panel and line: accuracy averaged over x, its min, max and spread (max − min)."""
    x, line, panels = spec
    cells = robustness_cells(groups, keys, spec)
    pos = {pk: i for i, pk in enumerate(unique(pk for pk, _ in cells))}  # rows grouped by panel
    rows = [[*pk, lk, len(vals), f"{sum(vals) / len(vals):.2f}", f"{min(vals):.2f}", f"{max(vals):.2f}",
             f"{max(vals) - min(vals):.2f}"] for (pk, lk), vals in sorted(cells.items(), key=lambda kv: pos[kv[0][0]])]
    per_line: dict[str, list[tuple[float, float]]] = {}
    for (_, lk), vals in cells.items():
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


def wins(d: list[float]) -> str:
    return f"{sum(x > 0 for x in d)}/{sum(x == 0 for x in d)}/{sum(x < 0 for x in d)}"


def paired_markdown(jobs: list[Job], keys: list[str], key: str, metric: str) -> str:
    """The paired-by-seed table of :func:`~snn_lightning.sweeps.summary.paired`."""
    p = paired(jobs, keys, key, metric)
    base, acc_measures = p["base"], [m for m in p["measures"] if m != "drift_active"]
    has_drift = "drift_active" in p["measures"]
    rows = []
    for r in p["rows"]:
        row = [*r.context, f"{r.value} − {base}", r.seeds]
        for name in acc_measures:
            row += [fmt(*mean_std(r.diffs[name])[:2]), wins(r.diffs[name])]
        if has_drift:
            row += [fmt(*mean_std(r.diffs["drift_active"])[:2], digits=3)]
        rows.append(row)
    header = [*p["rest"], key, "seeds"]
    for name in acc_measures:
        header += [f"Δ {name} (points)", "wins/ties/losses"]
    if has_drift:
        header += ["Δ drift (active)"]
    return "\n".join([f"## Paired by seed: {key}", "",
                      f"Per seed, the value of {key} minus the baseline {key}={base} in the same seed and "
                      f"configuration; mean ± std over seeds. wins/ties/losses count the seeds where the "
                      f"difference is > 0 / = 0 / < 0.", "", markdown_table(header, rows), ""])
