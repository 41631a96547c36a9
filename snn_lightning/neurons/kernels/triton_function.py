"""The autograd Function of the Triton backend: launches ``triton_lif.py``'s two kernels.

τ and V_thr arrive as float32 tensors and go to the kernels through a two-element device buffer
(no ``.item()``, so no host synchronisation); their gradients come back as per-block partial sums
that one ``torch.sum`` finishes. What is saved for backward is what the fused path saves (``spec.py``):
the packed window bits, or M[1..T] in the input dtype, plus the scalars.
"""
from __future__ import annotations

import torch

from . import triton_lif as TK
from .dispatch import LIFRun
from .function import Plan, compact_u0
from .spec import Needs, n_code_bytes

_SURROGATE_IDS = {"Rectangular": TK.SUR_RECT, "Triangular": TK.SUR_TRI, "Sigmoid": TK.SUR_SIGMOID, "ATan": TK.SUR_ATAN}


def block_size(device: torch.device) -> int:
    """Neurons per program: 1024 on a GPU (8 per thread at 4 warps); small under the interpreter,
    which runs a program as numpy ops, so that tests reach several blocks and a ragged last one."""
    return 1024 if device.type == "cuda" and not TK.INTERPRET else 32


def _surrogate_args(surrogate) -> tuple[int, float]:
    name = type(surrogate).__name__
    param = surrogate.gamma if name in ("Rectangular", "Triangular") else surrogate.alpha
    return _SURROGATE_IDS[name], float(param)


def _launch(kernel, grid, *args, **meta):
    kernel[grid](*args, **meta, num_warps=4, enable_fp_fusion=False)


class LIFTritonFunction(torch.autograd.Function):
    """``(x [T, ...], u0 [...] f32, tau [] f32, v_thr [] f32, plan, want_stat) -> (out, U[T], M, S, stat)``."""

    @staticmethod
    def forward(ctx, x, u0, tau, v_thr, plan: Plan, want_stat: int):
        T = x.shape[0]
        x2 = x.reshape(T, -1)
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        N = x2.shape[1]
        needs = Needs(*ctx.needs_input_grad[:4])
        spec = plan.spec(needs)
        bits = spec.storage == "bits"
        keep_m = plan.keep_m or spec.storage == "m"
        dev, dtype = x.device, x.dtype
        u0c = compact_u0(u0, N).contiguous()
        k = 1.0 / tau
        par = torch.stack([k.detach(), v_thr.detach()]).float()
        out = torch.empty((T, N), dtype=dtype, device=dev)
        u_last = torch.empty((N,), dtype=dtype, device=dev)
        m = torch.empty((T, N), dtype=dtype, device=dev) if keep_m else out
        s = torch.empty((T, N), dtype=dtype, device=dev) if plan.want_spikes else out
        codes = torch.empty((n_code_bytes(spec, T), N), dtype=torch.uint8, device=dev) if bits else out
        BLOCK = block_size(dev)
        nb = triton_cdiv(N, BLOCK)
        stat = torch.empty((2, nb), dtype=torch.float32, device=dev) if want_stat else par
        _launch(TK.lif_fwd_kernel, (nb,), x2, x2.stride(0), u0c, par, out, u_last, m, s, codes, stat,
                T, N, nb, float(spec.half_width),
                AS=spec.sg_mode == "as", HARD=spec.reset == "hard", SCALED=spec.scaled, U0_SCALAR=u0c.dim() == 0,
                KEEP_M=keep_m, WANT_S=plan.want_spikes, BITS=bits, BITS_PER_STEP=spec.bits_per_step,
                STAT=want_stat, BLOCK=BLOCK)

        ctx.spec, ctx.needs, ctx.plan, ctx.shape, ctx.u0_shape = spec, needs, plan, x.shape, u0.shape
        ctx.x_dtype, ctx.u0_dtype, ctx.tau_dtype, ctx.v_dtype = dtype, u0.dtype, tau.dtype, v_thr.dtype
        if spec.storage != "none":
            # a broadcast u0 is a view of the MP-Init buffer, updated in place after this forward: copy the scalar
            u0_keep = (u0c.clone() if u0c.dim() == 0 else u0c) if needs.tau else None
            ctx.save_for_backward(codes if bits else m, u0_keep, par)
        ctx.set_materialize_grads(False)
        m_out = m.view(x.shape) if plan.keep_m else None
        s_out = s.view(x.shape) if plan.want_spikes else None
        stat_out = stat.sum(dim=1) if want_stat else None
        for extra in (m_out, s_out, stat_out):
            if extra is not None:
                ctx.mark_non_differentiable(extra)
        return out.view(x.shape), u_last.view(x.shape[1:]), m_out, s_out, stat_out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_last, *_unused):
        if g_out is None and g_last is None:
            return None, None, None, None, None, None
        spec, needs, plan = ctx.spec, ctx.needs, ctx.plan
        saved, u0c, par = ctx.saved_tensors
        T = ctx.shape[0]
        N = saved.shape[1]
        dev = saved.device
        go = g_out.reshape(T, N).contiguous() if g_out is not None else par
        gl = g_last.reshape(N).contiguous() if g_last is not None else par
        gx = torch.empty((T, N), dtype=ctx.x_dtype, device=dev) if needs.x else par
        gu0 = torch.empty((N,), dtype=torch.float32, device=dev) if needs.u0 else par
        BLOCK = block_size(dev)
        nb = triton_cdiv(N, BLOCK)
        part = torch.zeros((2, nb), dtype=torch.float32, device=dev) if (needs.tau or needs.v) else par
        sur_id, sur_p = _surrogate_args(plan.surrogate)
        _launch(TK.lif_bwd_kernel, (nb,), saved, go, gl, u0c if u0c is not None else par, par, gx, gu0, part,
                T, N, (T - 1) * N, nb, sur_p, 1.0 / spec.gamma,
                AS=spec.sg_mode == "as", HARD=spec.reset == "hard", SCALED=spec.scaled, DETACH=spec.detach,
                U0_SCALAR=u0c is None or u0c.dim() == 0, BITS=spec.storage == "bits",
                BITS_PER_STEP=spec.bits_per_step, SUR=sur_id, HAS_GO=g_out is not None, HAS_GL=g_last is not None,
                NEED_X=needs.x, NEED_U0=needs.u0, NEED_TAU=needs.tau, NEED_V=needs.v, BLOCK=BLOCK)
        gx_out = gx.view(ctx.shape) if needs.x else None
        gu0_out = gu0.view(ctx.u0_shape).to(ctx.u0_dtype) if needs.u0 else None
        # gτ = −k·Σ gM·(M − U[t−1]); gV is the sum itself
        gtau = (-par[0] * part[0].sum()).to(ctx.tau_dtype) if needs.tau else None
        gv = part[1].sum().to(ctx.v_dtype) if needs.v else None
        return gx_out, gu0_out, gtau, gv, None, None


def triton_cdiv(n: int, block: int) -> int:
    return (n + block - 1) // block


def run_triton(lif, x, u0, tau, v_thr, need_m: bool, want_stat: bool) -> LIFRun:
    """One call on the Triton kernels; ``want_stat`` asks for MP-Init's (sum, count), reduced in the kernel."""
    plan = Plan(lif, want_spikes=need_m, want_fired=False, keep_m=need_m, compiled=False)
    stat_mode = TK.STAT_NONE
    if want_stat:
        stat_mode = TK.STAT_ACTIVE if lif.mp_init_stat == "active" else TK.STAT_ALL
    out, u_last, m_seq, spikes, stat = LIFTritonFunction.apply(x, u0, tau, v_thr, plan, stat_mode)
    mp_stat = (stat[0], stat[1]) if stat is not None else None
    return LIFRun(out, u_last, m_seq, spikes, None, mp_stat)


__all__ = ["LIFTritonFunction", "block_size", "run_triton"]
