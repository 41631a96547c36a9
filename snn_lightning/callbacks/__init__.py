"""Observability callbacks: thin Lightning adapters over :mod:`snn_lightning.monitor`.

Cheap enough to leave on: statistics are reduced inside the neuron's monitor to a few numbers per
layer and timestep, monitors exist only on the steps that record, and nothing activation-sized is
kept between steps. :class:`StageCallback` (``_base.py``) maps the val/test hooks once; the
collecting callbacks write each stage's numbers to the run's stage data files, which
:class:`FigureCallback` draws. See ``conf/callbacks/default.yaml`` for the defaults.
"""
from ._base import RecordSchedule, StageCallback
from .checkpoint import RandomStateCallback, RunCheckpoint
from .figures import FigureCallback
from .finite import FiniteCheck, NonFiniteError
from .interrupt import InterruptCallback, Interrupted
from .neuron_stats import NeuronStatsCallback
from .operations import OperationCountCallback
from .predictions import TimestepPredictionCallback
from .telemetry import GradientTelemetryCallback
from .wandb_metrics import WandbMetricDefinitions

# the monitors live in the library (snn_lightning.monitor); re-exported for code that imported them from here
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
    "FiniteCheck",
    "InterruptCallback",
    "Interrupted",
    "NonFiniteError",
    "RandomStateCallback",
    "RunCheckpoint",
    "NeuronRecorder",
    "NeuronStatsCallback",
    "OperationCountCallback",
    "PredictionRecorder",
    "RecordSchedule",
    "StageCallback",
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
