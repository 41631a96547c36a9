"""The fused multi-step LIF path: one custom autograd Function over the whole sequence.

The forward runs all T steps without recording autograd; the backward runs the reverse-time
recurrence by hand (``eager.py`` has the maths) and returns gradients to the input, to the initial
membrane (when it requires grad), and to τ and V_thr (the raw parameters then get theirs through
autograd of ``LIF.tau`` / ``LIF.v_threshold``). The kernels are the eager ones (backend ``"fused"``)
or their inductor-compiled versions from ``COMPILE_CACHE`` (backend ``"compiled"``).
"""
from __future__ import annotations

import torch

from ...errors import InvalidValue
from . import eager as E
from .compiled import COMPILE_CACHE
from .spec import Needs, make_spec, rectangular_gamma, surrogate_key


class Plan:
    """What one call needs besides tensors (kept out of the tensor arguments of the Function)."""

    __slots__ = ("sg_mode", "reset", "detach", "scaled", "surrogate", "skey", "gamma", "want_spikes", "want_fired",
                 "keep_m", "compiled", "when_ready")

    def __init__(self, lif, want_spikes: bool, want_fired: bool, keep_m: bool, compiled, when_ready: bool = False):
        self.sg_mode = lif.sg_mode
        self.reset = lif.reset_mode
        self.detach = lif.detach_reset
        self.scaled = lif.emits_scaled
        self.surrogate = lif.surrogate
        self.skey = surrogate_key(lif.surrogate) if compiled else None
        if compiled and self.skey is None:  # the surrogate was swapped after construction (see check_backend)
            raise InvalidValue(f"backend='compiled' compiles the built-in surrogates only, got "
                             f"{type(lif.surrogate).__name__} (backend='fused' runs any surrogate)")
        self.gamma = rectangular_gamma(lif.surrogate)
        self.want_spikes = want_spikes
        self.want_fired = want_fired
        self.keep_m = keep_m
        self.compiled = compiled
        self.when_ready = when_ready  # compiled kernels only once a background process has warmed them

    def spec(self, needs: Needs):
        return make_spec(self.sg_mode, self.reset, self.detach, self.scaled, self.gamma, needs)


def compact_u0(u0: torch.Tensor, n: int) -> torch.Tensor:
    """``[]`` for a broadcast scalar (MP-Init's buffer expanded), else the flat ``[N]`` state."""
    if u0.dim() == 0:
        return u0
    if all(s == 0 for s in u0.stride()):
        return u0.as_strided((), ())
    return u0.reshape(n)


class LIFFusedFunction(torch.autograd.Function):
    """``(x [T, ...], u0 [...], tau [], v_thr [], plan) -> (out, U[T], M | None, S | None, fired | None)``."""

    @staticmethod
    def forward(ctx, x, u0, tau, v_thr, plan: Plan):
        T = x.shape[0]
        x2 = x.reshape(T, -1)
        N = x2.shape[1]
        needs = Needs(*ctx.needs_input_grad[:4])
        spec = plan.spec(needs)
        keep_m = plan.keep_m or spec.storage == "m"
        want = (plan.want_spikes, plan.want_fired)
        k = 1.0 / tau
        u0c = compact_u0(u0, N)
        if plan.compiled and plan.skey is not None:
            key = ("fwd", spec, plan.skey, keep_m, want, u0c.dim())
            res = COMPILE_CACHE.run(key, ("fwd", spec, keep_m, want), (x2, u0c, k.detach(), v_thr.detach()),
                                    lambda: E.forward_chunked(spec, x2, u0c, k, v_thr, keep_m, want),
                                    when_ready=plan.when_ready)
        else:
            res = E.forward_chunked(spec, x2, u0c, k, v_thr, keep_m, want)
        out, m, codes, spikes, fired, u_last = res

        ctx.spec, ctx.needs, ctx.plan = spec, needs, plan
        ctx.shape = x.shape
        ctx.u0_shape = u0.shape
        if spec.storage != "none":
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

        def eager():
            return E.backward_chunked(spec, needs, plan.surrogate.derivative, go, gl, saved, u0c, k, v, T, N, dtype)

        if plan.compiled and plan.skey is not None:
            key = ("bwd", spec, plan.skey, needs, go is not None, gl is not None, T, None if u0c is None else u0c.dim())
            recipe = ("bwd", spec, needs, plan.surrogate, plan.skey, go is not None, gl is not None, T)
            res = COMPILE_CACHE.run(key, recipe, (go, gl, saved, u0c, k.detach(), v.detach()), eager,
                                    when_ready=plan.when_ready)
        else:
            res = eager()
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


def run_fused(lif, x, u0, tau, v_thr, need_m: bool, want_fired: bool, compiled: bool, when_ready: bool = False):
    """``(out, U[T], M | None, S | None, fired | None)`` through the fused Function (``when_ready``: the
    compiled kernels once ready, the eager ones until then)."""
    plan = Plan(lif, want_spikes=need_m, want_fired=want_fired, keep_m=need_m, compiled=compiled or when_ready,
                when_ready=when_ready)
    return LIFFusedFunction.apply(x, u0, tau, v_thr, plan)


__all__ = ["LIFFusedFunction", "Plan", "compact_u0", "run_fused"]
