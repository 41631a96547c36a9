"""``to_nir``: the binary inference network as a NIR graph (the format of snnTorch, norse, lava-dl …).

What is exported: ``fold_thresholds(fuse_conv_norm(model))`` — 0/1 spikes (paper Eq. 10 with V_thr
folded into the consumers) and every tdBN/BN inside its convolution — as standard NIR nodes:
``Input``, ``Conv2d``, ``LIF``, ``Affine``, ``AvgPool2d``, ``SumPool2d`` + ``Threshold`` (max pooling
over 0/1 spikes is "any spike in the window"), ``Flatten``, ``Scale`` (the folded identity
shortcuts) and ``Output``. A residual addition is a node with several incoming edges: NIR sums them.

What standard NIR does not say, carried in metadata (README "Export" lists it for consumers):

* graph ``metadata``: ``T`` (timesteps), ``dt`` (seconds per timestep), ``encoding`` ("direct": a
  static image is fed unchanged at every one of the T steps), ``readout`` (the Output carries one
  logit vector per step; the prediction is their mean over T).
* LIF ``metadata``: ``reset`` — "hard" is NIR's ``v := v_reset`` (= 0); "soft" means
  ``v := v − v_threshold`` after a spike, which a consumer MUST honour instead of ``v_reset``;
  ``v_init`` — the membrane at the start of every sequence (MP-Init's U[0]); a consumer MUST start
  from it, not from 0; ``fire`` — the exact comparison ("v / v_threshold - 1 > 0" or
  "v - v_threshold > 0"), equal to NIR's ``v > v_threshold`` up to rounding; ``tau_steps`` — τ in
  timesteps, exactly (``tau / dt`` rounds in the last bit).

The LIF dynamics are Eq. 1 exactly: NIR's ``tau·dv/dt = (v_leak − v) + r·I`` stepped by forward
Euler with ``dt`` gives ``v ← v + (I − v)·dt/tau``, so ``tau = τ·dt``, ``r = 1``, ``v_leak = 0``.
The rules are ``functools.singledispatch`` functions per module type, as in :mod:`.fold`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import nir
import numpy as np
import torch
from torch import nn

from ..errors import InvalidValue
from ..models.base import GlobalAvgPool, SpikingNetwork, Stem
from ..models.resnet import BasicBlock, SEWBlock
from ..neurons import LIF, reset_net
from ..norm.layers import TAB, TDBN, TEBN, PerFrameBN
from .fold import fold_thresholds
from .fuse import fuse_conv_norm

DT = 1e-4  # seconds per timestep; snnTorch's and norse's NIR importers assume this step length
FORMAT = "snn_lightning.nir/1"


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy() if isinstance(t, torch.Tensor) else np.asarray(t)


@dataclass
class GraphBuilder:
    """Nodes and edges being assembled; ``shapes`` maps a module to its (input, output) per-sample shape."""

    shapes: dict[int, tuple[tuple[int, ...], tuple[int, ...]]]
    dtype: np.dtype
    nodes: dict[str, nir.NIRNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    binary: set[str] = field(default_factory=set)  # nodes known to emit 0/1 values

    def add(self, name: str, node: nir.NIRNode, sources: list[str]) -> list[str]:
        if name in self.nodes:
            raise RuntimeError(f"to_nir: two nodes named {name!r}")
        self.nodes[name] = node
        self.edges.extend((s, name) for s in sources)
        return [name]

    def shape(self, module: nn.Module, which: int = 1) -> tuple[int, ...]:
        if id(module) not in self.shapes:
            raise RuntimeError(f"to_nir: {type(module).__name__} never ran in the example forward")
        return self.shapes[id(module)][which]

    def full(self, shape, value) -> np.ndarray:
        return np.full(shape, float(value), dtype=self.dtype)


@functools.singledispatch
def nir_nodes(module: nn.Module, g: GraphBuilder, name: str, sources: list[str]) -> list[str]:
    """Add ``module``'s nodes to ``g``; ``sources`` feed it (summed); returns the nodes its output is the sum of."""
    raise InvalidValue(f"to_nir has no NIR rule for {type(module).__name__} ({name}); register one with @nir_nodes.register")


def _join(prefix: str, child: str) -> str:
    return f"{prefix}.{child}" if prefix else child


def _chain(g, pairs, sources):
    for name, m in pairs:
        if m is not None:
            sources = nir_nodes(m, g, name, sources)
    return sources


@nir_nodes.register
def _(seq: nn.Sequential, g, name, sources):  # includes TimeDistributed
    return _chain(g, [(_join(name, k), m) for k, m in seq.named_children()], sources)


@nir_nodes.register(nn.Identity)  # NoNorm (a fused norm) is an Identity
@nir_nodes.register(nn.Dropout)
def _(module, g, name, sources):
    return sources


@nir_nodes.register
def _(conv: nn.Conv2d, g, name, sources):
    if conv.padding_mode != "zeros":
        raise InvalidValue(f"to_nir: {name} pads with {conv.padding_mode!r}; NIR's Conv2d pads with zeros")
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    padding = conv.padding if isinstance(conv.padding, str) else tuple(int(p) for p in conv.padding)
    node = nir.Conv2d(
        input_shape=tuple(g.shape(conv, 0)[-2:]),
        weight=_np(conv.weight).astype(g.dtype),
        stride=tuple(conv.stride),
        padding=padding,
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        bias=_np(bias).astype(g.dtype),
    )
    return g.add(name, node, sources)


@nir_nodes.register
def _(fc: nn.Linear, g, name, sources):
    bias = fc.bias if fc.bias is not None else torch.zeros(fc.out_features)
    return g.add(name, nir.Affine(weight=_np(fc.weight).astype(g.dtype), bias=_np(bias).astype(g.dtype)), sources)


@nir_nodes.register
def _(lif: LIF, g, name, sources):
    if lif.emits_scaled:
        raise InvalidValue(f"to_nir: {name} still emits V_thr·S; export the folded network")
    if lif.carry_state:
        raise InvalidValue(f"to_nir: {name} carries its state across calls; NIR graphs start every sequence afresh")
    shape = g.shape(lif)
    tau, v_thr = float(lif.tau.detach()), float(lif.v_threshold.detach())
    metadata = {
        "reset": lif.reset_mode,
        "v_init": float(lif.mp_init_mean) if lif.mp_init else 0.0,
        "fire": "v - v_threshold > 0" if lif.sg_mode == "as" else "v / v_threshold - 1 > 0",
        "tau_steps": tau,
    }
    node = nir.LIF(
        tau=g.full(shape, tau * DT),
        r=g.full(shape, 1.0),
        v_leak=g.full(shape, 0.0),
        v_threshold=g.full(shape, v_thr),
        v_reset=g.full(shape, 0.0),
        metadata=metadata,
    )
    out = g.add(name, node, sources)
    g.binary.add(name)
    return out


def _pool_params(pool, nd=2):
    def pair(v):
        return np.array(v if isinstance(v, (tuple, list)) else (v,) * nd, dtype=np.int64)

    return pair(pool.kernel_size), pair(pool.stride if pool.stride is not None else pool.kernel_size), pair(pool.padding)


@nir_nodes.register
def _(pool: nn.AvgPool2d, g, name, sources):
    if pool.ceil_mode or (not pool.count_include_pad and np.any(_pool_params(pool)[2])) or pool.divisor_override:
        raise InvalidValue(f"to_nir: {name} uses AvgPool2d options NIR cannot express")
    k, s, p = _pool_params(pool)
    return g.add(name, nir.AvgPool2d(kernel_size=k, stride=s, padding=p), sources)


@nir_nodes.register
def _(pool: nn.AdaptiveAvgPool2d, g, name, sources):
    (h, w), (oh, ow) = g.shape(pool, 0)[-2:], g.shape(pool)[-2:]
    if h % oh or w % ow:
        raise InvalidValue(f"to_nir: {name} pools {h}x{w} to {oh}x{ow}, which no fixed NIR AvgPool2d window gives")
    k = np.array([h // oh, w // ow], dtype=np.int64)
    return g.add(name, nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.zeros(2, dtype=np.int64)), sources)


@nir_nodes.register
def _(pool: GlobalAvgPool, g, name, sources):
    if pool.dims != 2:
        raise InvalidValue(f"to_nir: {name} averages {pool.dims} spatial dims; NIR has AvgPool2d only")
    c, h, w = g.shape(pool, 0)
    k = np.array([h, w], dtype=np.int64)
    out = g.add(name, nir.AvgPool2d(kernel_size=k, stride=k.copy(), padding=np.zeros(2, dtype=np.int64)), sources)
    return g.add(f"{name}.flatten", nir.Flatten(input_type={"input": np.array([c, 1, 1])}, start_dim=0, end_dim=-1), out)


@nir_nodes.register
def _(pool: nn.MaxPool2d, g, name, sources):
    # max over 0/1 spikes = 1 if any spike in the window = Threshold(SumPool > 1/2); padding adds 0s
    if not (len(sources) == 1 and sources[0] in g.binary):
        raise InvalidValue(f"to_nir: {name} max-pools a signal that is not 0/1 spikes; NIR has no max pooling")
    if pool.ceil_mode or pool.dilation not in (1, (1, 1)):
        raise InvalidValue(f"to_nir: {name} uses MaxPool2d options NIR cannot express")
    k, s, p = _pool_params(pool)
    out = g.add(f"{name}.sum", nir.SumPool2d(kernel_size=k, stride=s, padding=p), sources)
    out = g.add(name, nir.Threshold(threshold=g.full(g.shape(pool), 0.5)), out)
    g.binary.add(name)
    return out


@nir_nodes.register
def _(flat: nn.Flatten, g, name, sources):
    shape = g.shape(flat, 0)  # per-sample shape: the module runs on [T, B, ...]
    lead = flat.start_dim if flat.start_dim >= 0 else None
    if lead != 2:
        raise InvalidValue(f"to_nir: {name} must flatten from dim 2 of [T, B, ...] (got start_dim={flat.start_dim})")
    end = flat.end_dim - 2 if flat.end_dim >= 0 else flat.end_dim
    return g.add(name, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=end), sources)


def _scaled(g, name, shape, scale, sources):
    """An identity shortcut times its folded scale (``shortcut_scale``/``identity_scale``): a NIR Scale."""
    return g.add(name, nir.Scale(scale=g.full(shape, float(scale))), sources)


def _input_shape(g, module: nn.Module) -> tuple[int, ...]:
    """The per-sample input shape of ``module`` (the first of its submodules the example forward saw)."""
    for m in module.modules():
        if id(m) in g.shapes:
            return g.shapes[id(m)][0]
    raise RuntimeError(f"to_nir: {type(module).__name__} never ran in the example forward")


@nir_nodes.register
def _(stem: Stem, g, name, sources):
    parts = [("conv", stem.conv), ("norm", stem.norm), ("lif", stem.lif), ("pool", stem.pool)]
    return _chain(g, [(_join(name, k), m) for k, m in parts], sources)


@nir_nodes.register
def _(block: BasicBlock, g, name, sources):
    parts = ["conv1", "norm1", "lif1", "conv2", "norm2"]
    main = _chain(g, [(_join(name, k), getattr(block, k)) for k in parts], sources)
    if block.shortcut is not None:
        side = nir_nodes(block.shortcut, g, _join(name, "shortcut"), sources)
    else:
        side = _scaled(g, _join(name, "shortcut_scale"), _input_shape(g, block.conv1), block.shortcut_scale, sources)
    return nir_nodes(block.lif2, g, _join(name, "lif2"), main + side)


@nir_nodes.register
def _(block: SEWBlock, g, name, sources):
    parts = ["conv1", "norm1", "lif1", "conv2", "norm2", "lif2"]
    main = _chain(g, [(_join(name, k), getattr(block, k)) for k in parts], sources)
    if block.downsample is None:
        identity, shape = sources, _input_shape(g, block.conv1)
    else:
        identity, shape = nir_nodes(block.downsample, g, _join(name, "downsample"), sources), g.shape(block.lif2)
    # the block output is the sum of lif2's spikes and the scaled identity: both feed every consumer
    return main + _scaled(g, _join(name, "identity_scale"), shape, block.identity_scale, identity)


@nir_nodes.register
def _(net: SpikingNetwork, g, name, sources):
    return _chain(g, [(_join(name, k), getattr(net, k)) for k in ("stem", "body", "head")], sources)


def refuse_time_dependent_norms(model: nn.Module) -> None:
    """One-line ``ValueError`` for a norm that scales each timestep differently (no NIR node does)."""
    for name, m in model.named_modules():
        if isinstance(m, (TEBN, TAB)):
            raise InvalidValue(
                f"cannot export {type(m).__name__} ({name}) to NIR: it scales each timestep differently, which "
                "time-invariant NIR nodes cannot express; allowed norms: none, bn, tdbn"
            )


@torch.no_grad()
def record_shapes(model: nn.Module, x: torch.Tensor) -> dict:
    """id(module) → (input, output) shape per sample (leading [T, B] or [T·B]/[B] dims dropped)."""
    shapes, hooks = {}, []

    def lead(module, t):
        if isinstance(module, (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            return t.dim() - 3
        if isinstance(module, nn.Linear):
            return t.dim() - 1
        return 2  # multi-step modules on [T, B, ...]

    def hook(module, inp, out):
        shapes[id(module)] = (tuple(inp[0].shape[lead(module, inp[0]):]), tuple(out.shape[lead(module, out):]))

    for m in model.modules():
        if not isinstance(m, (nn.Sequential, SpikingNetwork)):
            hooks.append(m.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
        reset_net(model)
    return shapes


def to_nir(model: nn.Module, input_size: int | None = None) -> nir.NIRGraph:
    """The folded (0/1 spikes) and fused (no tdBN/BN) inference network of ``model`` as a ``nir.NIRGraph``.

    ``input_size`` (H = W) fixes the per-neuron shapes; it defaults to the model's own ``input_size``
    (required for models built without one). Weights keep the model's float dtype. TEBN/TAB are
    refused with a one-line ``ValueError``; so is any module without a rule (:func:`nir_nodes`).
    """
    if not isinstance(model, SpikingNetwork):
        raise InvalidValue(f"to_nir exports a SpikingNetwork, got {type(model).__name__}")
    refuse_time_dependent_norms(model)
    size = input_size or getattr(model, "input_size", None)
    if not size:
        raise InvalidValue(f"to_nir: {type(model).__name__} has no input_size; pass input_size=H (square inputs)")
    dtype = next(model.parameters()).dtype
    if dtype not in (torch.float16, torch.float32, torch.float64):
        raise InvalidValue(f"to_nir writes float16/32/64 weights; convert the {dtype} model first (model.float())")
    x = torch.zeros(1, model.in_channels, int(size), int(size), dtype=dtype, device=next(model.parameters()).device)
    deployed = fold_thresholds(fuse_conv_norm(model, x))
    for name, m in deployed.named_modules():
        if isinstance(m, (TDBN, PerFrameBN)):
            raise InvalidValue(f"to_nir: the norm {name} could not be fused into a convolution")
    g = GraphBuilder(record_shapes(deployed, x), np.dtype(str(dtype).replace("torch.", "")))
    g.add("input", nir.Input(input_type={"input": np.array([model.in_channels, int(size), int(size)])}), [])
    out = nir_nodes(deployed, g, "", ["input"])
    g.add("output", nir.Output(output_type={"output": np.array([model.num_classes])}), out)
    metadata = {
        "format": FORMAT,
        "source_model": type(model).__name__,
        "T": int(model.T),
        "dt": DT,
        "encoding": "direct",
        "readout": "mean over T",
    }
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=metadata)


__all__ = ["DT", "FORMAT", "GraphBuilder", "nir_nodes", "refuse_time_dependent_norms", "to_nir"]
