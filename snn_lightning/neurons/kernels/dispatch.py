"""Which kernels run one LIF call, and what a call hands back.

The backend is chosen once per neuron, at construction (``LIF(backend=...)``):

* ``"torch"``: the per-timestep reference loop under autograd (``LIF.reference``), the ground truth;
* ``"fused"``: one autograd Function over all T with eager in-place kernels (``function.py``, ``eager.py``);
* ``"compiled"``: the same Function with inductor-compiled kernels (``compiled.py``); the config's
  ``compile_neurons=true`` means this backend for every LIF;
* ``"triton"``: one forward and one backward Triton kernel over all T (``triton_lif.py``); on a CPU
  tensor only under Triton's interpreter (``TRITON_INTERPRET=1``). It runs or raises one line why —
  it never falls back to another backend;
* ``"auto"``: ``"triton"`` for CUDA tensors when the configuration has a Triton kernel, ``"fused"``
  otherwise — and the reference loop while a whole-model ``torch.compile`` traces the module, so
  that dynamo sees plain tensor ops. On the CPU, with a built-in surrogate, ``"fused"`` switches to
  the compiled kernels for large layers once a background process has compiled them (``warmup.py``;
  ``SNN_LIGHTNING_AUTO_COMPILE=0`` opts out).

Every backend returns a ``LIFRun``; the forward ``monitor`` hook of ``LIF`` is fed from its ``m_seq``
and ``spikes`` fields, which a backend fills only when ``need_m`` asks for them.
"""
from __future__ import annotations

import importlib.util
from typing import NamedTuple, Optional

import torch

from ...errors import InvalidValue
from .spec import surrogate_key

BACKENDS = ("auto", "torch", "fused", "compiled", "triton")
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class LIFRun(NamedTuple):
    """What one multi-step call produced.

    ``out``: the layer output O[1..T]; ``u_last``: U[T] (carries the autograd graph when it needs one);
    ``m_seq``/``spikes``: pre-fire membrane M[1..T] and 0/1 spikes S[1..T], filled when the monitor asks
    (the reference loop always fills ``spikes``); ``fired``: bool "fired at least once" per (sample,
    neuron), when the MP-Init "active" statistic needs it; ``mp_stat``: that statistic's ``(sum, count)``
    already reduced inside the kernel (float32 scalars), when the backend does that (Triton).
    """

    out: torch.Tensor
    u_last: torch.Tensor
    m_seq: Optional[torch.Tensor] = None
    spikes: Optional[torch.Tensor] = None
    fired: Optional[torch.Tensor] = None
    mp_stat: Optional[tuple] = None


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_config_problem(lif) -> Optional[str]:
    """Why this neuron's configuration has no Triton kernel (None when it has one)."""
    if not triton_installed():
        return "backend='triton' needs the triton package, which is not installed"
    if surrogate_key(lif.surrogate) is None:
        return (f"backend='triton' has no kernel for the surrogate {type(lif.surrogate).__name__}; it has "
                f"rectangular, triangular, sigmoid and atan (backend='fused' runs any surrogate)")
    return None


def on_cuda(x: torch.Tensor) -> bool:
    return x.device.type == "cuda"


def triton_tensor_problem(x: torch.Tensor, u0: torch.Tensor) -> Optional[str]:
    """Why these tensors cannot go through the Triton kernels (None when they can)."""
    if x.dtype not in TRITON_DTYPES:
        return f"backend='triton' runs float32, bfloat16 and float16 inputs, got {x.dtype}"
    if tuple(u0.shape) != tuple(x.shape[1:]):
        return f"backend='triton' needs an initial membrane of shape {tuple(x.shape[1:])}, got {tuple(u0.shape)}"
    if not on_cuda(x):
        from . import triton_lif

        if not triton_lif.INTERPRET:
            return (f"backend='triton' got a {x.device.type} tensor: it runs on CUDA, or on the CPU under Triton's "
                    f"interpreter (TRITON_INTERPRET=1 set before snn_lightning's Triton kernels are first imported)")
    return None


def check_backend(lif, backend: str) -> str:
    """Validate ``backend`` for ``lif`` at construction (the configuration part; tensors are checked per call)."""
    if backend not in BACKENDS:
        raise InvalidValue(f"unknown backend {backend!r}; allowed: {list(BACKENDS)}")
    if backend == "triton":
        problem = triton_config_problem(lif)
        if problem:
            raise InvalidValue(problem)
    if backend == "compiled" and surrogate_key(lif.surrogate) is None:
        raise InvalidValue(f"backend='compiled' compiles the built-in surrogates only, got "
                         f"{type(lif.surrogate).__name__} (backend='fused' runs any surrogate)")
    return backend


def _fused_ok(x: torch.Tensor, u0: torch.Tensor) -> bool:
    """The fused Function's own preconditions (other shapes go to the reference loop, which broadcasts)."""
    return tuple(u0.shape) == tuple(x.shape[1:]) and x.dtype.is_floating_point


def resolve(lif, x: torch.Tensor, u0: torch.Tensor) -> str:
    """The backend that runs this call: "torch", "fused", "compiled" or "triton" (raises for triton if it can't)."""
    backend = lif.backend
    if x.numel() == 0:
        return "torch"
    if backend == "triton":
        problem = triton_config_problem(lif) or triton_tensor_problem(x, u0)
        if problem:
            raise InvalidValue(problem)
        return "triton"
    if backend == "auto":
        if torch.compiler.is_compiling():
            return "torch"
        if on_cuda(x) and triton_config_problem(lif) is None and triton_tensor_problem(x, u0) is None:
            return "triton"
        backend = "fused"
    if backend in ("fused", "compiled") and not _fused_ok(x, u0):
        return "torch"
    return backend


def compiles_when_ready(lif, x: torch.Tensor) -> bool:
    """Whether this ``auto`` call on the CPU takes the compiled kernels once a background compile has them
    ready (``warmup.py``; until then the fused eager kernels run): layers of ``warmup.MIN_NEURONS`` neurons
    per call or more, where the compiled kernels pay for their loading."""
    if lif.backend != "auto" or x.device.type != "cpu" or surrogate_key(lif.surrogate) is None:
        return False
    from . import warmup

    return x.numel() // max(x.shape[0], 1) >= warmup.MIN_NEURONS and warmup.auto_compile_enabled()


def cast_state(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``; a broadcast scalar (MP-Init's expanded buffer) is cast before it is expanded again,
    so no full-size tensor is written."""
    if t.dtype == dtype:
        return t
    if t.dim() and all(s == 0 for s in t.stride()):
        return t.as_strided((), ()).to(dtype).expand(t.shape)
    return t.to(dtype)


def run(lif, x, u0, tau, v_thr, need_m: bool) -> LIFRun:
    """One multi-step call of ``lif`` on ``x`` from ``u0`` with the resolved backend.

    ``u0``, ``tau`` and ``v_thr`` may come in the neuron's own dtype: the Triton kernels take them in
    float32 (their state is float32), the other backends in the input's dtype (their arithmetic is).
    """
    which = resolve(lif, x, u0)
    if which == "triton":
        from .triton_function import run_triton

        f32 = torch.float32
        want_stat = bool(lif.training and lif.mp_init)
        return run_triton(lif, x, cast_state(u0, f32), tau.to(f32), v_thr.to(f32), need_m, want_stat)
    if x.dtype.is_floating_point:
        u0, tau, v_thr = cast_state(u0, x.dtype), tau.to(x.dtype), v_thr.to(x.dtype)
    if which == "torch":
        out, spikes, u_last, m_seq = lif.reference(x, u0, tau, v_thr, need_m)
        return LIFRun(out, u_last, m_seq, spikes)
    want_fired = bool(lif.training and lif.mp_init and lif.mp_init_stat == "active")
    from .function import run_fused

    out, u_last, m_seq, spikes, fired = run_fused(lif, x, u0, tau, v_thr, need_m, want_fired, which == "compiled",
                                                  when_ready=which == "fused" and compiles_when_ready(lif, x))
    return LIFRun(out, u_last, m_seq, spikes, fired)


__all__ = ["BACKENDS", "LIFRun", "check_backend", "compiles_when_ready", "resolve", "run", "triton_config_problem", "triton_tensor_problem"]
