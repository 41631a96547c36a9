"""Fuse each convolution with the BatchNorm after it, for inference.

Why: in evaluation a tdBN (or per-frame BN) is a fixed per-channel affine map, so it can live inside
the convolution's weights and bias; the fused network runs one kernel instead of two per layer and
gives the same logits. TEBN and TAB scale each timestep differently (p_t, per-t statistics), which a
convolution shared over time cannot absorb: those norms are left in place.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..neurons import reset_net
from ..norm.layers import TDBN, TEBN, NoNorm, PerFrameBN

# (convolution, norm) attribute pairs the backbones use
_PAIRS = (("conv", "norm"), ("conv1", "bn1"), ("conv2", "bn2"))
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _inner_conv(module: nn.Module) -> nn.Module | None:
    if isinstance(module, _CONVS):
        return module
    if isinstance(module, nn.Sequential) and len(module) == 1 and isinstance(module[0], _CONVS):
        return module[0]
    return None


def _fusable_bn(norm: nn.Module) -> nn.modules.batchnorm._BatchNorm | None:
    if isinstance(norm, (TDBN, PerFrameBN)) and not isinstance(norm, TEBN):
        bn = norm.bn
        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.track_running_stats and bn.running_var is not None:
            return bn
    return None


@torch.no_grad()
def _fuse_into(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale + (bn.bias if bn.affine else 0.0)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight.dtype))
    conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype))


def fuse_conv_norm(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every conv → tdBN/BN pair fused into the conv.

    The norms that were fused become ``NoNorm``; TEBN, TAB and ``none`` stay as they are.
    """
    reset_net(model)
    fused = copy.deepcopy(model).eval()
    for parent in list(fused.modules()):
        # (conv, norm name) pairs: named attributes of blocks, adjacent items of Sequentials (shortcuts)
        names = [(c, n) for c, n in _PAIRS if hasattr(parent, c) and hasattr(parent, n)]
        if isinstance(parent, nn.Sequential):
            keys = list(parent._modules)
            names += list(zip(keys[:-1], keys[1:]))
        for conv_name, norm_name in names:
            conv = _inner_conv(getattr(parent, conv_name))
            bn = _fusable_bn(getattr(parent, norm_name))
            if conv is not None and bn is not None:
                _fuse_into(conv, bn)
                setattr(parent, norm_name, NoNorm())
    return fused
