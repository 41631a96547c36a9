"""Fold TrSG thresholds into the layers that consume the spikes, for binary-spike inference.

Why: TrSG multiplies every spike by V_thr only to shape the gradients (paper Sec. 5.3, Eq. 10). A
deployed network — neuromorphic hardware in particular — should emit 0/1 spikes, so the factor V_thr
must move into whatever reads the spikes. The tests check the folded network gives the training-form
logits.

How: a walk over the network that tracks the *scale* of the signal — the folded network carries
``true_value / scale`` at every point. A TrSG neuron switched to 0/1 output produces scale V_thr; a
conv/linear multiplies its weights (never its bias) by the incoming scale and produces scale 1;
pooling, flatten and dropout pass the scale through (V_thr > 0, so even max pooling commutes); norms
and neurons need scale 1 at their input. Anything without a rule raises, rather than silently giving
different logits.

Why the rules live here, one per block type (``functools.singledispatch``), rather than as methods of
the models: the models then carry no export code, the rule for a block sits next to the rules of
what it contains, dispatch follows the class hierarchy (every ``SpikingNetwork`` and ``nn.Sequential``
subclass is covered), and a user's own block gets a rule without touching its class::

    @fold_module.register
    def _(block: MyBlock, scale):
        return fold_module(block.inner, scale)
"""
from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from ..models.base import GlobalAvgPool, SpikingNetwork, Stem
from ..models.resnet import BasicBlock, SEWBlock
from ..neurons import LIF, reset_net
from ..norm import TimeNorm

PASS_THROUGH = (
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
    GlobalAvgPool,  # a mean commutes with a scalar
)
LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (TimeNorm, nn.modules.batchnorm._BatchNorm)


def _is_one(scale) -> bool:
    return float(scale) == 1.0


def _require_unit(module: nn.Module, scale) -> None:
    if not _is_one(scale):
        raise TypeError(
            f"cannot fold a threshold scale ({float(scale):.4g}) into {type(module).__name__}: "
            "only conv/linear weights, pooling, flatten and dropout can absorb it"
        )


@functools.singledispatch
def fold_module(module: nn.Module, scale=1.0):
    """Fold in place: ``module``'s input carries ``true / scale``; returns the scale of its output.

    Register a rule for a new block type with ``@fold_module.register``.
    """
    raise TypeError(
        f"fold_thresholds does not know how {type(module).__name__} transforms its input; "
        "register a rule with @snn_lightning.export.fold_module.register"
    )


@fold_module.register
def _(module: LIF, scale=1.0):
    _require_unit(module, scale)
    if module.emits_scaled:
        module.scaled_output = False
        return module.v_threshold.detach().clone()
    return 1.0


@torch.no_grad()
def _fold_linear(module: nn.Module, scale=1.0):
    if not _is_one(scale):
        module.weight.mul_(torch.as_tensor(scale, dtype=module.weight.dtype, device=module.weight.device))
    return 1.0


def _fold_norm(module: nn.Module, scale=1.0):
    _require_unit(module, scale)
    return scale


def _fold_pass(module: nn.Module, scale=1.0):
    return scale


for _cls in LINEAR:
    fold_module.register(_cls, _fold_linear)
for _cls in NORMS:
    fold_module.register(_cls, _fold_norm)
for _cls in PASS_THROUGH:
    fold_module.register(_cls, _fold_pass)


@fold_module.register
def _(module: nn.Sequential, scale=1.0):  # includes TimeDistributed
    for child in module:
        scale = fold_module(child, scale)
    return scale


@fold_module.register
def _(stem: Stem, scale=1.0):
    for m in (stem.conv, stem.norm, stem.lif, stem.pool):
        if m is not None:
            scale = fold_module(m, scale)
    return scale


@fold_module.register
def _(net: SpikingNetwork, scale=1.0):
    for m in (net.stem, net.body, net.head):
        scale = fold_module(m, scale)
    return scale


@fold_module.register
@torch.no_grad()
def _(block: BasicBlock, scale=1.0):
    inner = scale
    for m in (block.conv1, block.norm1, block.lif1, block.conv2, block.norm2):
        inner = fold_module(m, inner)
    if block.shortcut is not None:
        side = fold_module(block.shortcut, scale)
    else:  # identity: the addition reads V_thr·S, which only the explicit scale can restore
        block.shortcut_scale.mul_(torch.as_tensor(scale, dtype=block.shortcut_scale.dtype))
        side = 1.0
    if not (_is_one(inner) and _is_one(side)):
        raise TypeError("BasicBlock: both branches must reach the addition at unit scale")
    return fold_module(block.lif2, 1.0)


@fold_module.register
@torch.no_grad()
def _(block: SEWBlock, scale=1.0):
    # The block output is kept in units of lif2's V_thr (so lif2 emits raw 0/1 spikes and the next
    # layer's weights absorb V_thr); the identity branch is rescaled into those units.
    out_scale = scale
    for m in (block.conv1, block.norm1, block.lif1, block.conv2, block.norm2, block.lif2):
        out_scale = fold_module(m, out_scale)
    id_scale = scale if block.downsample is None else fold_module(block.downsample, scale)
    dtype = block.identity_scale.dtype
    block.identity_scale.mul_(torch.as_tensor(id_scale, dtype=dtype) / torch.as_tensor(out_scale, dtype=dtype))
    return out_scale


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
