"""Surrogate-gradient shapes.

A surrogate is a small ``nn.Module`` holding its width hyperparameter. ``forward(x)`` is the
Heaviside step ``H(x) = 1[x > 0]`` whose backward uses the hand-written derivative ``f'(x)``.
Each shape also exposes ``primitive(x)``, a smooth (or piecewise-smooth) ``f`` with ``f' = derivative``,
so ``self_check()`` can compare the hand-written derivative with autograd.

The argument ``x`` is whatever the SG formulation feeds in (``M - V_thr`` for AS-SG,
``M / V_thr - 1`` for RS-SG and TrSG); the shape knows nothing about thresholds.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import float_above
from ..errors import InvalidValue


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: "Surrogate") -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None


def spike(x: torch.Tensor, surrogate: "Surrogate") -> torch.Tensor:
    """Heaviside forward, ``surrogate.derivative`` backward."""
    return _Spike.apply(x, surrogate)


class Surrogate(nn.Module):
    """Base class: subclasses implement ``derivative`` and ``primitive``."""

    name = "surrogate"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # f'(x)
        raise NotImplementedError

    def primitive(self, x: torch.Tensor) -> torch.Tensor:  # f(x), for gradient checks
        raise NotImplementedError

    def kinks(self) -> tuple[float, ...]:
        """Points where ``derivative`` is discontinuous (excluded from gradient checks)."""
        return ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spike(x, self)

    @torch.no_grad()
    def self_check(self, n: int = 2001, span: float = 3.0, atol: float = 1e-9) -> float:
        """Max |hand-written f' - autograd(f)'| over a grid, skipping kinks. Raises if it fails."""
        x = torch.linspace(-span, span, n, dtype=torch.float64)
        for k in self.kinks():
            x = x[(x - k).abs() > 1e-6]
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            (auto,) = torch.autograd.grad(self.primitive(xg).sum(), xg)
        err = (auto - self.derivative(x)).abs().max().item()
        if err > atol:
            raise AssertionError(f"{type(self).__name__}: derivative differs from autograd by {err:.3e}")
        return err


def _positive(name: str, value: float) -> float:
    return float_above(name, value, 0.0, "a positive finite number")


class Rectangular(Surrogate):
    """f'(x) = (1/γ)·1(|x| < γ/2): the paper's default (γ = 1)."""

    name = "rectangular"

    def __init__(self, gamma: float = 1.0):
        super().__init__()
        self.gamma = _positive("gamma", gamma)

    def derivative(self, x):
        g = self.gamma
        return (x.abs() < g / 2).to(x.dtype) / g

    def primitive(self, x):
        return torch.clamp(x / self.gamma + 0.5, 0.0, 1.0)

    def kinks(self):
        return (-self.gamma / 2, self.gamma / 2)

    def extra_repr(self):
        return f"gamma={self.gamma}"


class Triangular(Surrogate):
    """f'(x) = (1/γ²)·max(0, γ − |x|)."""

    name = "triangular"

    def __init__(self, gamma: float = 1.0):
        super().__init__()
        self.gamma = _positive("gamma", gamma)

    def derivative(self, x):
        g = self.gamma
        return torch.clamp(g - x.abs(), min=0.0) / (g * g)

    def primitive(self, x):
        g = self.gamma
        xc = torch.clamp(x, -g, g)
        # ∫ (γ − |s|)/γ² ds from −γ, continued flat outside [−γ, γ]
        return 0.5 + (xc * g - xc * xc.abs() / 2) / (g * g)

    def kinks(self):
        return (-self.gamma, 0.0, self.gamma)

    def extra_repr(self):
        return f"gamma={self.gamma}"


class Sigmoid(Surrogate):
    """f(x) = σ(αx), f'(x) = α·σ(αx)·(1 − σ(αx))."""

    name = "sigmoid"

    def __init__(self, alpha: float = 4.0):
        super().__init__()
        self.alpha = _positive("alpha", alpha)

    def derivative(self, x):
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)

    def primitive(self, x):
        return torch.sigmoid(self.alpha * x)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class ATan(Surrogate):
    """f(x) = ½ + arctan(π/2·αx)/π (spikingjelly's default shape)."""

    name = "atan"

    def __init__(self, alpha: float = 2.0):
        super().__init__()
        self.alpha = _positive("alpha", alpha)

    def derivative(self, x):
        a = self.alpha
        return a / 2 / (1 + (math.pi / 2 * a * x) ** 2)

    def primitive(self, x):
        return 0.5 + torch.atan(math.pi / 2 * self.alpha * x) / math.pi

    def extra_repr(self):
        return f"alpha={self.alpha}"


SURROGATES: dict[str, type[Surrogate]] = {
    "rectangular": Rectangular,
    "triangular": Triangular,
    "sigmoid": Sigmoid,
    "atan": ATan,
}


def build_surrogate(spec) -> Surrogate:
    """A ``Surrogate`` instance from an instance, a class, a name, or a dict ``{"name": ..., **kwargs}``."""
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, type) and issubclass(spec, Surrogate):
        return spec()
    if isinstance(spec, str):
        key = spec.lower()
        if key not in SURROGATES:
            raise InvalidValue(f"unknown surrogate {spec!r}; allowed: {sorted(SURROGATES)}")
        return SURROGATES[key]()
    if isinstance(spec, dict) or hasattr(spec, "items"):
        kwargs = dict(spec)
        name = kwargs.pop("name", None)
        if name is None or str(name).lower() not in SURROGATES:
            raise InvalidValue(f"unknown surrogate {name!r}; allowed: {sorted(SURROGATES)}")
        return SURROGATES[str(name).lower()](**kwargs)
    raise InvalidValue(f"unknown surrogate {spec!r}; allowed: {sorted(SURROGATES)} or a Surrogate instance")
