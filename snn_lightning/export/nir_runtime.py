"""``from_nir``: run a NIR graph with the forward semantics of a ``SpikingNetwork``.

The module returned takes what the source model takes — a static image ``[B, C, H, W]`` (direct
encoding: fed at each of the graph's ``T`` steps) or frames ``[T, B, C, H, W]`` — starts every
sequence from the LIF nodes' ``v_init`` and returns per-step logits ``[T, B, K]``. It honours the
metadata :mod:`.nir_graph` writes (soft reset, ``v_init``, the exact firing comparison) and falls
back to plain NIR semantics (``v > v_threshold``, ``v := v_reset``, start at 0) for nodes without it,
so it also runs graphs written by other tools if they use the node types listed in ``_BUILDERS``.
A node with several incoming edges receives their sum, as NIR prescribes.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from ..errors import InvalidValue
from ..neurons import functional as F
from .nir_graph import DT


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True))


def _meta(node) -> dict:
    return dict(getattr(node, "metadata", None) or {})


class PerStep(nn.Module):
    """A stateless layer applied to every timestep of ``[T, B, ...]`` (T folded into the batch)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class Elementwise(nn.Module):
    """``x * scale`` (NIR Scale) or ``1[x > threshold]`` (NIR Threshold) per element of a sample."""

    def __init__(self, value: np.ndarray, op: str):
        super().__init__()
        self.register_buffer("value", _t(value))
        self.op = op

    def forward(self, x):
        return x * self.value if self.op == "scale" else (x > self.value).to(x.dtype)


FIRE_RULES = {"v / v_threshold - 1 > 0": "rs", "v - v_threshold > 0": "as", "v > v_threshold": "as"}


class InferenceLIF(nn.Module):
    """A LIF neuron for inference, stepped over ``[T, B, ...]``: paper Eqs. 1-3 with a plain Heaviside.

    It is the NIR ``LIF`` node in forward Euler (``v ← v + (v_leak + r·I − v)/τ``, τ in steps) with
    the metadata :mod:`.nir_graph` writes: ``reset`` (soft: ``v −= v_threshold`` after a spike;
    hard: ``v := v_reset``), ``v_init`` (U[0]) and ``fire`` (the exact comparison). No autograd
    Function is involved, so ``torch.jit.trace`` can record it.
    """

    def __init__(self, tau, v_threshold, reset: str = "hard", v_init: float = 0.0, fire: str = "v > v_threshold",
                 r=None, v_leak=None, v_reset=None):
        super().__init__()
        self.register_buffer("tau", torch.as_tensor(tau))
        self.register_buffer("v_threshold", torch.as_tensor(v_threshold))
        self.reset_mode = str(reset)
        if self.reset_mode not in F.RESETS:
            raise InvalidValue(f"LIF reset {self.reset_mode!r} unknown; allowed: {list(F.RESETS)}")
        if str(fire) not in FIRE_RULES:
            raise InvalidValue(f"LIF fire rule {fire!r} unknown; allowed: {list(FIRE_RULES)}")
        self.sg_argument = FIRE_RULES[str(fire)]
        self.v_init = float(v_init)
        # r = 1, v_leak = 0, v_reset = 0 (every export of ours) are skipped, so the arithmetic is Eq. 1's bit for bit
        for name, value, neutral in (("r", r, 1), ("v_leak", v_leak, 0), ("v_reset", v_reset, 0)):
            keep = value is not None and not bool(torch.all(torch.as_tensor(value) == neutral))
            self.register_buffer(name, torch.as_tensor(value) if keep else None)

    @classmethod
    def from_nir(cls, node: nir.LIF, dt: float) -> "InferenceLIF":
        meta = _meta(node)
        tau = _t(node.tau) / dt
        if "tau_steps" in meta:  # τ exactly, where the exporter wrote it (tau/dt rounds)
            tau = torch.full_like(tau, float(meta["tau_steps"]))
        return cls(tau, _t(node.v_threshold), str(meta.get("reset", "hard")), float(meta.get("v_init", 0.0)),
                   str(meta.get("fire", "v > v_threshold")), _t(node.r), _t(node.v_leak), _t(node.v_reset))

    @classmethod
    def from_lif(cls, lif) -> "InferenceLIF":
        """The 0/1-spike inference form of a (folded) ``neurons.LIF``."""
        if lif.emits_scaled:
            raise InvalidValue("InferenceLIF.from_lif needs a folded LIF (0/1 spikes); run fold_thresholds first")
        return cls(lif.tau.detach().clone(), lif.v_threshold.detach().clone(), lif.reset_mode,
                   float(lif.mp_init_mean) if lif.mp_init else 0.0,
                   "v - v_threshold > 0" if lif.sg_mode == "as" else "v / v_threshold - 1 > 0")

    def forward(self, x):
        tau, v_thr = self.tau.to(x.dtype), self.v_threshold.to(x.dtype)
        u = torch.full_like(x[0], self.v_init)
        out = []
        for t in range(x.shape[0]):
            current = x[t] if self.r is None else self.r.to(x.dtype) * x[t]
            if self.v_leak is not None:
                current = current + self.v_leak.to(x.dtype)
            m = F.charge(u, current, tau)
            s = (F.sg_argument(m, v_thr, self.sg_argument) > 0).to(m.dtype)
            u = F.reset(m, s, v_thr, self.reset_mode)
            if self.reset_mode == "hard" and self.v_reset is not None:
                u = u + self.v_reset.to(x.dtype) * s
            out.append(s)
        return torch.stack(out)


def _conv2d(node: nir.Conv2d) -> nn.Module:
    w = _t(node.weight)
    padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in np.atleast_1d(node.padding))
    conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[-2:]), stride=tuple(int(s) for s in np.atleast_1d(node.stride)),
                     padding=padding, dilation=tuple(int(d) for d in np.atleast_1d(node.dilation)), groups=int(node.groups), dtype=w.dtype)
    conv.weight.data.copy_(w)
    conv.bias.data.copy_(_t(node.bias))
    return PerStep(conv)


def _affine(node) -> nn.Module:
    w = _t(node.weight)
    fc = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine), dtype=w.dtype)
    fc.weight.data.copy_(w)
    if isinstance(node, nir.Affine):
        fc.bias.data.copy_(_t(node.bias))
    return fc  # nn.Linear already maps the last dim of [T, B, F]


def _pool(node, summed: bool) -> nn.Module:
    def ints(v):
        return tuple(int(i) for i in np.broadcast_to(np.atleast_1d(v), (2,)))

    # a sum pool is an average pool that does not divide; zero padding adds nothing to either
    return PerStep(nn.AvgPool2d(ints(node.kernel_size), ints(node.stride), ints(node.padding), count_include_pad=True,
                                divisor_override=1 if summed else None))


def _flatten(node: nir.Flatten) -> nn.Module:
    end = int(node.end_dim)
    return nn.Flatten(int(node.start_dim) + 2, end + 2 if end >= 0 else end)  # NIR dims exclude [T, B]


_BUILDERS = {
    nir.Input: lambda n, dt: nn.Identity(),
    nir.Output: lambda n, dt: nn.Identity(),
    nir.Conv2d: lambda n, dt: _conv2d(n),
    nir.Affine: lambda n, dt: _affine(n),
    nir.Linear: lambda n, dt: _affine(n),
    nir.AvgPool2d: lambda n, dt: _pool(n, summed=False),
    nir.SumPool2d: lambda n, dt: _pool(n, summed=True),
    nir.Flatten: lambda n, dt: _flatten(n),
    nir.Scale: lambda n, dt: Elementwise(n.scale, "scale"),
    nir.Threshold: lambda n, dt: Elementwise(n.threshold, "threshold"),
    nir.LIF: lambda n, dt: InferenceLIF.from_nir(n, dt),
}


def _topological(graph: nir.NIRGraph) -> list[str]:
    indeg = {k: 0 for k in graph.nodes}
    for _, b in graph.edges:
        indeg[b] += 1
    ready = deque(k for k, d in indeg.items() if d == 0)
    order = []
    while ready:
        k = ready.popleft()
        order.append(k)
        for a, b in graph.edges:
            if a == k:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    if len(order) != len(graph.nodes):
        raise InvalidValue("from_nir: the graph has a cycle (recurrent NIR graphs are not supported)")
    return order


class NIRNetwork(nn.Module):
    """A feed-forward NIR graph as a multi-step module: input as a ``SpikingNetwork``'s, output ``[T, B, K]``."""

    def __init__(self, graph: nir.NIRGraph, T: int | None = None):
        super().__init__()
        meta = _meta(graph)
        self.T = int(T if T is not None else meta.get("T", 0)) or None
        self.dt = float(meta.get("dt", DT))
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise InvalidValue(f"from_nir runs graphs with one Input and one Output, got {len(graph.inputs)} and {len(graph.outputs)}")
        (self.input_name,) = graph.inputs
        (self.output_name,) = graph.outputs
        self.order = _topological(graph)
        self.sources = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
        self.layers = nn.ModuleDict()
        self._keys = {}
        for i, name in enumerate(self.order):
            node = graph.nodes[name]
            build = _BUILDERS.get(type(node))
            if build is None:
                raise InvalidValue(f"from_nir: node {name!r} is a {type(node).__name__}; supported: {sorted(c.__name__ for c in _BUILDERS)}")
            self._keys[name] = f"n{i}"  # ModuleDict keys may not contain dots
            self.layers[self._keys[name]] = build(node, self.dt)

    def layer(self, name: str) -> nn.Module:
        return self.layers[self._keys[name]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # a static image: direct encoding, the same input at every step
            if self.T is None:
                raise InvalidValue("from_nir: the graph has no T in its metadata; pass T= or feed frames [T, B, C, H, W]")
            x = x.unsqueeze(0).expand(self.T, *x.shape)
        values = {}
        for name in self.order:
            srcs = self.sources[name]
            inp = x if name == self.input_name else values[srcs[0]]
            for s in srcs[1:]:
                inp = inp + values[s]
            values[name] = self.layer(name)(inp)
        return values[self.output_name]


def from_nir(graph: nir.NIRGraph | str | Path, T: int | None = None) -> NIRNetwork:
    """A module running ``graph`` (or the NIR file at that path) with a ``SpikingNetwork``'s forward."""
    if isinstance(graph, (str, Path)):
        graph = nir.read(graph)
    return NIRNetwork(graph, T).eval()
