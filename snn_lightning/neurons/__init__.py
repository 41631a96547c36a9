"""Spiking neurons (plain PyTorch; the Triton kernels are imported only when a neuron runs on them)."""
from . import functional
from .base import StatefulModule, reset_net
from .kernels import BACKENDS, LIFRun
from .lif import LIF

__all__ = ["BACKENDS", "LIF", "LIFRun", "StatefulModule", "functional", "reset_net"]
