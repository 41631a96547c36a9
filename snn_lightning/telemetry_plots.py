"""Figures of the gradient telemetry (``snn_lightning.telemetry``): gradient flow through time, per run and compared.

Object-oriented matplotlib through ``snn_lightning.plots`` (no pyplot state), so callbacks and the
CLIs can draw from any thread.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from .plots import _colors, new_figure, spread


def mean_summary(history: Sequence[tuple[int, Mapping]]) -> dict[str, dict[str, list[float]]]:
    """Per layer, the mean over recorded steps of ``m_norm`` and ``window`` (per t)."""
    out: dict[str, dict[str, list[float]]] = {}
    for _, summary in history:
        for layer, st in summary.items():
            for key in ("m_norm", "window"):
                if key in st:
                    out.setdefault(layer, {}).setdefault(key, []).append(st[key])
    return {layer: {k: [sum(col) / len(col) for col in zip(*rows)] for k, rows in d.items()} for layer, d in out.items()}


def _draw(ax, ys: Sequence[float], log: bool, **kw) -> None:
    t = list(range(1, len(ys) + 1))
    vals = [v if (not log or v > 0) and math.isfinite(v) else float("nan") for v in ys]
    ax.plot(t, vals, marker="o", ms=3, **kw)
    ax.set_xticks(t)
    if log and any(v > 0 for v in vals if math.isfinite(v)):
        ax.set_yscale("log")


def plot_gradient_flow(history: Sequence[tuple[int, Mapping]], max_layers: int = 6, title: str | None = None) -> Figure:
    """‖∂L/∂M[t]‖ and the surrogate-window occupancy against t, one line per layer (mean over recorded steps)."""
    summary = mean_summary(history)
    layers = spread(list(summary), max_layers)
    fig, (a, b) = new_figure(2, panel=(3.6, 2.8))
    for layer, color in zip(layers, _colors(len(layers))):
        if "m_norm" in summary[layer]:
            _draw(a, summary[layer]["m_norm"], True, color=color, label=layer)
        if "window" in summary[layer]:
            _draw(b, summary[layer]["window"], False, color=color, label=layer)
    a.set(xlabel="timestep t", ylabel="‖∂L/∂M[t]‖", title="gradient flow through time")
    b.set(xlabel="timestep t", ylabel="share with f′(x) > 0", title="surrogate-window occupancy", ylim=(0, 1.02))
    a.legend(fontsize=6)
    if title:
        fig.suptitle(title)
    return fig


def plot_gradient_comparison(summaries: Sequence[Mapping], labels: Sequence[str], max_layers: int = 4, title: str | None = None) -> Figure:
    """Runs side by side (e.g. AS-SG, RS-SG, TrSG): per chosen layer, ‖∂L/∂M[t]‖ against t, one line per run,
    and the relative threshold gradient |∂L/∂V_thr|/V_thr per layer."""
    common = [n for n in summaries[0] if all(n in s for s in summaries)]
    layers = spread(common, max_layers)
    fig, axes = new_figure(len(layers) + 1, ncols=min(len(layers) + 1, 3), panel=(3.2, 2.6))
    colors = _colors(len(summaries), "tab10")
    for ax, layer in zip(axes, layers):
        for s, label, color in zip(summaries, labels, colors):
            if "m_norm" in s[layer]:
                _draw(ax, s[layer]["m_norm"], True, color=color, label=label)
        ax.set(xlabel="timestep t", ylabel="‖∂L/∂M[t]‖", title=layer)
    ax = axes[-1]
    positive = False
    for s, label, color in zip(summaries, labels, colors):
        vals = [s[n].get("v_threshold_rel", float("nan")) for n in common]
        positive = positive or any(v > 0 for v in vals if math.isfinite(v))
        ax.plot(range(len(common)), vals, marker="o", ms=3, color=color, label=label)
    ax.set(xlabel="layer (forward order)", ylabel="|∂L/∂V_thr| / V_thr", title="threshold gradient, relative")
    if positive:
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
