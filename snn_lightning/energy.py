"""Operation and energy counts of a spiking network, as SNN papers report them (plain PyTorch).

What is counted is what the network *executes* on one forward pass in inference:

* **AC** (accumulate): a layer fed spikes adds its weight once for every non-zero input and every
  output that input connects to. For a convolution that is the non-zero mask of its input convolved
  with a kernel of ones (same stride, padding, dilation and groups), times the outputs per group — exact
  at padded borders, where a tap falls on padding and costs nothing. An identity shortcut that adds a
  spike tensor into another signal (``BasicBlock`` without projection, ``SEWBlock``) costs one AC per
  non-zero spike it adds.
* **MAC** (multiply-accumulate): a layer fed real values uses every weight once per output position:
  the stem on the image, and any conv/linear after an *average* pool (an average of spikes is not a
  spike: whatever reads it must multiply), e.g. the classifier on pooled rates.

Which inputs are spikes is decided by where they come from, not by their values: a neuron's output,
passed on through shape-only layers (flatten, dropout, identity, max pooling — the max of spikes is a
spike) and sums of spike trains (a ``SEWBlock`` output). Values cannot decide it: a TrSG layer emits
V_thr·S, which ``snn_lightning.export.fold_thresholds`` turns into 0/1 spikes, and only the non-zero
pattern is the same in both. Counting non-zeros (never ones) is what makes the counts of the training
network and of its folded copy identical.

Not counted: norms (they fold into the preceding conv at inference, see ``export.fuse_conv_norm``),
biases, the neuron's own state update, pooling. A static image goes through the stem's conv once per
sample (direct encoding, ``models.base.Stem``); its MACs are booked at the first timestep.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import InvalidValue
from .neurons import LIF

E_AC_PJ = 0.9
E_MAC_PJ = 4.6

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# layers whose output is a spike tensor whenever their input is one (values only move or are dropped)
_SPIKE_PRESERVING = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


@dataclass
class OperationCounts:
    """Per-sample operation counts: totals over time and layers, per layer and per timestep."""

    ac: float
    mac: float
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    per_timestep: list[dict[str, float]] = field(default_factory=list)
    # neuron layer name -> share of non-zero outputs over neurons, timesteps and samples
    firing_rates: dict[str, float] = field(default_factory=dict)
    # over every neuron of every layer (layers weighted by their size)
    mean_firing_rate: float = 0.0

    def as_dict(self) -> dict:
        return {"ac": self.ac, "mac": self.mac, "per_layer": self.per_layer, "per_timestep": self.per_timestep,
                "firing_rates": self.firing_rates, "mean_firing_rate": self.mean_firing_rate}


def energy_pj(counts, e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ) -> float:
    """Energy in picojoules: ``ac·e_ac + mac·e_mac``.

    The defaults are the 45 nm CMOS figures of M. Horowitz, "Computing's energy problem (and what we
    can do about it)", ISSCC 2014: a 32-bit float add costs 0.9 pJ and a 32-bit float multiply 3.7 pJ,
    so an AC is 0.9 pJ and a MAC 3.7 + 0.9 = 4.6 pJ — the figures most SNN papers use. ``counts`` is an
    :class:`OperationCounts` or a mapping with ``ac`` and ``mac``. Memory access is not included.
    """
    for name, value in (("e_ac", e_ac), ("e_mac", e_mac)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise InvalidValue(f"{name} must be a finite number >= 0 (pJ per operation), got {value!r}")
    ac, mac = (counts.ac, counts.mac) if isinstance(counts, OperationCounts) else (counts["ac"], counts["mac"])
    return float(ac) * e_ac + float(mac) * e_mac


def conv_accumulates(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """AC count of ``conv`` on spike input ``x`` per leading index: ``[N]`` for ``x`` of shape ``[N, C, ...]``.

    Each output channel of a group reads the same input taps, so the count of non-zero taps per output
    position is one convolution of the non-zero mask with a ones kernel of one output channel per group,
    times ``out_channels / groups``. ``conv._conv_forward`` applies the module's own padding mode.
    """
    g = conv.groups
    # float32 counts taps exactly (at most C_in·prod(kernel) ≪ 2^24 per position; the sum is float64);
    # autocast would round them to half precision
    with torch.autocast(device_type=x.device.type, enabled=False):
        mask = (x != 0).to(torch.float32)
        ones = mask.new_ones(g, conv.in_channels // g, *conv.kernel_size)
        taps = conv._conv_forward(mask, ones, None)  # [N, g, *out]
    return taps.flatten(1).sum(dim=1, dtype=torch.float64) * (conv.out_channels // g)


def conv_macs_per_item(conv: nn.Module, out: torch.Tensor) -> int:
    """MACs of ``conv`` for one leading index: every output element uses ``C_in/groups · prod(kernel)`` weights."""
    return out[0].numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


class OperationCounter:
    """Counts the operations of every forward of ``model`` while attached (hooks; nothing is re-run).

    ``with OperationCounter(net) as counter: net(x)`` (any number of forwards), then ``counter.result()``
    gives the per-sample averages over every sample seen. Counts accumulate on the model's device (no
    host sync per layer); spike tensors are recognised by the storage they live in, through weak
    references, so nothing is kept alive longer than the forward keeps it.
    """

    def __init__(self, model: nn.Module):
        T = getattr(model, "T", None)
        if not isinstance(T, int) or isinstance(T, bool):
            raise InvalidValue(f"operation counting needs a spiking network with an int attribute T, got {type(model).__name__}")
        self.model, self.T = model, T
        self.B = 0
        self.samples = 0
        self._per_layer: dict[str, torch.Tensor] = {}  # name -> [ac, mac] summed over samples
        self._per_t: torch.Tensor | None = None  # [T, 2]
        self._fired: dict[str, torch.Tensor] = {}  # neuron layer -> [non-zero outputs, outputs]
        self._spikes: dict[int, weakref.ref] = {}  # storage address -> the spike tensor living there
        self._pending: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> "OperationCounter":
        self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def attach(self) -> None:
        if self._handles:
            return
        self._handles.append(self.model.register_forward_pre_hook(self._start))
        self._handles.append(self.model.register_forward_hook(lambda mod, inp, out: self._spikes.clear()))
        for name, m in self.model.named_modules():
            self._install(name, m)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._spikes.clear()
        self._pending.clear()

    def reset(self) -> None:
        self.samples = 0
        self._per_layer.clear()
        self._per_t = None
        self._fired.clear()

    def _start(self, model, args) -> None:
        x = args[0]
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise InvalidValue("inputs must be a batch tensor: a static [B, C, ...] batch or frames [T, B, C, ...]")
        # the models' contract (models.base.SpikingNetwork): 5-D inputs are time-major frames
        self.B = int(x.shape[1] if x.dim() == 5 else x.shape[0])
        self.samples += self.B
        self._spikes.clear()

    # -- provenance ------------------------------------------------------------------------
    def is_spike(self, x) -> bool:
        if not isinstance(x, torch.Tensor):
            return False
        ref = self._spikes.get(x.untyped_storage().data_ptr())
        return ref is not None and ref() is not None  # a dead reference: the address now holds something else

    def mark(self, x: torch.Tensor) -> None:
        self._spikes[x.untyped_storage().data_ptr()] = weakref.ref(x)

    def _install(self, name: str, m: nn.Module) -> None:
        from .models.resnet import BasicBlock, SEWBlock  # models import neurons; keep this module's import light

        hook = self._handles.append
        if isinstance(m, LIF):
            hook(m.register_forward_hook(lambda mod, inp, out, name=name: self._spiked(name, out)))
        if isinstance(m, (LIF, SEWBlock)):
            # a SEW block's output is a sum of spike trains (neuron before the addition)
            hook(m.register_forward_hook(lambda mod, inp, out: self.mark(out)))
        elif isinstance(m, _SPIKE_PRESERVING):
            hook(m.register_forward_hook(lambda mod, inp, out: self.mark(out) if self.is_spike(inp[0]) else None))
        elif isinstance(m, _CONV):
            hook(m.register_forward_hook(lambda mod, inp, out, name=name: self._conv(name, mod, inp[0], out)))
        elif isinstance(m, nn.Linear):
            hook(m.register_forward_hook(lambda mod, inp, out, name=name: self._linear(name, mod, inp[0], out)))
        if isinstance(m, BasicBlock) and m.shortcut is None:
            hook(m.register_forward_hook(lambda mod, inp, out, name=name: self._shortcut(name, inp[0])))
        if isinstance(m, SEWBlock):
            if m.downsample is not None:
                hook(m.downsample.register_forward_hook(lambda mod, inp, out, key=id(m): self._pending.__setitem__(key, out)))
            hook(m.register_forward_hook(lambda mod, inp, out, name=name: self._shortcut(name, self._pending.pop(id(mod), inp[0]))))

    # -- booking ---------------------------------------------------------------------------
    def _spiked(self, name: str, out: torch.Tensor) -> None:
        row = self._fired.get(name)
        if row is None:
            row = self._fired[name] = torch.zeros(2, dtype=torch.float64, device=out.device)
        row[0] += (out != 0).sum()
        row[1] += out.numel()

    def _book(self, name: str, kind: int, per_item: torch.Tensor, n_items: int) -> None:
        """Add per-item counts (``per_item`` of length ``n_items``: T·B items over time, or B static ones)."""
        per_item = per_item.to(torch.float64)
        if self._per_t is None:
            self._per_t = torch.zeros(self.T, 2, dtype=torch.float64, device=per_item.device)
        row = self._per_layer.get(name)
        if row is None:
            row = self._per_layer[name] = torch.zeros(2, dtype=torch.float64, device=per_item.device)
        row[kind] += per_item.sum()
        if n_items == self.T * self.B:
            self._per_t[:, kind] += per_item.reshape(self.T, self.B).sum(dim=1)
        elif n_items == self.B:  # computed once per sample (a static stem): booked at the first timestep
            self._per_t[0, kind] += per_item.sum()
        else:
            raise RuntimeError(f"{name}: {n_items} items is neither T·B = {self.T * self.B} nor B = {self.B}")

    def _conv(self, name, conv, x, out) -> None:
        n = x.shape[0]
        if self.is_spike(x):
            self._book(name, 0, conv_accumulates(conv, x), n)
        else:
            self._book(name, 1, torch.full((n,), float(conv_macs_per_item(conv, out)), dtype=torch.float64, device=x.device), n)

    def _linear(self, name, lin, x, out) -> None:
        rows = x.reshape(-1, x.shape[-1])
        n = self.T * self.B if rows.shape[0] == self.T * self.B else rows.shape[0]
        spike = self.is_spike(x)
        if spike:
            per_row = (rows != 0).sum(dim=1).to(torch.float64) * lin.out_features
        else:
            per_row = torch.full((rows.shape[0],), float(lin.in_features * lin.out_features), dtype=torch.float64, device=x.device)
        self._book(name, 0 if spike else 1, per_row.reshape(n, -1).sum(dim=1), n)

    def _shortcut(self, block_name: str, identity: torch.Tensor) -> None:
        if not self.is_spike(identity):
            return  # a real-valued residual addition is not an accumulate of spikes
        per_item = (identity.flatten(2) != 0).sum(dim=2).to(torch.float64).reshape(-1)
        self._book(f"{block_name}.shortcut_add" if block_name else "shortcut_add", 0, per_item, per_item.numel())

    # -- results ---------------------------------------------------------------------------
    def result(self) -> OperationCounts:
        """Per-sample averages over every sample counted since the last ``reset()`` (one host copy)."""
        if not self.samples or self._per_t is None:
            return OperationCounts(ac=0.0, mac=0.0, per_layer={}, per_timestep=[{"ac": 0.0, "mac": 0.0} for _ in range(self.T)])
        names = list(self._per_layer)
        table = (torch.stack([self._per_layer[n] for n in names]) / self.samples).cpu().tolist()
        per_layer = {n: {"ac": ac, "mac": mac} for n, (ac, mac) in zip(names, table)}
        per_t = (self._per_t / self.samples).cpu().tolist()
        fired = {n: v.cpu().tolist() for n, v in self._fired.items()}
        total = sum(n for _, n in fired.values())
        return OperationCounts(
            ac=sum(v["ac"] for v in per_layer.values()),
            mac=sum(v["mac"] for v in per_layer.values()),
            per_layer=per_layer,
            per_timestep=[{"ac": ac, "mac": mac} for ac, mac in per_t],
            firing_rates={n: k / max(n_out, 1.0) for n, (k, n_out) in fired.items()},
            mean_firing_rate=sum(k for k, _ in fired.values()) / max(total, 1.0),
        )


@torch.no_grad()
def count_operations(model: nn.Module, inputs: torch.Tensor) -> OperationCounts:
    """Per-sample AC and MAC counts of one inference forward of ``model`` on the batch ``inputs``.

    ``inputs`` is a batch as the model takes it (a static ``[B, C, H, W]`` image batch or frames
    ``[T, B, C, H, W]``); the counts are averaged over its B samples. The model runs in eval mode
    (restored afterwards): MP-Init statistics are not updated and dropout is off. Returns an
    :class:`OperationCounts`: totals, ``per_layer`` (the conv/linear's qualified name → ``{"ac", "mac"}``,
    plus ``<block>.shortcut_add`` for identity shortcuts), ``per_timestep`` (T dicts) and the firing
    rates that produced them (per neuron layer, and the mean over all neurons).
    """
    was_training = model.training
    counter = OperationCounter(model)
    try:
        model.eval()
        with counter:
            model(inputs)
    finally:
        model.train(was_training)
    return counter.result()


__all__ = ["E_AC_PJ", "E_MAC_PJ", "OperationCounter", "OperationCounts", "conv_accumulates", "conv_macs_per_item", "count_operations", "energy_pj"]
