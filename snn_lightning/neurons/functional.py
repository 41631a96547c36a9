"""The neuron's maths, one function per formula of the paper (Eqs. 1-3, 5, 8, 10).

These pure functions are the single source of truth: the per-timestep reference LIF is built from
them, and every faster path is tested against that reference.
"""
from __future__ import annotations

import torch

from .._checks import choice
from ..surrogates import Surrogate, spike

SG_MODES = ("as", "rs", "trsg")
RESETS = ("soft", "hard")


check_choice = choice  # the one validator (snn_lightning._checks)


def charge(u_prev: torch.Tensor, current: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Eq. 1: M[t] = (1 − 1/τ)·U[t−1] + (1/τ)·I[t]."""
    k = 1.0 / tau
    return u_prev + (current - u_prev) * k


def sg_argument(m: torch.Tensor, v_thr: torch.Tensor, sg_mode: str) -> torch.Tensor:
    """The surrogate's argument x(M, V_thr): Eq. 5 (AS-SG) or Eq. 8 (RS-SG, TrSG)."""
    if sg_mode == "as":
        return m - v_thr
    if sg_mode in ("rs", "trsg"):
        return m / v_thr - 1.0
    raise ValueError(f"unknown sg_mode {sg_mode!r}; allowed: {list(SG_MODES)}")


def fire(m: torch.Tensor, v_thr: torch.Tensor, surrogate: Surrogate, sg_mode: str) -> torch.Tensor:
    """Eq. 2 with the surrogate backward of Eq. 4: S = H(x(M, V_thr))."""
    return spike(sg_argument(m, v_thr, sg_mode), surrogate)


def layer_output(s: torch.Tensor, v_thr: torch.Tensor, sg_mode: str) -> torch.Tensor:
    """Eq. 10: TrSG emits O = V_thr·S; AS-SG and RS-SG emit O = S."""
    return s * v_thr if sg_mode == "trsg" else s


def reset(m: torch.Tensor, s: torch.Tensor, v_thr: torch.Tensor, mode: str, detach: bool = False) -> torch.Tensor:
    """Eq. 3: soft U = M − V_thr·S, hard U = M·(1 − S).

    ``detach`` stops the gradient through the spike in the reset term (spikingjelly's
    ``detach_reset``); the gradient to V_thr through the soft reset is kept.
    """
    if detach:
        s = s.detach()
    if mode == "soft":
        return m - v_thr * s
    if mode == "hard":
        return m * (1.0 - s)
    raise ValueError(f"unknown reset {mode!r}; allowed: {list(RESETS)}")


def lif_step(u_prev, current, tau, v_thr, surrogate, sg_mode="trsg", reset_mode="soft", detach_reset=False):
    """One timestep: returns (output O[t], spike S[t], pre-fire M[t], post-reset U[t])."""
    m = charge(u_prev, current, tau)
    s = fire(m, v_thr, surrogate, sg_mode)
    u = reset(m, s, v_thr, reset_mode, detach_reset)
    return layer_output(s, v_thr, sg_mode), s, m, u


def mp_init_statistic(u_last: torch.Tensor, fired: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of U[T] over the (sample, neuron) pairs in ``fired`` (all pairs if None).

    Returned separately so a distributed caller can all-reduce both before dividing, which makes
    the statistic equal to the one a single process computes on the global batch.
    """
    u = u_last.detach()
    # accumulate in float32: under 16-mixed U[T] is float16, whose sum (and count) overflows past 65504
    if fired is None:
        return u.sum(dtype=torch.float32), torch.tensor(float(u.numel()), dtype=torch.float32, device=u.device)
    fired = fired.bool()
    return u.masked_fill(~fired, 0).sum(dtype=torch.float32), fired.sum(dtype=torch.float32)


def running_mean_update(running: torch.Tensor, total: torch.Tensor, count: torch.Tensor, momentum: float) -> torch.Tensor:
    """r ← (1 − β)·r + β·mean, with mean = total / max(1, count) (0 when nothing fired)."""
    mean = total / torch.clamp(count, min=1.0)
    return running * (1.0 - momentum) + momentum * mean.to(running.dtype)


def tau_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """τ = 1 / sigmoid(w), so τ ∈ (1, ∞)."""
    return 1.0 / torch.sigmoid(raw)


def raw_from_tau(tau: float) -> float:
    """Inverse of ``tau_from_raw``: w = −log(τ − 1)."""
    import math

    return -math.log(tau - 1.0)


def v_threshold_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """V_thr = softplus(θ) > 0."""
    return torch.nn.functional.softplus(raw)


def raw_from_v_threshold(v: float) -> float:
    """Inverse softplus: θ = log(exp(V) − 1), computed stably."""
    import math

    return v + math.log(-math.expm1(-v))
