"""Spike raster and single-neuron membrane traces of one neuron layer, for a few samples.

The statistics of ``snn_lightning.monitor`` average over neurons and samples; a raster shows the
individual spike trains behind them, and a membrane trace shows one neuron's M[t] climbing to V_thr,
firing and being reset (Eqs. 1-3), which is what MP-Init changes at t = 1. Only a small slice
(``samples`` × ``neurons`` × T) is copied out of the forward.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import nn

from .errors import InvalidValue
from .neurons import LIF
from .plots import _colors, new_figure


def _neuron_index(n_total: int, neurons: int) -> torch.Tensor:
    """``neurons`` evenly spaced flat indices (all when there are fewer): a fixed, input-independent choice."""
    if n_total <= neurons:
        return torch.arange(n_total)
    return torch.linspace(0, n_total - 1, neurons).round().long()


@torch.no_grad()
def record_raster(net: nn.Module, x: torch.Tensor, layer: str, samples: int = 4, neurons: int = 64) -> dict:
    """Run ``net`` on the batch ``x`` in eval mode and return the chosen layer's spikes and pre-fire membrane
    for the first ``samples`` samples and ``neurons`` evenly spaced neurons: ``{"layer", "v_threshold",
    "neuron_index", "spikes": [S][N][T], "membrane": [S][N][T]}`` (plain lists)."""
    if int(samples) < 1 or int(neurons) < 1:
        raise InvalidValue(f"samples and neurons must be positive integers, got {samples!r} and {neurons!r}")
    lifs = dict((n, m) for n, m in net.named_modules() if isinstance(m, LIF))
    if layer not in lifs:
        raise InvalidValue(f"unknown neuron layer {layer!r}; allowed: {', '.join(lifs)}")
    lif = lifs[layer]
    seen = {}
    previous = lif.monitor

    def monitor(mod, m_seq, s_seq):
        if previous is not None:
            previous(mod, m_seq, s_seq)
        if "m" not in seen:  # the first call is the one for this batch
            S = min(int(samples), m_seq.shape[1])
            m = m_seq[:, :S].reshape(m_seq.shape[0], S, -1)
            idx = _neuron_index(m.shape[-1], int(neurons)).to(m.device)
            seen["m"] = m.index_select(2, idx).permute(1, 2, 0).float().cpu()
            seen["s"] = s_seq[:, :S].reshape(m_seq.shape[0], S, -1).index_select(2, idx).permute(1, 2, 0).float().cpu()
            seen["idx"] = idx.cpu()

    was_training = net.training
    lif.monitor = monitor
    try:
        net.eval()
        net(x)
    finally:
        lif.monitor = previous
        net.train(was_training)
    return {
        "layer": layer,
        "v_threshold": float(lif.v_threshold),
        "neuron_index": seen["idx"].tolist(),
        "spikes": seen["s"].tolist(),
        "membrane": seen["m"].tolist(),
    }


def trace_neurons(spikes: Sequence[Sequence[float]], n: int = 3) -> list[int]:
    """The ``n`` neurons (positions in the recorded slice) that fire most in one sample, ties by position."""
    counts = [(-sum(train), i) for i, train in enumerate(spikes)]
    return [i for _, i in sorted(counts)[:n]]


def plot_raster(rec: dict, traces: int = 3, title: str | None = None) -> Figure:
    """Per sample: the raster (neuron × timestep, a dot per spike) above membrane traces of the ``traces``
    most active recorded neurons, with V_thr dashed."""
    S = len(rec["spikes"])
    fig, axes = new_figure(2 * S, ncols=S, panel=(2.6, 2.4))
    v_thr = rec["v_threshold"]
    for s in range(S):
        spikes, membrane = rec["spikes"][s], rec["membrane"][s]
        T = len(spikes[0]) if spikes else 0
        ax = axes[s]
        pts = [(t + 1, i) for i, train in enumerate(spikes) for t, v in enumerate(train) if v]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker="|", s=30, color="k")
        ax.set(xlim=(0.5, T + 0.5), ylim=(-0.5, len(spikes) - 0.5), xticks=list(range(1, T + 1)),
               xlabel="timestep t", ylabel="neuron (recorded slice)", title=f"sample {s}: spikes")
        ax = axes[S + s]
        chosen = trace_neurons(spikes, traces)
        for i, color in zip(chosen, _colors(len(chosen), "tab10")):
            ax.plot(range(1, T + 1), membrane[i], marker="o", ms=3, color=color, label=f"neuron {rec['neuron_index'][i]}")
        ax.axhline(v_thr, ls="--", color="0.4", lw=1, label="V_thr")
        ax.set(xticks=list(range(1, T + 1)), xlabel="timestep t", ylabel="M[t] (before firing)", title=f"sample {s}: membrane")
        ax.legend(fontsize=6)
    fig.suptitle(title or f"{rec['layer']}: spike raster and membrane traces")
    return fig


__all__ = ["plot_raster", "record_raster", "trace_neurons"]
