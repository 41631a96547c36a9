"""Observability callbacks: neuron statistics, per-timestep predictions and the paper's figures.

Cheap enough to leave on: statistics are reduced inside the neuron's monitor to a few numbers per
layer and timestep, monitors exist only on the steps that record, and nothing activation-sized is
kept between steps. See ``conf/callbacks/default.yaml`` for the defaults.
"""
from .checkpoint import RandomStateCallback, RunCheckpoint
from .figures import FigureCallback
from .finite import FiniteCheck, NonFiniteError
from .interrupt import InterruptCallback, Interrupted
from .neuron_stats import NeuronStatsCallback
from .predictions import TimestepPredictionCallback
from ..monitor import (
    NeuronRecorder,
    PredictionRecorder,
    batch_histogram,
    batch_reduction,
    drift,
    find_neuron_layers,
    layer_parameters,
    neuron_metrics,
    overall_firing_rate,
    pca_2d,
    pick_layers,
)

__all__ = [
    "FigureCallback",
    "FiniteCheck",
    "InterruptCallback",
    "Interrupted",
    "NonFiniteError",
    "RandomStateCallback",
    "RunCheckpoint",
    "NeuronRecorder",
    "NeuronStatsCallback",
    "PredictionRecorder",
    "TimestepPredictionCallback",
    "batch_histogram",
    "batch_reduction",
    "drift",
    "find_neuron_layers",
    "layer_parameters",
    "neuron_metrics",
    "overall_firing_rate",
    "pca_2d",
    "pick_layers",
]
