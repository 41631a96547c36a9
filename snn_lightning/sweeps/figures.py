"""The sweep figures: data in, ``matplotlib.figure.Figure`` out, through :mod:`snn_lightning.plots`'
object API (``plots.new_figure`` / ``plots.save_figure``; no pyplot, no backend switch).

* :func:`plot_accuracy_vs`: the Fig. 9-style plot, final accuracy against x (the initial V_thr), one
  line per SG formulation, one panel per combination of the other keys;
* :func:`plot_per_timestep`: accuracy of the mean logits of timesteps 1..t against t, one line per group;
* :func:`plot_training_curves`: the Fig. 9 bottom row, training loss and validation accuracy per epoch.
"""
from __future__ import annotations

import math
from itertools import product

from matplotlib import colormaps
from matplotlib.figure import Figure

from ..plots import new_figure
from ..runs import as_float
from .summary import CURVE_COLUMNS, VTHR_KEY, Group, display, unique

MARKERS = "osD^vP*X"


def _grid(n: int, ncols: int, panel: tuple[float, float], sharey: bool) -> tuple[Figure, list]:
    """``n`` panels in rows of ``ncols``; y shared across all of them when ``sharey``."""
    fig, axes = new_figure(n, ncols=ncols, panel=panel)
    if sharey:
        for i, ax in enumerate(axes[1:], start=1):
            ax.sharey(axes[0])
            if i % ncols:
                ax.tick_params(labelleft=False)  # the first column carries the shared scale
    return fig, axes


def _panel_title(names, values, fallback: str) -> str:
    return ", ".join(f"{p}={v}" for p, v in zip(names, values)) or fallback


def plot_accuracy_vs(groups: list[Group], keys: list[str], spec, metric: str, title: str) -> Figure:
    """Mean ± std accuracy against ``spec``'s x, one line per its line key, a panel per combination."""
    x, line, panels = spec
    idx = {k: i for i, k in enumerate(keys)}
    combos = list(product(*[unique(g.key[idx[p]] for g in groups) for p in panels])) if panels else [()]
    ncols = min(len(combos), 4)
    fig, axes = _grid(len(combos), ncols, (3.6, 3.0), sharey=True)
    lines = unique(g.key[idx[line]] for g in groups) if line else [None]
    xs = sorted({v for g in groups if (v := as_float(g.key[idx[x]])) is not None})
    for ax, combo in zip(axes, combos):
        for li, lv in enumerate(lines):
            pts = []
            for g in groups:
                if any(g.key[idx[p]] != v for p, v in zip(panels, combo)) or (line and g.key[idx[line]] != lv):
                    continue
                m, s, _ = g.stats["acc"]
                xv = as_float(g.key[idx[x]])
                if not math.isnan(m) and xv is not None:
                    pts.append((xv, m, 0.0 if math.isnan(s) else s))
            if pts:
                pts.sort()
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                            marker=MARKERS[li % len(MARKERS)], capsize=3, label=str(lv) if line else None)
        ax.set_title(_panel_title(panels, combo, title), fontsize=9)
        ax.set_xlabel(x)
        if xs and min(xs) > 0 and max(xs) / min(xs) >= 4:  # V_thr 0.5..2 and wider: log axis
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs)
            ax.set_xticklabels([display(v) for v in xs])
        ax.grid(alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel(f"{metric} (%)")
    if line:
        axes[0].legend(title=line, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_per_timestep(groups: list[Group], keys: list[str], title: str, panels: list[str] | None = None,
                      max_lines: int = 20) -> Figure:
    """Accuracy of the mean logits of timesteps 1..t against t: one line per group, one panel per
    combination of ``panels`` (the Fig. 9 panels when the sweep has them)."""
    panels = [p for p in (panels or []) if p in keys]
    idx = {k: i for i, k in enumerate(keys)}
    rest = [k for k in keys if k not in panels]
    drawn = [g for g in groups if g.T and g.jobs]
    combo_of = {id(g): tuple(g.key[idx[p]] for p in panels) for g in drawn}
    combos = unique(combo_of[id(g)] for g in drawn) or [()]
    n = len(combos)
    ncols = min(n, 4)
    per_panel = min(max((sum(combo_of[id(g)] == c for g in drawn) for c in combos), default=1), max_lines)
    legend_rows = math.ceil(per_panel / (2 if n > 1 else 1))
    fig, axes = _grid(n, ncols, (3.8, 3.0), sharey=True)
    nrows = math.ceil(n / ncols)
    fig.set_size_inches(3.8 * ncols + (2.5 if n == 1 else 0), 3.0 * nrows + 0.22 * legend_rows)
    cmap = colormaps["tab10" if per_panel <= 10 else "tab20"]
    T = max((g.T for g in drawn), default=1)
    for ax, combo in zip(axes, combos):
        for i, g in enumerate([g for g in drawn if combo_of[id(g)] == combo][:max_lines]):
            ts = [t for t in range(1, g.T + 1) if not math.isnan(g.stats[f"acc_t{t}"][0])]
            ms = [g.stats[f"acc_t{t}"][0] for t in ts]
            ss = [0.0 if math.isnan(g.stats[f"acc_t{t}"][1]) else g.stats[f"acc_t{t}"][1] for t in ts]
            label = ", ".join(f"{k}={g.key[idx[k]]}" for k in rest) or "all"
            ax.errorbar(ts, ms, yerr=ss, marker="o", markersize=3, capsize=2, label=label, color=cmap(i % cmap.N))
        ax.set_title(_panel_title(panels, combo, title), fontsize=9)
        ax.set_xticks(range(1, T + 1))
        ax.set_xlabel("t (mean logits of steps 1..t)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel("accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    if n == 1:
        axes[0].legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncol=min(4, len(labels)))
        fig.suptitle(title, fontsize=10)
    return fig


def plot_training_curves(data: dict, title: str) -> Figure:
    """Fig. 9 bottom row from :func:`~snn_lightning.sweeps.summary.training_curves`: one column per
    panel, training loss (top) and validation accuracy (bottom) against the epoch, one line per
    ``data["line"]`` value with a ±std band over seeds. Axes in row order (loss row first)."""
    combos = list(data["curves"])
    n, rows = len(combos), len(CURVE_COLUMNS)
    fig, flat = new_figure(rows * n, ncols=n, panel=(3.6, 2.8))
    grid = [flat[r * n:(r + 1) * n] for r in range(rows)]
    for r in range(rows):  # y shared along a row, x everywhere
        for col, ax in enumerate(grid[r]):
            if col:
                ax.sharey(grid[r][0])
            if r or col:
                ax.sharex(grid[0][0])
            ax.label_outer()  # tick labels on the left column and the bottom row only
    line_vals = unique(lv for c in combos for lv in data["curves"][c])
    colors = {lv: f"C{i % 10}" for i, lv in enumerate(line_vals)}
    for col, combo in enumerate(combos):
        for r, (c, label, _) in enumerate(CURVE_COLUMNS):
            ax = grid[r][col]
            for lv, cols in data["curves"][combo].items():
                pts = [(e, m, 0.0 if math.isnan(s) else s) for e, m, s, k in cols[c] if k and not math.isnan(m)]
                if not pts:
                    continue
                es, ms, ss = ([p[i] for p in pts] for i in range(3))
                li = line_vals.index(lv)
                ax.plot(es, ms, marker=MARKERS[li % len(MARKERS)], markersize=3, color=colors[lv],
                        label=str(lv) if data["line"] else None)
                ax.fill_between(es, [m - s for m, s in zip(ms, ss)], [m + s for m, s in zip(ms, ss)],
                                color=colors[lv], alpha=0.15, linewidth=0)
            if r == 0:
                ax.set_title(_panel_title(data["panels"], combo, title), fontsize=9)
            if r == rows - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    epochs = sorted({e for combo in combos for cols in data["curves"][combo].values() for c, _, _ in CURVE_COLUMNS
                     for e, *_ in cols[c]})
    if epochs and len(epochs) <= 20:
        grid[-1][0].set_xticks(epochs)
    if data["line"]:
        grid[0][0].legend(title=data["line"], fontsize=8)
    fig.suptitle(f"{title}: training curves at {VTHR_KEY} = {display(data['at'])} (mean ± std over seeds)", fontsize=10)
    return fig
