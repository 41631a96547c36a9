"""Monitors of a spiking network (plain PyTorch: no Lightning, Hydra or OmegaConf).

The numbers behind the observability callbacks (``snn_lightning.callbacks``), ``snn-analyze`` and
``snn-aggregate``, defined once here:

* :mod:`.layers` — which LIF layers to watch (:func:`find_neuron_layers`, :func:`pick_layers`);
* :mod:`.neurons` — :class:`NeuronRecorder`: membrane mean/std (all and active neurons) and firing
  rate per layer and timestep, reduced inside the neuron's monitor, plus M[t] histograms (Fig. 1);
* :mod:`.predictions` — :class:`PredictionRecorder`: class predictions and accuracy per timestep,
  and :func:`pca_2d` of the logits (Figs. 4-5, 7);
* :mod:`.metrics` — flat metric keys (:func:`neuron_metrics` and its inverse
  :func:`summary_from_metrics`), the temporal drift |E[M[1]] − E[M[T]]| (:func:`drift`) and the
  overall firing rate;
* :mod:`.analysis` — :func:`run_analysis`: one monitored pass of a network over a loader.
"""
from .analysis import analysis_summary, run_analysis
from .layers import evenly_spaced, find_neuron_layers, layer_parameters, pick_layers
from .metrics import (
    STAGE_PREFIX,
    TIME_STATS,
    drift,
    layer_drift,
    neuron_metrics,
    overall_firing_rate,
    summary_from_metrics,
    time_stat_key,
)
from .neurons import NeuronRecorder, batch_histogram, batch_reduction, moments
from .predictions import PredictionRecorder, normalized_entropy, pca_2d

__all__ = [
    "NeuronRecorder",
    "PredictionRecorder",
    "STAGE_PREFIX",
    "TIME_STATS",
    "analysis_summary",
    "batch_histogram",
    "batch_reduction",
    "drift",
    "evenly_spaced",
    "find_neuron_layers",
    "layer_drift",
    "layer_parameters",
    "moments",
    "neuron_metrics",
    "normalized_entropy",
    "overall_firing_rate",
    "pca_2d",
    "pick_layers",
    "run_analysis",
    "summary_from_metrics",
    "time_stat_key",
]
