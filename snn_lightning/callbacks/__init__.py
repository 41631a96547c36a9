"""Observability callbacks: neuron statistics, per-timestep predictions and the paper's figures.

Cheap enough to leave on: statistics are reduced inside the neuron's monitor to a few numbers per
layer and timestep, monitors exist only on the steps that record, and nothing activation-sized is
kept between steps. See ``conf/callbacks/default.yaml`` for the defaults.
"""
from .figures import FigureCallback
from .neuron_stats import NeuronStatsCallback
from .operations import OperationCountCallback
from .predictions import TimestepPredictionCallback
from .telemetry import GradientTelemetryCallback
from .wandb_metrics import WandbMetricDefinitions
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
    "GradientTelemetryCallback",
    "NeuronRecorder",
    "NeuronStatsCallback",
    "OperationCountCallback",
    "PredictionRecorder",
    "TimestepPredictionCallback",
    "WandbMetricDefinitions",
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
