"""The static description of one LIF kernel call, shared by every backend.

A ``Spec`` fixes everything a kernel is specialised on (SG formulation, reset, storage for backward,
the rectangular window); ``Needs`` says which inputs want a gradient. Both are hashable: with the
surrogate's key they are the compile cache's key (``compiled.py``) and the Triton kernels' constexprs
(``triton_lif.py``).

What is saved for backward, chosen per call by ``choose_storage`` (numbers in ``benchmarks/results.md``):

* ``"bits"``: when the surrogate is rectangular, neither τ nor V_thr needs a gradient (fixed neuron
  parameters, as in spikingjelly's ``LIFNode``), and the reset needs no membrane value (soft reset,
  or hard reset with ``detach_reset``): the surrogate-window bit (and, for hard reset, the spike
  bit) of every step, packed along time into uint8 — one byte per neuron for T ≤ 8 (T ≤ 4 hard),
  1/16 of a float32 membrane sequence at T = 4.
* ``"m"``: otherwise, the pre-fire membrane M[1..T] in the input dtype, once. dL/dτ needs
  M[t] − U[t−1] everywhere and dL/dV_thr needs M inside the window, so real values must stay.
  Spike, surrogate derivative and U[t−1] are rebuilt from M elementwise — cheaper than reading more
  saved tensors. It is also the monitor's M.
* ``"none"``: nothing needs a gradient.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

Tensor = torch.Tensor


class Spec(NamedTuple):
    """Static configuration of one kernel (the compile cache key, with the surrogate's key)."""

    sg_mode: str  # "as" | "rs" | "trsg"
    reset: str  # "soft" | "hard"
    detach: bool  # detach_reset
    scaled: bool  # O = V·S (TrSG before export) rather than S
    storage: str  # "m": M in the input dtype | "bits": packed uint8 | "none": no backward
    bits_per_step: int  # 1 (window) or 2 (window, spike) in "bits" storage
    rect: bool  # the surrogate is the built-in rectangular shape
    half_width: float  # rectangular γ/2
    gamma: float  # rectangular γ


class Needs(NamedTuple):
    """Which of (x, u0, τ, V_thr) want a gradient."""

    x: bool
    u0: bool
    tau: bool
    v: bool


def sg_arg(m: Tensor, v: Tensor, sg_mode: str) -> Tensor:
    """x(M, V_thr) of Eqs. 5 and 8, with the very ops of ``functional.sg_argument`` (same rounding)."""
    return m - v if sg_mode == "as" else m / v - 1.0


def reset_u(m: Tensor, s: Tensor, v: Tensor, mode: str) -> Tensor:
    """Eq. 3 on values: soft U = M − V·S, hard U = M·(1 − S)."""
    return m - v * s if mode == "soft" else m * (1.0 - s)


def steps_per_byte(spec: Spec) -> int:
    return 8 // spec.bits_per_step


def n_code_bytes(spec: Spec, T: int) -> int:
    per = steps_per_byte(spec)
    return (T + per - 1) // per


def rectangular_gamma(surrogate) -> Optional[float]:
    """γ of the built-in rectangular shape (exact type: a subclass may change the derivative), else None."""
    from ...surrogates.shapes import Rectangular

    if type(surrogate) is Rectangular:
        return float(surrogate.gamma)
    return None


def surrogate_key(surrogate):
    """A hashable key for built-in shapes (their hyperparameters are plain floats); None otherwise."""
    from ...surrogates.shapes import SURROGATES

    cls = type(surrogate)
    if cls not in SURROGATES.values():
        return None
    params = tuple(sorted((k, v) for k, v in vars(surrogate).items()
                          if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)))
    return (cls.__name__, params)


def choose_storage(gamma: Optional[float], reset: str, detach: bool, needs: Needs) -> str:
    """``"bits"``, ``"m"`` or ``"none"``: see the module docstring."""
    if not any(needs):
        return "none"
    bits_ok = gamma is not None and not needs.tau and not needs.v and (reset == "soft" or detach)
    return "bits" if bits_ok else "m"


def make_spec(sg_mode: str, reset: str, detach: bool, scaled: bool, gamma: Optional[float], needs: Needs) -> Spec:
    storage = choose_storage(gamma, reset, detach, needs)
    return Spec(sg_mode, reset, detach, scaled, storage, 2 if reset == "hard" else 1, gamma is not None,
                (gamma or 1.0) / 2, gamma or 1.0)


__all__ = ["Spec", "Needs", "sg_arg", "reset_u", "steps_per_byte", "n_code_bytes", "rectangular_gamma",
           "surrogate_key", "choose_storage", "make_spec"]
