"""``memory="light"``: train with spikes kept as bits and conv/norm outputs recomputed in backward.

:func:`make_light` converts a built network in place. It finds the layers by *structure*, not by
attribute names: one traced forward (evaluation mode, no autograd, a tiny input) records which
tensors each module reads and writes, and

* a convolution whose input is (a view of) the output of a :class:`~snn_lightning.neurons.LIF` is
  *fed by spikes*: it becomes a :class:`~._light_ops.LightConv` and keeps only the bits of that
  input and its scalar (V_thr under TrSG, Eq. 10; 1 otherwise);
* the first module to read that convolution's output, if it is a normalization (a module made of
  BatchNorms only: tdBN, TEBN, TAB, per-frame BN), becomes a :class:`~._light_ops.LightNorm`, which
  rebuilds its input from the bits in backward instead of keeping it.

Everything else (the stem's conv on the analog image, convs after an average pool, linear layers,
the neurons, which keep what their own gradient needs) runs as before. Parameters, buffers and
``state_dict`` keys do not change: the conversion only sets an instance ``forward`` on the converted
modules, so checkpoints of light and default networks are interchangeable.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from .._checks import choice
from ..errors import InvalidValue
from ..neurons import LIF
from ._light_ops import ConvSpec, LightConv, LightNorm, Saved, SpikePacker

MEMORY_MODES = ("off", "light")
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def memory_mode(memory) -> str:
    """The validated mode: ``None``/``False`` (YAML's unquoted ``off``) mean ``"off"``."""
    if memory is None or memory is False:
        return "off"
    return choice("memory", memory, list(MEMORY_MODES))


class _Link:
    """The hand-over from a light conv's forward to its norm's forward (set, then taken, in one pass)."""

    __slots__ = ("pending",)

    def __init__(self):
        self.pending = None  # (weakref to the conv output, Saved, bits, scale)


class _LightConvForward:
    """The instance ``forward`` of a converted convolution."""

    def __init__(self, conv: nn.Module, packer: SpikePacker, link: _Link | None):
        self.conv, self.spec, self.link = conv, ConvSpec(conv, packer), link

    # under torch.compile the light layers run eagerly (a graph break each): the packer's bookkeeping and
    # the hand-over to the norm are Python state that a traced graph would freeze
    @torch.compiler.disable
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad)):
            return type(conv).forward(conv, x)
        bits, scale = self.spec.packer(x)  # packed once; LightConv reads the packer's cached result
        saved = Saved(self.spec, x)
        y = LightConv.apply(x, conv.weight, conv.bias, saved)
        if self.link is not None:
            self.link.pending = (weakref.ref(y), saved, bits, scale)
        return y


class _LightNormForward:
    """The instance ``forward`` of a converted norm: reads its conv's record instead of saving its input."""

    def __init__(self, norm: nn.Module, conv: nn.Module, link: _Link, name: str):
        self.norm, self.conv, self.link, self.name = norm, conv, link, name

    def _plain(self, y):
        return type(self.norm).forward(self.norm, y)

    @torch.compiler.disable
    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        pending, self.link.pending = self.link.pending, None
        if pending is None or not torch.is_grad_enabled():
            return self._plain(y)  # the conv ran plainly (no gradient asked), so nothing is pending
        src = pending[0]()
        if src is None or not (y is src or (y._base is src and y.numel() == src.numel())):
            raise RuntimeError(
                f"memory='light': norm {self.name!r} got an input that is not the output of the convolution it "
                f"was paired with; the network's forward no longer matches the structure make_light traced"
            )
        _, saved, bits, scale = pending
        state = (bits, scale, self.conv.weight, self.conv.bias, saved, self.norm, self._plain)
        return LightNorm.apply(y, state, *self.norm.parameters())


def _storage_key(t: torch.Tensor):
    return (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.device)


def _is_norm(m: nn.Module) -> bool:
    """Made of BatchNorms only (the module itself may be a wrapper with its own parameters, like TEBN's p)."""
    subs = [s for s in m.modules() if s is not m]
    bns = [s for s in m.modules() if isinstance(s, nn.modules.batchnorm._BatchNorm)]
    return bool(bns) and all(isinstance(s, nn.modules.batchnorm._BatchNorm) for s in subs)


def _example_input(net: nn.Module) -> torch.Tensor:
    if not hasattr(net, "in_channels"):
        raise InvalidValue(f"make_light needs an example input for {type(net).__name__} (it has no in_channels)")
    size = getattr(net, "input_size", None) or 32
    p = next(net.parameters())
    return torch.randn(2, net.in_channels, size, size, dtype=p.dtype, device=p.device)


def _trace(net: nn.Module, example: torch.Tensor):
    """One forward in eval mode without autograd: ordered (kind, module, tensor) events."""
    events, handles = [], []
    names = {m: n for n, m in net.named_modules()}

    def pre(mod, args):
        if args and isinstance(args[0], torch.Tensor):
            events.append(("in", mod, args[0]))

    def post(mod, args, out):
        if isinstance(out, torch.Tensor):
            events.append(("out", mod, out))

    for m in net.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    modes = {m: m.training for m in net.modules()}
    try:
        net.eval()
        with torch.no_grad():
            net(example)
    finally:
        for h in handles:
            h.remove()
        for m, tr in modes.items():
            m.training = tr
    return events, names


def _find_pairs(net: nn.Module, example: torch.Tensor):
    """``[(conv, lif, norm or None)]`` for every convolution fed by a neuron's output."""
    events, names = _trace(net, example)
    lif_out = {}
    calls: dict = {}
    for kind, mod, t in events:
        if kind == "in":
            calls[mod] = calls.get(mod, 0) + 1
        elif isinstance(mod, LIF):
            lif_out[_storage_key(t)] = mod
    pairs = []
    for i, (kind, mod, t) in enumerate(events):
        if kind != "in" or not isinstance(mod, _CONVS) or calls[mod] != 1:
            continue
        lif = lif_out.get(_storage_key(t))
        if lif is None:
            continue
        if mod.padding_mode != "zeros":
            raise InvalidValue(
                f"memory='light' cannot rebuild conv {names[mod]!r} with padding_mode={mod.padding_mode!r}; "
                f"allowed: 'zeros' (or memory=off)"
            )
        out = next(e[2] for e in events[i:] if e[0] == "out" and e[1] is mod)
        j = next(k for k in range(i, len(events)) if events[k][0] == "out" and events[k][1] is mod)
        key = _storage_key(out)
        follower = next((e[1] for e in events[j:] if e[0] == "in" and _storage_key(e[2]) == key), None)
        norm = follower if follower is not None and _is_norm(follower) and calls[follower] == 1 else None
        pairs.append((mod, lif, norm))
    return pairs, names


def make_light(net: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, str | None]]:
    """Convert ``net`` in place to memory-light training; returns ``[(conv name, norm name or None)]``.

    ``example``: an input for the structural trace (default: a [2, C, S, S] batch, S = ``net.input_size``
    or 32). Raises ``InvalidValue`` if no convolution is fed by spikes, or one cannot be rebuilt.
    """
    if getattr(net, "light_layers", None):
        raise InvalidValue(f"{type(net).__name__} is already memory-light")
    pairs, names = _find_pairs(net, _example_input(net) if example is None else example)
    if not pairs:
        raise InvalidValue(
            f"memory='light' found no convolution fed by spiking neurons (LIF) in {type(net).__name__}; use memory=off"
        )
    packers: dict = {}
    converted = []
    for conv, lif, norm in pairs:
        packer = packers.setdefault(lif, SpikePacker())
        link = _Link() if norm is not None else None
        conv.forward = _LightConvForward(conv, packer, link)
        if norm is not None:
            norm.forward = _LightNormForward(norm, conv, link, names[norm])
        converted.append((names[conv], names[norm] if norm is not None else None))
    net.light_layers = converted
    return converted





def saved_bytes(step) -> tuple[int, object]:
    """Bytes autograd keeps for backward while ``step()`` builds its graph, and ``step()``'s result.

    Counted with saved-tensor hooks, each storage once (a tensor saved by two nodes, or a parameter,
    counts once), so the figure is device-independent and comparable across implementations.
    """
    seen: dict = {}

    def pack(t):
        st = t.untyped_storage()
        seen[(st.data_ptr(), t.device)] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = step()
    return sum(seen.values()), result

__all__ = ["MEMORY_MODES", "make_light", "memory_mode", "saved_bytes"]
