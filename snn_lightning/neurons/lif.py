"""The LIF neuron with pluggable surrogate shape, SG formulation, reset and MP-Init."""
from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .._checks import float_above, fraction

from ..surrogates import build_surrogate
from . import functional as F
from .base import StatefulModule
from .kernels.dispatch import BACKENDS, LIFRun, check_backend  # noqa: F401 - BACKENDS: re-exported
from .kernels.dispatch import run as run_backend


class LIF(StatefulModule):
    """Multi-step leaky integrate-and-fire neuron: input and output ``[T, B, ...]``.

    * ``tau`` and ``v_threshold`` are one scalar per layer each, stored as raw values with
      τ = 1/sigmoid(w) and V_thr = softplus(θ); learnable unless ``learn_*=False``.
    * ``sg_mode``: ``"as"`` (x = M − V_thr, O = S), ``"rs"`` (x = M/V_thr − 1, O = S) or
      ``"trsg"`` (x = M/V_thr − 1, O = V_thr·S).
    * ``mp_init``: U[0] = ``mp_init_mean``, a buffer holding the running mean of the post-reset
      U[T] over (sample, neuron) pairs that fired at least once (``mp_init_stat="all"`` uses every
      pair); updated once per training forward, frozen in evaluation, averaged across ranks.
    * ``carry_state``: by default every call is a whole sequence that starts from U[0]; with
      ``carry_state=True`` a call continues from the previous call's U[T] until ``reset()``.
    * ``backend``: which kernels run the T steps, chosen once here — ``"auto"`` (Triton on CUDA
      tensors, the fused path on the CPU), ``"torch"`` (the reference loop), ``"fused"``, ``"compiled"``
      or ``"triton"``; see ``neurons/kernels/dispatch.py``. Every backend gives the reference's values.
    * ``monitor``: the forward hook, an optional callable ``monitor(lif, m_seq, s_seq)`` called once
      per forward, after the MP-Init update, with the detached pre-fire membrane M[1..T] and spikes
      S[1..T] (``[T, B, ...]``, input dtype) of that call, whichever backend ran it. Setting it makes
      the backend keep M and S for that call (otherwise they are never materialised). Used by the
      observability callbacks; it must not modify its arguments.
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        reset: str = "soft",
        surrogate="rectangular",
        sg_mode: str = "trsg",
        learn_tau: bool = True,
        learn_threshold: bool = True,
        detach_reset: bool = False,
        mp_init: bool = True,
        mp_init_momentum: float = 0.1,
        mp_init_stat: str = "active",
        backend: str = "auto",
        carry_state: bool = False,
    ):
        super().__init__()
        tau = float_above("tau", tau, 1.0)
        v_threshold = float_above("v_threshold", v_threshold, 0.0)
        self.reset_mode = F.check_choice("reset", reset, F.RESETS)
        self.sg_mode = F.check_choice("sg_mode", sg_mode, F.SG_MODES)
        self.mp_init_stat = F.check_choice("mp_init_stat", mp_init_stat, ("active", "all"))
        momentum = fraction("mp_init_momentum", mp_init_momentum, low_inclusive=False, high_inclusive=True)
        self.surrogate = build_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)
        self.mp_init = bool(mp_init)
        self.mp_init_momentum = momentum
        self.learn_tau = bool(learn_tau)
        self.learn_threshold = bool(learn_threshold)
        self.carry_state = bool(carry_state)
        self.backend = backend  # validated by the property below, once the surrogate is known

        raw_tau = torch.tensor(F.raw_from_tau(tau))
        raw_thr = torch.tensor(F.raw_from_v_threshold(v_threshold))
        if self.learn_tau:
            self.raw_tau = nn.Parameter(raw_tau)
        else:
            self.register_buffer("raw_tau", raw_tau)
        if self.learn_threshold:
            self.raw_threshold = nn.Parameter(raw_thr)
        else:
            self.register_buffer("raw_threshold", raw_thr)
        self.register_buffer("mp_init_mean", torch.zeros(()))
        # True: emit V_thr·S as TrSG prescribes; export.fold_thresholds sets it False for 0/1 spikes.
        self.scaled_output = True
        self.monitor: Callable | None = None
        self.register_state("v", None)

    @property
    def monitor(self) -> Callable | None:
        """The forward hook ``monitor(lif, m_seq, s_seq)`` (None: not recording)."""
        return self._monitor

    @monitor.setter
    def monitor(self, fn: Callable | None) -> None:
        # forward branches on a plain bool: torch.compile guards bools by value, so switching the
        # monitor on and off recompiles cleanly (it puts no guard on a compiler-disabled callable)
        self._monitor = fn
        self._recording = fn is not None

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = check_backend(self, value)

    # -- parameters -------------------------------------------------------------------------
    @property
    def tau(self) -> torch.Tensor:
        return F.tau_from_raw(self.raw_tau)

    @property
    def v_threshold(self) -> torch.Tensor:
        return F.v_threshold_from_raw(self.raw_threshold)

    @property
    def emits_scaled(self) -> bool:
        """Whether the output carries V_thr·S (TrSG before export) rather than 0/1 spikes."""
        return self.sg_mode == "trsg" and self.scaled_output

    # -- forward -----------------------------------------------------------------------------
    def initial_membrane(self, like: torch.Tensor) -> torch.Tensor:
        """U[0] shaped like one step of ``like``, in the state's own dtype (the backend casts it)."""
        if self.carry_state and self.v is not None:
            return self.v
        if self.mp_init:
            return self.mp_init_mean.expand_as(like[0])
        return self.mp_init_mean.new_zeros(()).expand_as(like[0])  # a stride-0 view: no memset, no read of a full tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"LIF expects a multi-step input [T, B, ...] with at least 2 dims, got shape {tuple(x.shape)}")
        u0 = self.initial_membrane(x)
        tau, v_thr = self.tau, self.v_threshold  # in the parameters' dtype; each backend casts
        need_m = self._recording
        run = self._run(x, u0, tau, v_thr, need_m)
        if self.training and self.mp_init:
            self._update_mp_init(run)
        if need_m:
            self._monitor(self, run.m_seq.detach(), run.spikes.detach())
        # without carry_state nothing differentiates through v later: keep no autograd graph alive
        self.v = run.u_last if self.carry_state else run.u_last.detach()
        return run.out

    def _run(self, x, u0, tau, v_thr, need_m: bool = False) -> LIFRun:
        """All T steps with this neuron's backend (``kernels.dispatch.run``)."""
        return run_backend(self, x, u0, tau, v_thr, need_m)

    def reference(self, x, u0, tau, v_thr, need_m=False):
        """The plain per-timestep loop under autograd: the ground truth for every faster path."""
        u = u0
        outs, spikes, ms = [], [], []
        for t in range(x.shape[0]):
            o, s, m, u = F.lif_step(u, x[t], tau, v_thr, self.surrogate, self.sg_mode, self.reset_mode, self.detach_reset)
            if not self.scaled_output:
                o = s
            outs.append(o)
            spikes.append(s)
            if need_m:
                ms.append(m)
        m_seq = torch.stack(ms) if need_m else None
        return torch.stack(outs), torch.stack(spikes), u, m_seq

    @torch.no_grad()
    def _update_mp_init(self, run: LIFRun) -> None:
        if run.mp_stat is not None:  # reduced inside the kernel (Triton)
            total, count = run.mp_stat
        else:
            fired = None
            if self.mp_init_stat == "active":
                fired = run.fired if run.fired is not None else run.spikes.amax(dim=0) > 0
            total, count = F.mp_init_statistic(run.u_last, fired)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            both = torch.stack([total.float(), count.float()])
            dist.all_reduce(both)
            total, count = both[0], both[1]
        self.mp_init_mean.copy_(F.running_mean_update(self.mp_init_mean, total, count, self.mp_init_momentum))

    def extra_repr(self) -> str:
        return (
            f"sg_mode={self.sg_mode}, reset={self.reset_mode}, tau={self.tau.item():.4g}, "
            f"v_threshold={self.v_threshold.item():.4g}, learn_tau={self.learn_tau}, "
            f"learn_threshold={self.learn_threshold}, detach_reset={self.detach_reset}, "
            f"mp_init={self.mp_init}, mp_init_mean={self.mp_init_mean.item():.4g}, backend={self.backend}"
        )
