"""The fused multi-step LIF path: one custom autograd Function over the whole sequence.

The forward runs all T steps without recording autograd; the backward runs the reverse-time
recurrence by hand (``_fused_kernels.py`` has the maths) and returns gradients to the input, to the
initial membrane (when it requires grad), and to τ and V_thr (the raw parameters then get theirs
through autograd of ``LIF.tau`` / ``LIF.v_threshold``). ``LIF`` takes this path for backend "auto"
(training and inference alike: without autograd the eager forward gives the reference's bits).

What is saved for backward, chosen per call (numbers in ``benchmarks/results.md``):

* ``"bits"``: when the surrogate is rectangular, neither τ nor V_thr needs a gradient (fixed neuron
  parameters, as in spikingjelly's ``LIFNode``), and the reset needs no membrane value (soft reset,
  or hard reset with ``detach_reset``): the surrogate-window bit (and, for hard reset, the spike
  bit) of every step, packed along time into uint8 — one byte per neuron for T ≤ 8 (T ≤ 4 hard),
  1/16 of a float32 membrane sequence at T = 4.
* ``"m"``: otherwise, the pre-fire membrane M[1..T] in the input dtype, once. dL/dτ needs
  M[t] − U[t−1] everywhere and dL/dV_thr needs M inside the window, so real values must stay (float16
  would break the 1e-5 agreement with the reference). Spike, surrogate derivative and U[t−1] are
  rebuilt from M elementwise — cheaper than reading more saved tensors. It is also the monitor's M.
* Never bool tensors: a comparison into bool plus a conversion cost 4.5x a comparison written
  straight into a float tensor here, and uint8 arithmetic made inductor's CPU kernel 18x slower.

Compilation: ``torch.compile`` (inductor) versions of both recurrences are opt-in — set
``SNN_LIGHTNING_COMPILE=1`` or call ``set_compile(True)`` — because the first compile of a
configuration takes 30–50 s on 2 cores (seconds once inductor's on-disk cache has it), which unit
tests and short runs should not pay. Each static configuration (SG mode, reset, surrogate, storage,
which gradients, T) is compiled once with the neuron count dynamic, so all layers of a network
share one kernel per configuration. A configuration whose compilation fails is logged once and
runs eager from then on.
"""
from __future__ import annotations

import copy
import logging
import os
import threading
import types
from typing import Callable, Optional

import torch

from . import _fused_kernels as K

log = logging.getLogger(__name__)

_ENV = "SNN_LIGHTNING_COMPILE"
_compile_flag: Optional[bool] = None  # None: read the environment variable
_lock = threading.Lock()
_compiled: dict = {}  # key -> compiled callable, or None after a failure
_warned: set = set()


def set_compile(enabled: Optional[bool]) -> None:
    """Turn the inductor-compiled kernels on or off (None: follow ``SNN_LIGHTNING_COMPILE``)."""
    global _compile_flag
    _compile_flag = None if enabled is None else bool(enabled)


def compile_enabled() -> bool:
    if _compile_flag is not None:
        return _compile_flag
    return os.environ.get(_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def fused_available() -> bool:
    """The fused path always exists (eager kernels); compiled kernels are an opt-in on top."""
    return True


def compile_failures() -> list:
    """Configurations whose compilation failed (they run eager)."""
    return [key for key, fn in _compiled.items() if fn is None]


def clear_compile_cache() -> None:
    with _lock:
        _compiled.clear()
        _called.clear()
        _warned.clear()


# -- surrogate handling -----------------------------------------------------------------------

def _surrogate_key(surrogate):
    """A hashable key for built-in shapes (their hyperparameters are plain floats); None otherwise."""
    from ..surrogates.shapes import SURROGATES

    cls = type(surrogate)
    if cls not in SURROGATES.values():
        return None
    params = tuple(sorted((k, v) for k, v in vars(surrogate).items()
                          if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)))
    return (cls.__name__, params)


_sur_copies: dict = {}


def _derivative_for_compile(surrogate, key) -> Callable:
    """A private copy's ``derivative`` (so later edits of the live module can't go stale in a cache)."""
    fn = _sur_copies.get(key)
    if fn is None:
        fn = copy.deepcopy(surrogate).derivative
        _sur_copies[key] = fn
    return fn


# -- compile cache ----------------------------------------------------------------------------

def _get_compiled(key, build: Callable[[], Callable]) -> Optional[Callable]:
    # Inductor writes a serial CPU kernel when it compiles under 1 thread, and its on-disk FX-graph
    # cache does not key on the thread count, so a later process with 2 threads would load the serial
    # kernel (measured 1.4 ms instead of 0.7 ms). Single-thread compiles therefore stay out of that
    # cache (the C++ build cache, keyed on the generated source, still applies).
    threads = key[-1]  # keys end with the intra-op thread count (see _run_compiled)
    options = {"cpp.threads": threads}
    if threads == 1:
        options["fx_graph_cache"] = False
    with _lock:
        if key in _compiled:
            return _compiled[key]
        try:
            fn = torch.compile(_own_code(build(), len(_compiled)), dynamic=None, fullgraph=True,
                               options=options)
        except Exception as exc:  # pragma: no cover - torch.compile itself unavailable
            _note_failure(key, exc)
            return None
        _compiled[key] = fn
        return fn


def _own_code(fn: Callable, serial: int) -> Callable:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps its cache per code object, and every configuration's kernel is a closure over the same
    source function; without this, the configurations would share one cache (and its recompile limit).
    """
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_lif{serial}")
    own = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    own.__kwdefaults__ = fn.__kwdefaults__
    return own


def _note_failure(key, exc) -> None:
    _compiled[key] = None
    if "warned" not in _warned:
        _warned.add("warned")
        log.warning("snn_lightning: compiling the fused LIF kernels failed (%s: %s); using the eager "
                    "kernels instead (reported once).", type(exc).__name__, exc)


def _mark_dynamic(*tensors) -> None:
    for t in tensors:
        if t is not None and t.dim() >= 1 and t.shape[-1] >= 2:
            torch._dynamo.mark_dynamic(t, t.dim() - 1)


_called: set = set()  # keys whose kernel has run once (and so was traced with a dynamic N)


def _run_compiled(key, build, args, eager: Callable):
    key = (*key, torch.get_num_threads())
    fn = _get_compiled(key, build)
    if fn is not None:
        try:
            if key not in _called:  # later calls reuse the dynamic-N graph without marking
                _mark_dynamic(*[a for a in args if isinstance(a, torch.Tensor) and a.dim() >= 1])
            res = fn(*args)
            _called.add(key)
            return res
        except Exception as exc:
            with _lock:
                _note_failure(key, exc)
    return eager()


# -- eager kernels, in cache-sized chunks of neurons on the CPU -------------------------------

CPU_CHUNK = 1 << 16  # neurons per chunk and thread: a [T, chunk] float32 temporary stays in L2 for T ≤ 8


def _chunk_size(t: torch.Tensor, n: int) -> int:
    """The eager kernels are strings of elementwise passes; on the CPU, running them on column
    chunks keeps the temporaries in cache (measured 1.7x on [4, 1M] float32, 1 thread). Each op is
    split over the intra-op threads, so the chunk grows with their number (fewer fork/joins, the
    same bytes per core). On a GPU one launch per op over everything is better."""
    if t.device.type != "cpu":
        return n
    c = CPU_CHUNK * max(1, torch.get_num_threads())
    return c if n > 2 * c else n


def _forward_eager(spec, x2, u0c, k, v, keep_m, want):
    T, N = x2.shape
    C = _chunk_size(x2, N)
    if C >= N:
        return K.forward_eager(spec, x2, u0c, k, v, keep_m, want)
    want_spikes, want_fired = want
    out = torch.empty_like(x2)
    m_all = torch.empty_like(x2) if keep_m else None
    s_all = (torch.empty_like(x2) if spec.scaled else out) if want_spikes else None
    codes = (torch.empty((K.n_code_bytes(spec, T), N), dtype=torch.uint8, device=x2.device)
             if spec.storage == "bits" else None)
    fired = torch.empty((N,), dtype=torch.bool, device=x2.device) if want_fired else None
    u_last = torch.empty((N,), dtype=x2.dtype, device=x2.device)
    for j in range(0, N, C):
        sl = slice(j, j + C)
        dest = tuple(None if b is None else (b[sl] if b.dim() == 1 else b[:, sl])
                     for b in (out, m_all, codes, s_all, fired, u_last))
        K.forward_eager(spec, x2[:, sl], u0c if u0c.dim() == 0 else u0c[sl], k, v, keep_m, want, dest)
    return out, m_all, codes, s_all, fired, u_last


def _backward_eager(spec, needs, dfn, go, gl, saved, u0c, k, v, T, N, dtype):
    C = _chunk_size(saved, N)
    if C >= N:
        return K.backward_eager(spec, needs, dfn, go, gl, saved, u0c, k, v, T, N, dtype)
    gx = torch.empty((T, N), dtype=dtype, device=saved.device) if needs.x else None
    gu0 = torch.empty((N,), dtype=dtype, device=saved.device) if needs.u0 else None
    gtau = gv = None
    for j in range(0, N, C):
        sl = slice(j, j + C)
        n = min(C, N - j)
        u0s = u0c if (u0c is None or u0c.dim() == 0) else u0c[sl]
        _, gu0_c, gtau_c, gv_c = K.backward_eager(
            spec, needs, dfn, None if go is None else go[:, sl], None if gl is None else gl[sl], saved[:, sl],
            u0s, k, v, T, n, dtype, gx_out=None if gx is None else gx[:, sl])
        if gu0 is not None:
            gu0[sl].copy_(gu0_c)
        if gtau_c is not None:
            gtau = gtau_c if gtau is None else gtau + gtau_c
        if gv_c is not None:
            gv = gv_c if gv is None else gv + gv_c
    return gx, gu0, gtau, gv


# -- the autograd Function --------------------------------------------------------------------

class _Plan:
    """What one call needs besides tensors (kept out of the tensor arguments of the Function)."""

    __slots__ = ("sg_mode", "reset", "detach", "scaled", "surrogate", "skey", "gamma", "want_spikes", "want_fired",
                 "keep_m", "compiled")

    def __init__(self, lif, want_spikes: bool, want_fired: bool, keep_m: bool, compiled: bool):
        self.sg_mode = lif.sg_mode
        self.reset = lif.reset_mode
        self.detach = lif.detach_reset
        self.scaled = lif.sg_mode == "trsg" and lif.scaled_output
        self.surrogate = lif.surrogate
        self.skey = _surrogate_key(lif.surrogate) if compiled else None  # None: eager only
        self.gamma = K.rectangular_gamma(lif.surrogate)
        self.want_spikes = want_spikes
        self.want_fired = want_fired
        self.keep_m = keep_m
        self.compiled = compiled


def _spec(plan: _Plan, needs: K.Needs, requires: bool) -> K.Spec:
    gamma = plan.gamma
    storage = "none"
    if requires:
        bits_ok = (gamma is not None and not needs.tau and not needs.v
                   and (plan.reset == "soft" or plan.detach))
        storage = "bits" if bits_ok else "m"
    return K.Spec(plan.sg_mode, plan.reset, plan.detach, plan.scaled, storage,
                  2 if plan.reset == "hard" else 1, gamma is not None,
                  (gamma or 1.0) / 2, gamma or 1.0)


def _compact_u0(u0: torch.Tensor, n: int) -> torch.Tensor:
    """``[]`` for a broadcast scalar (MP-Init's buffer expanded), else the flat ``[N]`` state."""
    if u0.dim() == 0:
        return u0
    if all(s == 0 for s in u0.stride()):
        return u0.as_strided((), ())
    return u0.reshape(n)


class LIFFusedFunction(torch.autograd.Function):
    """``(x [T, ...], u0 [...], tau [], v_thr [], plan) -> (out, U[T], M | None, S | None, fired | None)``."""

    @staticmethod
    def forward(ctx, x, u0, tau, v_thr, plan: _Plan):
        T = x.shape[0]
        x2 = x.reshape(T, -1)
        N = x2.shape[1]
        needs = K.Needs(*ctx.needs_input_grad[:4])
        requires = any(needs)
        spec = _spec(plan, needs, requires)
        keep_m = plan.keep_m or spec.storage == "m"
        want = (plan.want_spikes, plan.want_fired)
        k = 1.0 / tau
        u0c = _compact_u0(u0, N)
        if plan.compiled and plan.skey is not None:
            skey = plan.skey
            key = ("fwd", spec, skey, keep_m, want, u0c.dim())
            res = _run_compiled(key, lambda: K.make_forward_functional(spec, keep_m, want),
                                (x2, u0c, k.detach(), v_thr.detach()),
                                lambda: _forward_eager(spec, x2, u0c, k, v_thr, keep_m, want))
        else:
            res = _forward_eager(spec, x2, u0c, k, v_thr, keep_m, want)
        out, m, codes, spikes, fired, u_last = res

        ctx.spec, ctx.needs, ctx.plan = spec, needs, plan
        ctx.shape = x.shape
        ctx.u0_shape = u0.shape
        if requires:
            saved = codes if spec.storage == "bits" else m
            # a broadcast u0 is a view of the MP-Init buffer, which is updated in place after this
            # forward: keep a private copy of the scalar
            u0_keep = (u0c.clone() if u0c.dim() == 0 else u0c) if needs.tau else None
            ctx.save_for_backward(saved, u0_keep, k, v_thr)
        ctx.set_materialize_grads(False)

        out = out.view(x.shape)
        u_last = u_last.view(x.shape[1:])
        m = m.view(x.shape) if (m is not None and plan.keep_m) else None
        spikes = spikes.view(x.shape) if spikes is not None else None
        if fired is not None:
            fired = (fired if fired.dtype == torch.bool else fired > 0).view(x.shape[1:])
        for extra in (m, spikes, fired):
            if extra is not None:
                ctx.mark_non_differentiable(extra)
        return out, u_last, m, spikes, fired

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_last, *_unused):
        spec, needs, plan = ctx.spec, ctx.needs, ctx.plan
        saved, u0c, k, v = ctx.saved_tensors
        T = ctx.shape[0]
        if g_out is None and g_last is None:
            return None, None, None, None, None
        dtype = v.dtype
        N = saved.shape[1]
        go = g_out.reshape(T, N) if g_out is not None else None
        gl = g_last.reshape(N) if g_last is not None else None
        if go is not None and not go.is_contiguous():
            go = go.contiguous()
        skey = plan.skey
        if plan.compiled and skey is not None:
            dfn = _derivative_for_compile(plan.surrogate, skey)
            key = ("bwd", spec, skey, needs, go is not None, gl is not None, T, None if u0c is None else u0c.dim())
            res = _run_compiled(
                key,
                lambda: K.make_backward_functional(spec, needs, dfn, go is not None, gl is not None, T),
                (go, gl, saved, u0c, k.detach(), v.detach()),
                lambda: _backward_eager(spec, needs, plan.surrogate.derivative, go, gl, saved, u0c, k, v, T, N, dtype),
            )
        else:
            res = _backward_eager(spec, needs, plan.surrogate.derivative, go, gl, saved, u0c, k, v, T, N, dtype)
        gx, gu0, gtau, gv = res
        if gx is not None:
            gx = gx.view(ctx.shape)
        if gu0 is not None:
            gu0 = gu0.reshape(ctx.u0_shape) if gu0.dim() else gu0.expand(ctx.u0_shape)
        if gtau is not None:
            gtau = gtau.reshape(())
        if gv is not None:
            gv = gv.reshape(())
        return gx, gu0, gtau, gv, None


def lif_fused(lif, x, u0, tau, v_thr, need_m):
    """The fused path for ``LIF._run``: returns ``(out, spikes | None, U[T], M | None, fired | None)``.

    ``spikes`` are returned when the monitor needs them, ``fired`` (bool, per sample and neuron) when
    the MP-Init "active" statistic does.
    """
    want_fired = bool(lif.training and lif.mp_init and lif.mp_init_stat == "active")
    plan = _Plan(lif, want_spikes=need_m, want_fired=want_fired, keep_m=need_m, compiled=compile_enabled())
    out, u_last, m, spikes, fired = LIFFusedFunction.apply(x, u0, tau, v_thr, plan)
    return out, spikes, u_last, m, fired


def fused_supports(lif, x, u0) -> bool:
    """Cases the fused path leaves to the reference loop."""
    if x.shape[0] == 0 or x.numel() == 0:
        return False
    if tuple(u0.shape) != tuple(x.shape[1:]):
        return False
    if not (x.dtype.is_floating_point and u0.dtype == x.dtype):
        return False
    return True


__all__ = ["LIFFusedFunction", "lif_fused", "fused_available", "fused_supports", "set_compile",
           "compile_enabled", "compile_failures", "clear_compile_cache"]
