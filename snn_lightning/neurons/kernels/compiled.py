"""Inductor-compiled LIF kernels and the one cache that holds them.

``make_*_functional`` write the recurrences of ``eager.py`` in out-of-place form, the input of
``torch.compile`` (inductor fuses the whole unrolled T-loop into one or two loops over N).

``CompileCache`` compiles each static configuration (Spec, surrogate, storage, which gradients, T) once
with the neuron count dynamic, so all layers of a network share one kernel per configuration. A
configuration whose compilation fails is logged once and runs the eager kernels from then on. The first
compile of a configuration takes 5–50 s on 2 cores, a few seconds once the persistent on-disk cache
(``inductor_cache.py``) has it; ``backend="auto"`` therefore takes these kernels on the CPU only once
they are ready (``warmup.py``).
"""
from __future__ import annotations

import copy
import hashlib
import logging
import threading
import types
from typing import Callable, Optional

import torch

from . import inductor_cache
from .spec import Needs, Spec, reset_u, sg_arg, steps_per_byte

Tensor = torch.Tensor
log = logging.getLogger(__name__)


# -- the recurrences in out-of-place form -------------------------------------------------------

def make_forward_functional(spec: Spec, keep_m: bool, want: tuple[bool, bool]) -> Callable:
    """The forward recurrence in out-of-place form (for ``torch.compile``)."""
    want_spikes, want_fired = want
    per = steps_per_byte(spec)

    def fwd(x: Tensor, u0: Tensor, k: Tensor, v: Tensor):
        T = x.shape[0]
        u = u0
        outs, ms, ss, codes = [], [], [], []
        code = None
        fired = None
        for t in range(T):
            m = u + (x[t] - u) * k
            xa = sg_arg(m, v, spec.sg_mode)
            s = (xa > 0).to(x.dtype)
            outs.append(s * v if spec.scaled else s)
            if keep_m:
                ms.append(m)
            if want_spikes:
                ss.append(s)
            if want_fired:
                fired = s if fired is None else torch.maximum(fired, s)
            if spec.storage == "bits":
                # accumulate in the float dtype and narrow once: uint8 arithmetic vectorizes
                # badly in inductor's CPU code (numbers: benchmarks/results.md, "No bool tensors")
                shift = (t % per) * spec.bits_per_step
                c = torch.where(xa.abs() < spec.half_width, float(1 << shift), 0.0)
                if spec.bits_per_step == 2:
                    c = c + s * float(1 << (shift + 1))
                code = c if code is None else code + c
                if t % per == per - 1 or t == T - 1:
                    codes.append(code.to(torch.uint8))
                    code = None
            u = reset_u(m, s, v, spec.reset)
        out = torch.stack(outs)
        m_all = torch.stack(ms) if keep_m else None
        s_all = torch.stack(ss) if want_spikes else None
        c_all = torch.stack(codes) if codes else None
        return out, m_all, c_all, s_all, fired, u

    return fwd


def make_backward_functional(spec: Spec, needs: Needs, dfn, has_g_out: bool, has_g_last: bool, T: int) -> Callable:
    """The reverse-time recurrence in out-of-place form, one step at a time (for ``torch.compile``).

    ``T`` is static (the loop is unrolled); N stays dynamic.
    """
    hard = spec.reset == "hard"

    def bwd(g_out, g_last, saved, u0, k, v):
        return _bwd_body(T, g_out, g_last, saved, u0, k, v)

    def step_terms(saved, t, per, v, dtype):
        if spec.storage == "bits":
            cb = saved[t // per].to(torch.int32)
            shift = (t % per) * spec.bits_per_step
            win = ((cb >> shift) & 1).to(dtype)
            s = ((cb >> (shift + 1)) & 1).to(dtype) if spec.bits_per_step == 2 else None
            fp = win / spec.gamma
            return None, s, fp
        mt = saved[t]
        xa = sg_arg(mt, v, spec.sg_mode)
        return mt, (xa > 0).to(mt.dtype), dfn(xa)

    def _bwd_body(T, g_out, g_last, saved, u0, k, v):
        dtype = v.dtype
        per = steps_per_byte(spec)
        gu = g_last if has_g_last else None
        one_minus_k = 1.0 - k
        gxs = [None] * T
        gtau_acc = None
        gv_acc = None
        nxt = step_terms(saved, T - 1, per, v, dtype)
        for t in range(T - 1, -1, -1):
            mt, s, fp = nxt
            if t > 0:
                nxt = step_terms(saved, t - 1, per, v, dtype)
            a = fp if spec.sg_mode == "as" else fp / v
            go = g_out[t] if has_g_out else None
            gs = None
            if go is not None:
                gs = go * v if spec.scaled else go
            dUdS = None
            if not spec.detach:
                dUdS = -mt if hard else -v
                if gu is not None:
                    gs = gu * dUdS if gs is None else gs + gu * dUdS
            if gu is None:
                gm = gs * a if gs is not None else torch.zeros_like(a)
            else:
                direct = gu * (1.0 - s) if hard else gu
                gm = direct + gs * a if gs is not None else direct
            if needs.v:
                term = None
                if gs is not None:
                    dSdV = -fp if spec.sg_mode == "as" else -(mt * fp) / (v * v)
                    term = gs * dSdV
                if spec.scaled and go is not None:
                    term = go * s if term is None else term + go * s
                if not hard and gu is not None:
                    term = -(gu * s) if term is None else term - gu * s
                if term is not None:
                    ts = term.sum()
                    gv_acc = ts if gv_acc is None else gv_acc + ts
            if needs.tau:
                if t > 0:
                    mp, sp, _ = nxt
                    u_prev = reset_u(mp, sp, v, spec.reset)
                else:
                    u_prev = u0
                ts = (gm * (mt - u_prev)).sum()
                gtau_acc = ts if gtau_acc is None else gtau_acc + ts
            if needs.x:
                gxs[t] = gm * k
            gu = gm * one_minus_k
        gx = torch.stack(gxs) if needs.x else None
        gtau = -k * gtau_acc if needs.tau else None
        gv = gv_acc if needs.v else None
        if needs.v and gv is None:
            gv = torch.zeros((), dtype=dtype, device=v.device)
        gu0 = gu if needs.u0 else None
        return gx, gu0, gtau, gv

    return bwd


# -- the cache ---------------------------------------------------------------------------------

class CompileCache:
    """Compiled kernels per configuration key, failures, and private copies of surrogate derivatives.

    One instance (``COMPILE_CACHE``) serves every ``LIF(backend="compiled")`` in the process: a kernel
    compiled for one layer is the kernel of every layer with the same configuration.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._fns: dict = {}  # key -> compiled callable, or None after a failure
        self._called: set = set()  # keys whose kernel has run once (and so was traced with a dynamic N)
        self._derivatives: dict = {}
        self._warned = False

    def failures(self) -> list:
        """Configurations whose compilation failed (they run eager)."""
        return [key for key, fn in self._fns.items() if fn is None]

    def clear(self) -> None:
        with self._lock:
            self._fns.clear()
            self._called.clear()
            self._derivatives.clear()
            self._warned = False

    def derivative(self, surrogate, key) -> Callable:
        """A private copy's ``derivative`` (so later edits of the live module can't go stale in a kernel)."""
        fn = self._derivatives.get(key)
        if fn is None:
            fn = copy.deepcopy(surrogate).derivative
            self._derivatives[key] = fn
        return fn

    def run(self, key, recipe: tuple, args, eager: Callable, when_ready: bool = False):
        """The compiled kernel for ``key`` (built from ``recipe`` by ``build_kernel`` on first use) on
        ``args``; ``eager()`` if it fails.

        ``when_ready``: compile in this process only once a background process has put the kernel in the
        persistent cache (``warmup.py``); until then, and if that fails, ``eager()``.
        """
        key = (*key, torch.get_num_threads())
        if when_ready and key not in self._fns:
            from .warmup import WARMUP

            if not WARMUP.ready(key, recipe, args):
                return eager()
            with WARMUP.timing_switch():
                return self.run(key[:-1], recipe, args, eager)
        fn = self._get(key, lambda: build_kernel(recipe, self))
        if fn is not None:
            try:
                if key not in self._called:  # later calls reuse the dynamic-N graph without marking
                    _mark_dynamic(*[a for a in args if isinstance(a, torch.Tensor) and a.dim() >= 1])
                res = fn(*args)
                self._called.add(key)
                return res
            except Exception as exc:
                with self._lock:
                    self._note_failure(key, exc)
        return eager()

    def _get(self, key, build: Callable[[], Callable]) -> Optional[Callable]:
        # Inductor writes a serial CPU kernel when it compiles under 1 thread, and its on-disk FX-graph
        # cache does not key on the thread count, so a process with 2 threads reading a 1-thread entry
        # would load the serial kernel (about half the speed: benchmarks/results.md, "Compiled kernels").
        # The persistent folder is per thread count (inductor_cache.py), so there that cache is safe; in a
        # folder of unknown thread count, single-thread compiles stay out of it (the C++ build cache,
        # keyed on the generated source, still applies).
        threads = key[-1]
        options = {"cpp.threads": threads}
        folder_threads = inductor_cache.ensure(threads)
        if folder_threads is None:
            if threads == 1:
                options["fx_graph_cache"] = False
        else:  # the thread count changed since this process chose its folder: keep that folder's entries true
            options["fx_graph_cache"] = folder_threads == threads
        with self._lock:
            if key in self._fns:
                return self._fns[key]
            try:
                fn = torch.compile(_own_code(build(), key), dynamic=None, fullgraph=True, options=options)
            except Exception as exc:  # pragma: no cover - torch.compile itself unavailable
                self._note_failure(key, exc)
                return None
            self._fns[key] = fn
            return fn

    def _note_failure(self, key, exc) -> None:
        self._fns[key] = None
        if not self._warned:
            self._warned = True
            log.warning("snn_lightning: compiling the fused LIF kernels failed (%s: %s); using the eager "
                        "kernels instead (reported once).", type(exc).__name__, exc)


def build_kernel(recipe: tuple, cache: CompileCache) -> Callable:
    """The uncompiled kernel a recipe names (a recipe pickles, so a background process can build it too):
    ``("fwd", spec, keep_m, want)`` or ``("bwd", spec, needs, surrogate, skey, has_g_out, has_g_last, T)``."""
    if recipe[0] == "fwd":
        _, spec, keep_m, want = recipe
        return make_forward_functional(spec, keep_m, want)
    _, spec, needs, surrogate, skey, has_g_out, has_g_last, T = recipe
    return make_backward_functional(spec, needs, cache.derivative(surrogate, skey), has_g_out, has_g_last, T)


def _own_code(fn: Callable, key) -> Callable:
    """A copy of ``fn`` with its own code object, named after ``key``.

    Dynamo keeps its cache per code object, and every configuration's kernel is a closure over the same
    source function; without this, the configurations would share one cache (and its recompile limit).
    The name is a digest of the key, so every process names a configuration's kernel alike.
    """
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_lif_{digest}")
    own = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    own.__kwdefaults__ = fn.__kwdefaults__
    return own


def _mark_dynamic(*tensors) -> None:
    for t in tensors:
        if t is not None and t.dim() >= 1 and t.shape[-1] >= 2:
            torch._dynamo.mark_dynamic(t, t.dim() - 1)


COMPILE_CACHE = CompileCache()

__all__ = ["CompileCache", "COMPILE_CACHE", "build_kernel", "make_forward_functional", "make_backward_functional"]
