"""Triton kernels for the multi-step LIF: one forward and one backward launch over all T.

Each program owns ``BLOCK`` neurons and runs the whole time loop for them with the membrane in
registers, so a layer costs one read of its input and one write of each output per direction —
against some ten elementwise kernels per step on the fused eager path, which a GPU runs launch-bound.
The maths is that of ``eager.py`` (its docstring has the forward and the chain rule); state and
accumulation are float32 whatever the input dtype (float32, bfloat16, float16).

* Forward (``lif_fwd_kernel``): O[t], U[T], and what backward needs (``spec.py``): M[1..T] in the
  input dtype, or the rectangular window (and spike) bits packed along time into uint8. It also
  writes M and S for the monitor when asked, and the MP-Init statistic's sum and count reduced per
  block (a ``[2, n_blocks]`` float32 buffer the host sums), so "fired at least once" never leaves the
  kernel.
* Backward (``lif_bwd_kernel``): the reverse-time recurrence; gradients to the input and to U[0],
  and per-block partial sums of Σ gM·(M − U[t−1]) (for τ) and of the V_thr terms.

The spike test is M/V > 1 (RS, TrSG) or M > V (AS) with IEEE division, and the launcher turns off
FMA contraction: the forward then reproduces the reference's float32 bits. ``INTERPRET`` records
whether these kernels were decorated under Triton's interpreter (``TRITON_INTERPRET=1`` when this
module was first imported), the only way they run on CPU tensors.
"""
from __future__ import annotations

import triton
import triton.language as tl

INTERPRET = bool(triton.knobs.runtime.interpret)

SUR_RECT, SUR_TRI, SUR_SIGMOID, SUR_ATAN = 0, 1, 2, 3
STAT_NONE, STAT_ACTIVE, STAT_ALL = 0, 1, 2
HALF_PI = tl.constexpr(1.5707963267948966)  # a jit function may read only constexpr globals


@triton.jit
def _surrogate_derivative(x, SUR: tl.constexpr, p):
    """f'(x) of ``surrogates/shapes.py``: p is γ (rectangular, triangular) or α (sigmoid, atan)."""
    if SUR == 0:
        d = tl.where(tl.abs(x) < p * 0.5, 1.0 / p, 0.0)
    elif SUR == 1:
        d = tl.maximum(p - tl.abs(x), 0.0) / (p * p)
    elif SUR == 2:
        s = tl.sigmoid(p * x)
        d = p * s * (1.0 - s)
    else:
        z = HALF_PI * p * x
        d = (p * 0.5) / (1.0 + z * z)
    return d


@triton.jit
def _spike(m, v, AS: tl.constexpr):
    """(S as 0/1 float32, surrogate argument x) for membrane m: Eq. 2 with x of Eq. 5 or Eq. 8."""
    if AS:
        xa = m - v
        s = tl.where(m > v, 1.0, 0.0)
    else:
        mv = tl.math.div_rn(m, v)
        xa = mv - 1.0
        s = tl.where(mv > 1.0, 1.0, 0.0)
    return s, xa


@triton.jit
def lif_fwd_kernel(x_ptr, stride_xt, u0_ptr, par_ptr, out_ptr, ulast_ptr, m_ptr, s_ptr, code_ptr, stat_ptr,
                   T, N, n_blocks, half_width,
                   AS: tl.constexpr, HARD: tl.constexpr, SCALED: tl.constexpr, U0_SCALAR: tl.constexpr,
                   KEEP_M: tl.constexpr, WANT_S: tl.constexpr, BITS: tl.constexpr, BITS_PER_STEP: tl.constexpr,
                   STAT: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    k = tl.load(par_ptr)
    v = tl.load(par_ptr + 1)
    if U0_SCALAR:
        u = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(u0_ptr).to(tl.float32)
    else:
        u = tl.load(u0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    fired = tl.zeros([BLOCK], dtype=tl.float32)
    code = tl.zeros([BLOCK], dtype=tl.int32)
    PER: tl.constexpr = 8 // BITS_PER_STEP
    # row pointers advance by one step each iteration: 64-bit pointer arithmetic, where t·N in int32
    # could overflow on large layers
    x_p = x_ptr + offs
    out_p = out_ptr + offs
    m_p = m_ptr + offs
    s_p = s_ptr + offs
    for t in range(T):
        xt = tl.load(x_p, mask=mask, other=0.0).to(tl.float32)
        m = u + (xt - u) * k  # Eq. 1 with the reference's op order
        s, xa = _spike(m, v, AS)
        if SCALED:
            o = s * v
        else:
            o = s
        tl.store(out_p, o.to(out_ptr.dtype.element_ty), mask=mask)
        if KEEP_M:
            tl.store(m_p, m.to(m_ptr.dtype.element_ty), mask=mask)
        if WANT_S:
            tl.store(s_p, s.to(s_ptr.dtype.element_ty), mask=mask)
        x_p += stride_xt
        out_p += N
        m_p += N
        s_p += N
        if STAT == 1:
            fired = tl.maximum(fired, s)
        if BITS:
            shift = (t % PER) * BITS_PER_STEP
            code = code | (tl.where(tl.abs(xa) < half_width, 1, 0) << shift)
            if BITS_PER_STEP == 2:
                code = code | (s.to(tl.int32) << (shift + 1))
            flush = ((t % PER) == PER - 1) | (t == T - 1)
            tl.store(code_ptr + (t // PER) * N + offs, code.to(tl.uint8), mask=mask & flush)
            code = tl.where(flush, 0, code)
        if HARD:
            u = m * (1.0 - s)  # Eq. 3
        else:
            u = m - v * s
    tl.store(ulast_ptr + offs, u.to(ulast_ptr.dtype.element_ty), mask=mask)
    if STAT != 0:
        if STAT == 1:
            sel = mask & (fired > 0.0)
        else:
            sel = mask
        tl.store(stat_ptr + pid, tl.sum(tl.where(sel, u, 0.0), axis=0))
        tl.store(stat_ptr + n_blocks + pid, tl.sum(tl.where(sel, 1.0, 0.0), axis=0))


@triton.jit
def lif_bwd_kernel(saved_ptr, go_ptr, gl_ptr, u0_ptr, par_ptr, gx_ptr, gu0_ptr, part_ptr,
                   T, N, last_row, n_blocks, sur_p, inv_gamma,
                   AS: tl.constexpr, HARD: tl.constexpr, SCALED: tl.constexpr, DETACH: tl.constexpr,
                   U0_SCALAR: tl.constexpr, BITS: tl.constexpr, BITS_PER_STEP: tl.constexpr, SUR: tl.constexpr,
                   HAS_GO: tl.constexpr, HAS_GL: tl.constexpr, NEED_X: tl.constexpr, NEED_U0: tl.constexpr,
                   NEED_TAU: tl.constexpr, NEED_V: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    k = tl.load(par_ptr)
    v = tl.load(par_ptr + 1)
    one_minus_k = 1.0 - k
    if HAS_GL:
        gu = tl.load(gl_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        gu = tl.zeros([BLOCK], dtype=tl.float32)
    if NEED_TAU:
        if U0_SCALAR:
            u0 = tl.zeros([BLOCK], dtype=tl.float32) + tl.load(u0_ptr).to(tl.float32)
        else:
            u0 = tl.load(u0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    acc_tau = tl.zeros([BLOCK], dtype=tl.float32)
    acc_v = tl.zeros([BLOCK], dtype=tl.float32)
    PER: tl.constexpr = 8 // BITS_PER_STEP
    # pointers at step T-1 (``last_row`` = (T-1)·N, from the host in 64 bits), moved back one step per iteration
    m_p = saved_ptr + last_row + offs
    go_p = go_ptr + last_row + offs
    gx_p = gx_ptr + last_row + offs
    if BITS:
        m_cur = tl.zeros([BLOCK], dtype=tl.float32)
    else:
        m_cur = tl.load(m_p, mask=mask, other=0.0).to(tl.float32)
    for i in range(T):
        t = T - 1 - i
        if BITS:
            c = tl.load(saved_ptr + (t // PER) * N + offs, mask=mask, other=0).to(tl.int32)
            shift = (t % PER) * BITS_PER_STEP
            fp = ((c >> shift) & 1).to(tl.float32) * inv_gamma
            if BITS_PER_STEP == 2:
                s = ((c >> (shift + 1)) & 1).to(tl.float32)
            else:
                s = tl.zeros([BLOCK], dtype=tl.float32)
            m = m_cur
        else:
            m = m_cur
            s, xa = _spike(m, v, AS)
            fp = _surrogate_derivative(xa, SUR, sur_p)
            # the next step down needs M[t-1]; at t = 0 nothing is loaded
            m_p -= N
            m_cur = tl.load(m_p, mask=mask & (t > 0), other=0.0).to(tl.float32)
        if AS:
            a = fp
        else:
            a = fp / v
        if HAS_GO:
            go = tl.load(go_p, mask=mask, other=0.0).to(tl.float32)
        else:
            go = tl.zeros([BLOCK], dtype=tl.float32)
        if SCALED:
            gs = go * v
        else:
            gs = go
        if not DETACH:
            if HARD:
                gs = gs - gu * m
            else:
                gs = gs - gu * v
        if HARD:
            gm = gu * (1.0 - s) + gs * a
        else:
            gm = gu + gs * a
        if NEED_V:
            if AS:
                term = -gs * fp
            else:
                term = -gs * m * fp / (v * v)
            if SCALED:
                term += go * s
            if not HARD:
                term -= gu * s
            acc_v += tl.where(mask, term, 0.0)
        if NEED_TAU:
            # U[t-1]: rebuilt from M[t-1] (Eq. 3), or U[0] at the first step
            sp, _xp = _spike(m_cur, v, AS)
            if HARD:
                u_prev = m_cur * (1.0 - sp)
            else:
                u_prev = m_cur - v * sp
            u_prev = tl.where(t > 0, u_prev, u0)
            acc_tau += tl.where(mask, gm * (m - u_prev), 0.0)
        if NEED_X:
            tl.store(gx_p, (gm * k).to(gx_ptr.dtype.element_ty), mask=mask)
        go_p -= N
        gx_p -= N
        gu = gm * one_minus_k
    if NEED_U0:
        tl.store(gu0_ptr + offs, gu.to(gu0_ptr.dtype.element_ty), mask=mask)
    if NEED_TAU:
        tl.store(part_ptr + pid, tl.sum(acc_tau, axis=0))
    if NEED_V:
        tl.store(part_ptr + n_blocks + pid, tl.sum(acc_v, axis=0))
