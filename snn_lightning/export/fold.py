"""Fold TrSG thresholds into the layers that consume the spikes, for binary-spike inference.

Why: TrSG multiplies every spike by V_thr only to shape the gradients (paper Sec. 5.3). A deployed
network — neuromorphic hardware in particular — should emit 0/1 spikes, so the factor V_thr must move
into whatever reads the spikes. The reference code never does this (reference-notes §2, §8.2); we do,
and the tests check the folded network gives the training-form logits.

How: a walk over the network that tracks the *scale* of the signal — the folded network carries
``true_value / scale`` at every point. A TrSG neuron switched to 0/1 output produces scale V_thr; a
conv/linear multiplies its weights (never its bias) by the incoming scale and produces scale 1;
pooling, flatten and dropout pass the scale through (V_thr > 0, so even max pooling commutes); norms
and neurons need scale 1 at their input. Blocks with additions know their own graph and implement
``fold_thresholds_(scale, fold) -> scale`` (identity shortcuts set their scale buffers there).
Anything else raises, rather than silently giving different logits.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..neurons import LIF, reset_net
from ..norm import TimeNorm

_PASS_THROUGH = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (TimeNorm, nn.modules.batchnorm._BatchNorm)


def _is_one(scale) -> bool:
    return float(scale) == 1.0


def _require_unit(module: nn.Module, scale) -> None:
    if not _is_one(scale):
        raise TypeError(
            f"cannot fold a threshold scale ({float(scale):.4g}) into {type(module).__name__}: "
            "only conv/linear weights, pooling, flatten and dropout can absorb it"
        )


@torch.no_grad()
def fold_module(module: nn.Module, scale=1.0):
    """Fold in place: ``module``'s input carries ``true / scale``; returns the scale of its output."""
    fold = getattr(module, "fold_thresholds_", None)
    if callable(fold):
        return fold(scale, fold_module)
    if isinstance(module, LIF):
        _require_unit(module, scale)
        if module.emits_scaled:
            module.scaled_output = False
            return module.v_threshold.detach().clone()
        return 1.0
    if isinstance(module, _LINEAR):
        if not _is_one(scale):
            module.weight.mul_(torch.as_tensor(scale, dtype=module.weight.dtype, device=module.weight.device))
        return 1.0
    if isinstance(module, _NORMS):
        _require_unit(module, scale)
        return scale
    if isinstance(module, _PASS_THROUGH):
        return scale
    if isinstance(module, nn.Sequential):  # includes TimeDistributed
        for child in module:
            scale = fold_module(child, scale)
        return scale
    raise TypeError(
        f"fold_thresholds does not know how {type(module).__name__} transforms its input; "
        "give it a fold_thresholds_(scale, fold) method"
    )


def fold_thresholds(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose TrSG neurons emit 0/1 spikes, with every V_thr folded
    into the weights (or shortcut scale) of what consumes those spikes; its logits equal ``model.eval()``'s.

    AS-SG/RS-SG neurons already emit 0/1 spikes and are left as they are. The final output scale must
    be 1 (the network ends in a linear layer), otherwise a ``TypeError`` is raised. The copy is meant
    for inference: training it again would let BatchNorm re-estimate statistics.
    """
    reset_net(model)  # a carried membrane state may hold an autograd graph, which deepcopy refuses
    folded = copy.deepcopy(model).eval()
    out_scale = fold_module(folded, 1.0)
    if not _is_one(out_scale):
        raise TypeError(f"{type(model).__name__} ends with a scaled spike output ({float(out_scale):.4g}); nothing absorbs it")
    return folded
