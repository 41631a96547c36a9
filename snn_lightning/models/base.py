"""The contract every spiking network in this package keeps.

Why one base class: the rules that make SNN experiments trustworthy — reset the neuron state before
every forward, accept both a static image (direct encoding) and a frame sequence, reject
mis-shaped inputs loudly instead of silently broadcasting, return per-timestep logits ``[T, B, K]``
— are easy to get subtly wrong per model. Written once here, every backbone inherits them.

Why ``stem`` / ``body`` / ``head``: direct encoding runs the stem's conv+norm once on the static
image and repeats the result T times (as the reference does), which only the stem must know about;
and the export rules (``snn_lightning.export``: V_thr folding, conv/BN fusion, NIR) walk this fixed
layout. The models themselves carry no export code.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .._checks import check_T, choice
from ..errors import InvalidValue
from ..neurons import LIF, reset_net
from ..norm import NORM_KINDS, build_norm
from .keys import upgrade_in_place

NeuronFactory = Callable[[], nn.Module]
NormFactory = Callable[[int], nn.Module]


def neuron_factory(neuron: Mapping | Callable[[], nn.Module] | None = None) -> NeuronFactory:
    """A factory returning one fresh neuron per call: ``LIF(**neuron)`` for a dict, LIF() for None."""
    if neuron is None:
        return LIF
    if isinstance(neuron, Mapping):
        # the first layer built validates the options, with LIF's own message
        return functools.partial(LIF, **dict(neuron))
    if callable(neuron):
        return neuron
    raise TypeError(f"neuron must be a dict of LIF kwargs, a factory or None, got {type(neuron).__name__}")


def norm_factory(norm: str | Callable[[int], nn.Module], T: int, dim: int = 2) -> NormFactory:
    """A factory ``f(num_features)`` building one norm layer of the given kind per call."""
    if callable(norm):
        return norm
    choice("norm", norm, list(NORM_KINDS))  # before any layer exists: the kind is checked once, here
    return functools.partial(build_norm, norm, T=T, dim=dim)


def layer_factories(T: int, neuron, norm, conv_bias: bool | None = None) -> tuple[NeuronFactory, NormFactory, bool]:
    """Neuron and norm factories for a backbone, and whether its convs get a bias.

    ``conv_bias=None`` gives convs a bias only when ``norm="none"``: otherwise the norm's β makes it redundant.
    """
    bias = (norm == "none") if conv_bias is None else bool(conv_bias)
    return neuron_factory(neuron), norm_factory(norm, T), bias


class TimeDistributed(nn.Sequential):
    """Stateless layers applied to every timestep: ``[T, B, ...]`` folded to ``[T·B, ...]`` (a view)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class GlobalAvgPool(nn.Module):
    """Mean over the trailing ``dims`` spatial axes: ``[T, B, C, H, W]`` → ``[T, B, C]``."""

    def __init__(self, dims: int = 2):
        super().__init__()
        self.dims = int(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(-self.dims, 0)))


class Stem(nn.Module):
    """conv → norm → (repeat T for a static image) → neuron → optional per-timestep pooling.

    A static ``[B, C, H, W]`` image goes through conv and norm once (the norm sees T' = 1), and the
    result is repeated T times (an ``expand``, no copy): direct encoding, so the first neuron sees the
    same analog current at every step. Frames ``[T, B, C, H, W]`` go through conv and norm folded.
    """

    def __init__(self, conv: nn.Module, norm: nn.Module, neuron: nn.Module, pool: nn.Module | None = None):
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.lif = neuron
        self.pool = TimeDistributed(pool) if pool is not None else None

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if x.dim() == 4:  # static image: encode once, repeat over time
            y = self.norm(self.conv(x).unsqueeze(0))
            y = y.expand(T, *y.shape[1:])
        else:
            y = self.norm(self.conv(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
        y = self.lif(y)
        return self.pool(y) if self.pool is not None else y


class SpikingNetwork(nn.Module):
    """Base class of every model: ``forward(x)`` → logits ``[T, B, num_classes]``.

    Subclasses build ``self.stem`` (a :class:`Stem`), ``self.body`` and ``self.head`` (modules on
    ``[T, B, ...]``); ``input_size`` (an int or None) pins the spatial size when the head needs it.
    """

    def __init__(self, num_classes: int, in_channels: int, T: int, input_size: int | None = None):
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self._T = check_T(T)
        self.input_size = input_size

    @property
    def T(self) -> int:
        """The number of timesteps, fixed when the network is built (the norms are sized by it)."""
        return self._T

    @T.setter
    def T(self, value) -> None:
        raise InvalidValue(f"T is fixed when a network is built (T={self._T}); build a new network for T={value!r}")

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a tensor, got {type(x).__name__}")
        allowed = f"a static batch [B, {self.in_channels}, H, W] or frames [T={self.T}, B, {self.in_channels}, H, W]"
        if x.dim() not in (4, 5):
            raise ValueError(f"{type(self).__name__} got input of shape {tuple(x.shape)}; allowed: {allowed}")
        if x.shape[-3] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} got {x.shape[-3]} channels in input of shape {tuple(x.shape)}; allowed: {allowed}"
            )
        if x.dim() == 5 and x.shape[0] != self.T:
            raise ValueError(
                f"{type(self).__name__} got frames of shape {tuple(x.shape)} with {x.shape[0]} timesteps but T={self.T}; "
                f"frames must be time-major [T, B, C, H, W] (transpose a [B, T, ...] batch), or set model.T"
            )
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"{type(self).__name__} was built for {self.input_size}x{self.input_size} inputs, got shape {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reset_net(self)
        self._check_input(x)
        return self.head(self.body(self.stem(x, self.T)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the conv*/norm*/lif* rename load unchanged (models/keys.py)
        upgrade_in_place(state_dict, prefix, expected=set(self.state_dict(keep_vars=True)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def neuron_layers(self) -> list[tuple[str, LIF]]:
        """(qualified name, neuron) for every LIF, in forward order (registration order is forward order)."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, LIF)]
