"""Fuse each convolution with the BatchNorm that reads its output, for inference.

Why: in evaluation a tdBN (or per-frame BN) is a fixed per-channel affine map, so it can live inside
the convolution's weights and bias; the fused network runs one kernel instead of two per layer and
gives the same logits. TEBN and TAB scale each timestep differently (p_t, per-t statistics), which a
convolution shared over time cannot absorb: those norms are left in place, with a warning.

How the pairs are found — from the data flow, not from attribute names: one evaluation forward on an
example input records, for every convolution, the storage of its output, and for every module the
storage its input lives in. A norm whose input is a view of a convolution's output (the stem's
``unsqueeze``, ``TimeDistributed``'s ``unflatten``) and that is the only module reading it is that
convolution's pair. The weights are then combined by ``torch.nn.utils.fusion.fuse_conv_bn_weights``.
A conv→norm pair that cannot be fused, and a norm with running statistics that reads no convolution,
are named in one warning. Assumption: a convolution's output is read by modules only (true of every
backbone here); an output also consumed by a plain function in some ``forward`` would be invisible.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..models.base import SpikingNetwork
from ..neurons import reset_net
from ..norm.layers import TAB, TDBN, TEBN, NoNorm, PerFrameBN, TimeNorm

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = nn.modules.batchnorm._BatchNorm


def example_input(model: nn.Module) -> torch.Tensor:
    """A static image batch ``[1, C, S, S]`` for a ``SpikingNetwork`` (S = its input size, or 32)."""
    if not isinstance(model, SpikingNetwork):
        raise ValueError(f"{type(model).__name__} is not a SpikingNetwork: pass example_input (a tensor it accepts)")
    size = getattr(model, "input_size", None) or 32
    p = next(model.parameters())
    return torch.rand(1, model.in_channels, size, size, dtype=p.dtype, device=p.device)


def _owners(model: nn.Module) -> dict[str, str]:
    """Module name → the name that counts as the reader: a TimeNorm speaks for its inner BatchNorms."""
    owner = {}
    for name, m in model.named_modules():
        if isinstance(m, TimeNorm):
            for sub, _ in m.named_modules():
                owner[f"{name}.{sub}" if sub else name] = name
        owner.setdefault(name, name)
    return owner


def _storage(t) -> int | None:
    return t.untyped_storage().data_ptr() if isinstance(t, torch.Tensor) else None


@torch.no_grad()
def trace_conv_readers(model: nn.Module, x: torch.Tensor) -> dict[str, set[str]]:
    """Conv name → the names of the modules (norm wrappers counted once) that read its output."""
    outputs: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # holds every conv output alive, so no later tensor reuses its storage
    readers: dict[str, set[str]] = {}
    owner = _owners(model)
    hooks = []

    def on_conv(name):
        def hook(_m, _inp, out):
            keep.append(out)
            outputs[_storage(out)] = name
            readers.setdefault(name, set())
        return hook

    def on_input(name):
        def hook(_m, inp):
            for t in inp:
                conv = outputs.get(_storage(t))
                if conv is not None and owner[name] != conv:
                    readers[conv].add(owner[name])
        return hook

    for name, m in model.named_modules():
        if isinstance(m, CONVS):
            hooks.append(m.register_forward_hook(on_conv(name)))
        elif (name and not m._modules) or isinstance(m, TimeNorm):  # leaves, and norm wrappers as one reader
            hooks.append(m.register_forward_pre_hook(on_input(name)))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        reset_net(model)
    return readers


def _inner_bn(norm: nn.Module) -> tuple[_BN | None, str]:
    """The BatchNorm that can be folded into a conv, or None and why not."""
    if isinstance(norm, (TEBN, TAB)):
        return None, f"{type(norm).__name__} scales each timestep differently"
    bn = norm.bn if isinstance(norm, (TDBN, PerFrameBN)) else norm
    if not isinstance(bn, _BN):
        return None, f"{type(norm).__name__} is not a BatchNorm"
    if not bn.track_running_stats or bn.running_var is None:
        return None, "it has no running statistics"
    return bn, ""


def conv_norm_pairs(model: nn.Module, x: torch.Tensor | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """The fusable (conv, norm) name pairs of ``model`` and a line for each pair or norm left unfused.

    Traces one forward in evaluation mode (``model``'s own mode is restored afterwards).
    """
    was_training = model.training
    model.eval()
    try:
        readers = trace_conv_readers(model, example_input(model) if x is None else x)
    finally:
        model.train(was_training)
    modules = dict(model.named_modules())
    pairs, skipped, paired_norms = [], [], set()
    for conv, names in readers.items():
        norms = [n for n in names if isinstance(modules[n], (TimeNorm, _BN))]
        for n in norms:
            paired_norms.add(n)
        if not norms:
            continue
        if len(names) > 1:
            skipped.append(f"{conv} → {', '.join(sorted(names))} (the conv output has {len(names)} readers)")
            continue
        bn, why = _inner_bn(modules[norms[0]])
        if bn is None:
            skipped.append(f"{conv} → {norms[0]} ({why})")
        else:
            pairs.append((conv, norms[0]))
    owner = _owners(model)
    for name, m in modules.items():
        outermost = isinstance(m, (TimeNorm, _BN)) and owner[name] == name
        if outermost and name not in paired_norms and _inner_bn(m)[0] is not None:
            skipped.append(f"{name} (reads no convolution's output)")
    return pairs, skipped


def fuse_conv_norm(model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every conv → tdBN/BN pair fused into the conv.

    The pairs are found by tracing one forward (see the module docstring); ``example_input`` is any
    input the model accepts (default: a random static image for a ``SpikingNetwork``). The norms
    that were fused become ``NoNorm``; a ``UserWarning`` names every pair left unfused (TEBN, TAB,
    no running statistics, a shared conv output) and every BatchNorm that reads no conv.
    """
    reset_net(model)
    fused = copy.deepcopy(model).eval()
    pairs, skipped = conv_norm_pairs(fused, example_input)
    for conv_name, norm_name in pairs:
        _fuse_pair(fused, conv_name, norm_name)
    if skipped:
        warnings.warn(f"fuse_conv_norm left {len(skipped)} norm(s) unfused: " + "; ".join(skipped), stacklevel=2)
    return fused


@torch.no_grad()
def _fuse_pair(fused: nn.Module, conv_name: str, norm_name: str) -> None:
    """Fold ``norm_name``'s BatchNorm into ``conv_name``'s weight and bias; the norm becomes the identity."""
    conv = fused.get_submodule(conv_name)
    norm = fused.get_submodule(norm_name)
    bn, _ = _inner_bn(norm)
    conv.weight, conv.bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )
    parent_name, _, attr = norm_name.rpartition(".")
    replacement = NoNorm(norm.num_features, norm.T, norm.dim) if isinstance(norm, TimeNorm) else nn.Identity()
    setattr(fused.get_submodule(parent_name), attr, replacement)
