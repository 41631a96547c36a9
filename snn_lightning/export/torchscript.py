"""``to_torchscript``: the binary inference network as a traced TorchScript module (libtorch, C++).

The traced network is ``fold_thresholds(fuse_conv_norm(model))`` with every ``LIF`` replaced by
:class:`~.nir_runtime.InferenceLIF` — the same Eqs. 1-3 with a plain Heaviside instead of the
surrogate's autograd Function, which a trace cannot record. Unlike NIR, TorchScript keeps any
module, so TEBN/TAB networks export too (their norms stay unfused). The trace fixes the input
layout it saw: a static image batch ``[B, C, S, S]`` (any B); frames need a separate trace.
``torch.jit`` is deprecated upstream in favour of ``torch.export``; its files still load in libtorch.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import InvalidValue
from ..models.base import SpikingNetwork
from ..neurons import LIF
from .fold import fold_thresholds
from .fuse import fuse_conv_norm
from .nir_runtime import InferenceLIF


def inference_network(model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
    """Folded, fused copy of ``model`` whose neurons are :class:`InferenceLIF` (no autograd Functions)."""
    deployed = fold_thresholds(fuse_conv_norm(model, example_input))
    for name, m in list(deployed.named_modules()):
        if isinstance(m, LIF):
            parent, _, attr = name.rpartition(".")
            setattr(deployed.get_submodule(parent), attr, InferenceLIF.from_lif(m))
    return deployed


def to_torchscript(model: nn.Module, input_size: int | None = None) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of :func:`inference_network` on a static image batch of ``input_size``."""
    if not isinstance(model, SpikingNetwork):
        raise InvalidValue(f"to_torchscript exports a SpikingNetwork, got {type(model).__name__}")
    size = input_size or getattr(model, "input_size", None)
    if not size:
        raise InvalidValue(f"to_torchscript: {type(model).__name__} has no input_size; pass input_size=H (square inputs)")
    p = next(model.parameters())
    x = torch.rand(2, model.in_channels, int(size), int(size), dtype=p.dtype, device=p.device)
    deployed = inference_network(model, x)
    with warnings.catch_warnings(), torch.no_grad():
        # the input checks are Python conditions on shapes: constant for the traced layout, as documented
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.trace is deprecated"
        return torch.jit.trace(deployed, x, check_trace=False)
