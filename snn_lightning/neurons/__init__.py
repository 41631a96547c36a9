"""Spiking neurons (plain PyTorch)."""
from . import functional
from .base import StatefulModule, reset_net
from .lif import LIF

__all__ = ["LIF", "StatefulModule", "functional", "reset_net"]
