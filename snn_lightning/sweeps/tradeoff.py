"""Accuracy against cost across a sweep (the paper's Fig. 8): points with mean ± std over seeds, and the Pareto front.

A point is one setting of the swept keys (seeds pooled): its accuracy and its cost (mean firing rate
``test/fr_mean``, energy ``test/energy_uj``, …), each as mean ± std over the seeds that finished. A
point is on the Pareto front when no other point has at most its cost and at least its accuracy with
one of the two strictly better (on the means). The front is drawn over every point, so whether one
method's points form it (the paper's claim for MP-Init) is read off the figure and the table.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from ..plots import _colors, new_figure
from .summary import Stat, mean_std

COST_LABELS = {"test/fr_mean": "mean firing rate (test)", "test/energy_uj": "energy per sample (µJ, test)",
               "test/ops_ac": "accumulates per sample (test)", "test/ops_mac": "multiply-accumulates per sample (test)"}


@dataclass
class TradeoffPoint:
    setting: dict[str, str]  # swept key -> displayed value
    line: str  # the value of the key that picks the series (e.g. mp_init: on / off)
    acc: Stat  # percent
    cost: Stat


def pareto_front(points: Sequence[TradeoffPoint]) -> list[int]:
    """Indices of the non-dominated points (lower cost, higher accuracy), by increasing cost; NaNs never qualify."""
    ok = [i for i, p in enumerate(points) if not (math.isnan(p.acc[0]) or math.isnan(p.cost[0]))]

    def dominated(i: int) -> bool:
        a, c = points[i].acc[0], points[i].cost[0]
        return any(points[j].cost[0] <= c and points[j].acc[0] >= a and (points[j].cost[0] < c or points[j].acc[0] > a) for j in ok if j != i)

    return sorted((i for i in ok if not dominated(i)), key=lambda i: points[i].cost[0])


def tradeoff_points(groups: Sequence[tuple[dict[str, str], Sequence]], line_key: str, accuracy: str, cost: str) -> list[TradeoffPoint]:
    """One point per group ``(setting, finished jobs)``; a job is anything with a ``metrics`` dict."""
    out = []
    for setting, jobs in groups:
        acc = mean_std([100 * j.metrics[accuracy] for j in jobs if accuracy in j.metrics])
        c = mean_std([j.metrics[cost] for j in jobs if cost in j.metrics])
        out.append(TradeoffPoint(setting=dict(setting), line=str(setting.get(line_key, "")), acc=acc, cost=c))
    return out


def plot_tradeoff(series: dict[str, list[TradeoffPoint]], line_key: str, title: str | None = None) -> Figure:
    """One panel per cost key: accuracy (mean ± std over seeds) against the cost, one colour per
    ``line_key`` value, the Pareto front over all points as a dashed step line with its points ringed."""
    fig, axes = new_figure(len(series), panel=(4.2, 3.2))
    for ax, (cost, points) in zip(axes, series.items()):
        lines = list(dict.fromkeys(p.line for p in points))
        for value, color in zip(lines, _colors(len(lines), "tab10")):
            pts = sorted((p for p in points if p.line == value), key=lambda p: p.cost[0])
            ax.errorbar([p.cost[0] for p in pts], [p.acc[0] for p in pts],
                        xerr=[0 if math.isnan(p.cost[1]) else p.cost[1] for p in pts],
                        yerr=[0 if math.isnan(p.acc[1]) else p.acc[1] for p in pts],
                        marker="o", ms=4, capsize=2, lw=1, color=color, label=f"{line_key}={value}")
        front = [points[i] for i in pareto_front(points)]
        if front:
            ax.step([p.cost[0] for p in front], [p.acc[0] for p in front], where="post", ls="--", color="0.3", lw=1, label="Pareto front")
            ax.scatter([p.cost[0] for p in front], [p.acc[0] for p in front], s=90, facecolors="none", edgecolors="0.2", lw=1)
        ax.set(xlabel=COST_LABELS.get(cost, cost), ylabel="test accuracy (%)")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def tradeoff_markdown(series: dict[str, list[TradeoffPoint]], keys: Sequence[str], digits: int = 4) -> str:
    """A table per cost: each setting's accuracy and cost (mean ± std, n) and whether it is on the front."""

    def fmt(m, s, d):
        if math.isnan(m):
            return "–"
        return f"{m:.{d}g}" + ("" if math.isnan(s) else f" ± {s:.2g}")

    parts = []
    for cost, points in series.items():
        on_front = set(pareto_front(points))
        rows = ["| " + " | ".join([*keys, "test acc (%)", COST_LABELS.get(cost, cost), "n", "Pareto"]) + " |",
                "|" + "---|" * (len(keys) + 4)]
        for i, p in enumerate(points):
            rows.append("| " + " | ".join([*(p.setting.get(k, "") for k in keys), fmt(*p.acc[:2], 4), fmt(*p.cost[:2], digits),
                                          str(p.acc[2]), "yes" if i in on_front else ""]) + " |")
        parts.append(f"**accuracy vs {COST_LABELS.get(cost, cost)}**\n\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def write_tradeoff(out, groups: Sequence, keys: Sequence[str], spec: dict, title: str | None = None) -> dict:
    """Fig. 8 for a sweep: ``accuracy_vs_cost.png`` (one panel per cost) and ``tradeoff.md`` in ``out``.

    ``groups`` are the sweep's summary groups (``.key``: the displayed values of ``keys``; ``.jobs``:
    the finished jobs); ``spec`` is the sweep's ``study.tradeoff`` (``accuracy``, ``costs``, ``line``).
    Costs no job logged are left out; returns ``{name: path}`` of what was written (empty when none).
    """
    from pathlib import Path

    from ..plots import save_figure

    accuracy = spec.get("accuracy", "test/acc")
    line = spec.get("line", keys[-1] if keys else "")
    settings = [(dict(zip(keys, g.key)), g.jobs) for g in groups]
    series = {}
    for cost in spec.get("costs", ("test/fr_mean", "test/energy_uj")):
        if any(cost in j.metrics for _, jobs in settings for j in jobs):
            series[cost] = tradeoff_points(settings, line, accuracy, cost)
    if not series:
        return {}
    out = Path(out)
    written = {"tradeoff_png": save_figure(plot_tradeoff(series, line, title), out / "accuracy_vs_cost.png")}
    md = f"# {title or 'accuracy against cost'}\n\nMean ± sample std over seeds. Pareto: no other setting has at most this cost and at least this accuracy (means).\n\n"
    written["tradeoff_md"] = out / "tradeoff.md"
    written["tradeoff_md"].write_text(md + tradeoff_markdown(series, list(keys)))
    return written


__all__ = ["COST_LABELS", "TradeoffPoint", "pareto_front", "plot_tradeoff", "tradeoff_markdown", "tradeoff_points", "write_tradeoff"]
