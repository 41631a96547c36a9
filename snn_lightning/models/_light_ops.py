"""The autograd Functions behind ``memory="light"``: a convolution fed by spikes that keeps its input as
bits, and the norm after it that rebuilds its own input from those bits in backward.

Why this saves memory: in a conv → norm → LIF layer the default autograd keeps three activation-sized
float tensors — the conv's input (for dL/dW), the norm's input (for its backward) and the neuron's
membrane M. The conv's input is a spike train, O = V_thr·S under TrSG (Eq. 10) or S otherwise: one bit
per neuron plus one scalar. And the norm's input is the conv's output, which the bits and the weight
reproduce exactly. So the conv keeps ``(bits, scale)``, the norm keeps nothing activation-sized, and
backward pays one extra conv forward per layer (plus the norm's forward).

The norm's backward is recomputed through autograd on the rebuilt input, so every norm kind (tdBN,
TEBN, TAB, per-frame BN, SyncBatchNorm under DDP) gets exactly its own gradient, including the terms
through the batch statistics; the recompute runs with ``track_running_stats`` switched off so the
running statistics are updated once, in the forward. Autocast's state is recorded in the forward and
re-entered in the backward, so AMP recomputes in the forward's dtypes.
"""
from __future__ import annotations

import contextlib
import weakref

import torch
import torch.nn.functional as F
from torch import nn

_MAGIC = 0x0102040810204080  # gathers the low bit of each of 8 bytes into the top byte (bit i = byte i)
_SHIFTS: dict = {}


def pack_spikes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with values in {0, v} → (uint8 bits, 8 per byte, LSB first; the scalar v = max(x)).

    v is read from the data (one reduction) rather than from the neuron, so any backend's rounding of
    V_thr·S is reproduced exactly; when nothing fired, v = 0 and every bit is 0.
    """
    flat = x.detach().reshape(-1)
    n = flat.numel()
    nz = flat != 0
    pad = (-n) % 8
    if pad:
        nz = torch.cat([nz, nz.new_zeros(pad)])
    words = nz.view(torch.uint8).view(-1, 8).view(torch.int64).reshape(-1)
    bits = ((words * _MAGIC) >> 56).bitwise_and_(0xFF).to(torch.uint8)
    scale = flat.amax() if n else flat.new_zeros(())
    return bits, scale


def unpack_spikes(bits: torch.Tensor, scale: torch.Tensor, shape, dtype) -> torch.Tensor:
    """The inverse of :func:`pack_spikes`: a dense tensor of ``shape`` with values in {0, scale}."""
    key = bits.device
    shifts = _SHIFTS.get(key)
    if shifts is None:
        shifts = _SHIFTS[key] = torch.arange(8, dtype=torch.uint8, device=bits.device)
    n = 1
    for s in shape:
        n *= int(s)
    ones = (bits.unsqueeze(-1) >> shifts).bitwise_and_(1).reshape(-1)[:n]
    return ones.to(dtype).mul_(scale.to(dtype)).reshape(shape)


class SpikePacker:
    """Packs a neuron's output once even when two convolutions read it (conv1 and a projection shortcut).

    Holds a weak reference to the last packed tensor's base, so a freed tensor is never matched.
    """

    def __init__(self):
        self._last = None  # (weakref to base, version, bits, scale)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base = x._base if x._base is not None else x
        last = self._last
        if last is not None and last[0]() is base and last[1] == base._version and x.numel() == base.numel():
            return last[2], last[3]
        bits, scale = pack_spikes(x)
        self._last = (weakref.ref(base), base._version, bits, scale) if x.numel() == base.numel() else None
        return bits, scale

    def clear(self) -> None:
        self._last = None


def _autocast_state(device_type: str):
    if torch.is_autocast_enabled(device_type):
        return (device_type, torch.get_autocast_dtype(device_type))
    return None


def _autocast(state):
    if state is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=state[0], dtype=state[1])


class ConvSpec:
    """What a conv call needs besides tensors: its hyper-parameters and the packer of its input."""

    def __init__(self, conv: nn.modules.conv._ConvNd, packer: SpikePacker):
        self.conv = conv
        self.packer = packer

    def run(self, x, weight, bias):
        c = self.conv
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(c.kernel_size)]
        return fn(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)


class Saved:
    """What one light conv call keeps, shared with the norm after it (plain attributes, no autograd).

    ``x_cache``: the input the norm's backward rebuilt, handed to the conv's backward, which runs next.
    """

    __slots__ = ("spec", "x_shape", "x_dtype", "x_channels_last", "x_cache")

    def __init__(self, spec: ConvSpec, x: torch.Tensor):
        self.spec = spec
        self.x_shape, self.x_dtype = x.shape, x.dtype
        self.x_channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        self.x_cache = None

    def rebuild(self, bits, scale, dtype=None) -> torch.Tensor:
        x = unpack_spikes(bits, scale, self.x_shape, self.x_dtype)
        if self.x_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x if dtype is None else x.to(dtype)


class LightConv(torch.autograd.Function):
    """``(x, weight, bias) → conv(x)``, saving only the bits of x (plus its scalar) and the weight."""

    @staticmethod
    def forward(ctx, x, weight, bias, saved: Saved):
        spec = saved.spec
        y = spec.run(x, weight, bias)
        bits, scale = spec.packer(x)
        ctx.save_for_backward(bits, scale, weight)
        ctx.saved = saved
        ctx.y_dtype = y.dtype  # the compute dtype (half under autocast)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        bits, scale, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        saved = ctx.saved
        c = saved.spec.conv
        cd = ctx.y_dtype
        x, saved.x_cache = saved.x_cache, None
        if x is None:
            x = saved.rebuild(bits, scale, cd)
        w = weight.to(cd)
        gx, gw, gb = torch.ops.aten.convolution_backward(
            gy.to(cd), x, w, [w.shape[0]] if ctx.has_bias else None, list(c.stride), list(c.padding),
            list(c.dilation), False, [0] * len(c.kernel_size), c.groups, [need_x, need_w, need_b and ctx.has_bias])
        gx = gx.to(saved.x_dtype) if gx is not None else None
        gw = gw.to(weight.dtype) if gw is not None else None
        gb = gb.to(weight.dtype) if gb is not None else None
        return gx, gw, gb, None


@contextlib.contextmanager
def _replaying(norm: nn.Module, training_flags):
    """Run ``norm`` as it ran in the forward, without touching its running statistics a second time."""
    mods = list(norm.modules())
    old = [(m.training, getattr(m, "track_running_stats", None)) for m in mods]
    try:
        for m, was_training in zip(mods, training_flags):
            m.training = was_training
            if was_training and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.track_running_stats = False  # batch statistics either way; no running buffers = no update
        yield
    finally:
        for m, (tr, track) in zip(mods, old):
            m.training = tr
            if track is not None:
                m.track_running_stats = track


class LightNorm(torch.autograd.Function):
    """``(y, *norm params) → norm(y)`` for y = conv(bits): saves no activation, rebuilds y in backward.

    ``state = (bits, scale, weight, bias, saved, norm, call)``: the conv call's record and the norm's
    own forward ``call``; the tensors in it are saved for backward but are not inputs of this node.
    """

    @staticmethod
    def forward(ctx, y, state, *params):
        bits, scale, weight, bias, saved, norm, call = state
        z = call(y)  # the norm's own forward: updates the running statistics once
        ctx.save_for_backward(bits, scale, weight, bias, *params)
        ctx.saved, ctx.norm, ctx.call = saved, norm, call
        ctx.autocast = _autocast_state(y.device.type)
        ctx.training = [m.training for m in norm.modules()]
        ctx.y_shape = y.shape
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz):
        bits, scale, weight, bias, *params = ctx.saved_tensors
        saved = ctx.saved
        need_y = ctx.needs_input_grad[0]
        need_p = ctx.needs_input_grad[2:]
        with torch.no_grad(), _autocast(ctx.autocast):
            x = saved.rebuild(bits, scale)
            y = saved.spec.run(x, weight, bias).reshape(ctx.y_shape)
        if need_y:
            saved.x_cache = x.to(y.dtype)  # the conv's backward runs next and needs it for dL/dW
        wrt = ([y.requires_grad_(True)] if need_y else []) + [p for p, n in zip(params, need_p) if n]
        if not wrt:
            return (None, None, *[None] * len(params))
        with torch.enable_grad(), _autocast(ctx.autocast), _replaying(ctx.norm, ctx.training):
            z = ctx.call(y)
        grads = list(torch.autograd.grad(z, wrt, gz, allow_unused=True))
        gy = grads.pop(0) if need_y else None
        return (gy, None, *[grads.pop(0) if n else None for n in need_p])


__all__ = ["ConvSpec", "LightConv", "LightNorm", "Saved", "SpikePacker", "pack_spikes", "unpack_spikes"]
