"""One monitored pass of a trained network over a data loader: what ``snn-analyze`` reports (plain PyTorch).

:func:`run_analysis` runs the network with a :class:`NeuronRecorder` on every neuron layer and a
:class:`PredictionRecorder` on its logits; :func:`analysis_summary` turns the result into the
numbers of ``summary.json`` (accuracy and firing rate per timestep, the temporal drift per layer
and its mean). The parts the figures are drawn from (:meth:`Analysis.stage_parts`) have the same
shape as what the observability callbacks collect in an evaluation epoch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import positive_int
from ..errors import InvalidValue
from .layers import find_neuron_layers, pick_layers
from .metrics import drift, overall_firing_rate
from .neurons import NeuronRecorder
from .predictions import PredictionRecorder


@dataclass
class Analysis:
    """What one pass collected: recorder summaries, histograms, PCA points, batch count."""

    neurons: dict
    histograms: dict
    predictions: dict
    pca: dict | None
    batches: int

    def stage_parts(self) -> dict:
        """The four parts of a stage data file (``neurons``, ``histograms``, ``predictions``, ``pca``)."""
        return {"neurons": self.neurons, "histograms": self.histograms, "predictions": self.predictions, "pca": self.pca}


def run_analysis(
    net: nn.Module,
    loader: Iterable,
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    hist_layers="auto",
    limit_batches: int | None = None,
    pca_classes: int | Sequence[int] | None = 4,
    pca_max_samples: int = 256,
    hist_bins: int = 64,
    hist_range: Sequence[float] = (-2.0, 2.0),
) -> Analysis:
    """One pass over ``loader`` (``(x, y)`` batches) with monitors on every neuron layer of ``net``.

    ``prepare`` maps a batch's inputs to what ``net`` takes (e.g. ``[B, T, …]`` frames to time-major);
    ``net`` must return per-timestep logits ``[T, B, K]``. Histograms of M[t] are kept for
    ``hist_layers`` (``"auto"``: the middle layer; see :func:`pick_layers`). At most
    ``limit_batches`` batches are used. The network is moved to ``device`` and put in eval mode.
    """
    if limit_batches is not None:
        limit_batches = positive_int("limit_batches", limit_batches)
    layers = find_neuron_layers(net)
    names = [n for n, _ in layers]
    rec = NeuronRecorder(layers, pick_layers(names, hist_layers, 1), hist_bins, hist_range)
    preds = PredictionRecorder(pca_classes=pca_classes, pca_max_samples=pca_max_samples)
    net.to(device).eval()
    batches = 0
    rec.attach()
    try:
        with torch.no_grad():
            for x, y in loader:
                if limit_batches is not None and batches >= limit_batches:
                    break
                x, y = x.to(device), y.to(device)
                preds.update(net(prepare(x) if prepare is not None else x), y)
                batches += 1
    finally:
        rec.detach()
    if batches == 0:
        raise InvalidValue("the loader yielded no batch: nothing to analyze")
    return Analysis(rec.summary(), rec.histograms(), preds.summary(), preds.pca(), batches)


def analysis_summary(result: Analysis) -> dict:
    """The numbers of ``summary.json``: samples, batches, T, accuracy per timestep (logits of t alone
    and mean of 1..t; ``final`` is the latter at T), overall firing rate per timestep, the drift
    (:func:`~snn_lightning.monitor.metrics.drift`), MP-Init mean / V_thr / τ per layer, every layer's
    statistics with its ``drift_active`` / ``drift_all``, and the prediction counts and entropy."""
    neurons, p = result.neurons, result.predictions
    dr = drift(neurons)
    layers = {
        name: {**st, "drift_active": dr["per_layer"][name]["active"], "drift_all": dr["per_layer"][name]["all"]}
        for name, st in neurons.items()
    }
    return {
        "samples": p["samples"],
        "batches": result.batches,
        "T": len(p["accuracy"]["instant"]),
        "accuracy": {
            "final": p["accuracy"]["cumulative"][-1],
            "instant": p["accuracy"]["instant"],
            "cumulative": p["accuracy"]["cumulative"],
        },
        "firing_rate": overall_firing_rate(neurons),
        "drift": dr,
        "mp_init": {n: st["mp_init"] for n, st in neurons.items()},
        "v_threshold": {n: st["v_threshold"] for n, st in neurons.items()},
        "tau": {n: st["tau"] for n, st in neurons.items()},
        "layers": layers,
        "predictions": {"counts": p["counts"], "entropy": p["entropy"]},
    }
