"""Eager whole-sequence LIF kernels: the forward recurrence and the hand-written reverse-time backward.

The kernels work on a flattened sequence ``x: [T, N]`` with in-place PyTorch ops into preallocated
buffers (few passes over memory, no autograd). ``compiled.py`` has the same maths in out-of-place form
for ``torch.compile``; ``triton_lif.py`` has it with the time loop inside one kernel.

The maths is that of ``functional.lif_step`` (charge, fire, reset, output; Eqs. 1-3, 10) and its chain rule:

    M[t] = U[t-1] + (I[t] - U[t-1]) k                  k = 1/τ
    x[t] = M - V  (as)   |   M/V - 1  (rs, trsg)         S = H(x)
    U[t] = M - V S  (soft; S detached if detach_reset, the V term kept)   |   M (1 - S)  (hard)
    O[t] = V S  (trsg with scaled output)   |   S

Backward, with gU the gradient reaching U[t] (from M[t+1] and, at t = T-1, from U[T] itself):

    a    = dS/dM = f'(x) (as)  |  f'(x)/V (rs, trsg)
    gS   = c gO + [not detach] gU dU/dS          c = V (scaled trsg) | 1;  dU/dS = -V (soft) | -M (hard)
    gM   = gU dU/dM + gS a                       dU/dM = 1 (soft) | 1 - S (hard)
    gI   = k gM,  gU[t-1] = (1 - k) gM,  gU0 = (1 - k) gM[0]
    gV   = Σ gS dS/dV + [scaled trsg] gO S - [soft] gU S      dS/dV = -f' (as) | -M f'/V² (rs, trsg)
    gτ   = -k² Σ gM (I - U[t-1]) = -k Σ gM (M - U[t-1])

so backward needs, per element and step, only what can be rebuilt from M (S, f'(x), U[t-1]); see
``spec.py`` for what is saved in which case. Never bool tensors: a comparison into bool plus a
conversion costs several times a comparison written straight into a float tensor (benchmarks/results.md).
"""
from __future__ import annotations

from typing import Optional

import torch

from .spec import Needs, Spec, n_code_bytes, steps_per_byte

Tensor = torch.Tensor


# -- forward -----------------------------------------------------------------------------------

def forward_eager(spec: Spec, x: Tensor, u0: Tensor, k: Tensor, v: Tensor, keep_m: bool, want: tuple[bool, bool],
                  dest: Optional[tuple] = None):
    """Run all T steps with in-place ops. ``x: [T, N]``; ``u0``: ``[]`` or ``[N]``.

    Returns ``(out, m, codes, spikes, fired, u_last)``; ``m`` only if ``keep_m`` (else None), ``codes`` only
    in "bits" storage, ``spikes`` (0/1, input dtype) and ``fired`` (bool [N]) only if asked for in ``want``.
    ``dest``, if given, holds the same six tensors (or None) preallocated — column slices of the
    whole layer's outputs when the caller works through the neurons in cache-sized chunks.

    Values are bit-identical to the reference loop: the charge uses its op order, and the spike test
    ``M/V − 1 > 0`` is evaluated as ``M/V > 1`` (``M − V > 0`` as ``M > V``), which is exact in IEEE
    arithmetic (a difference of floats is 0 only for equal floats). Comparisons write straight into
    float buffers (``torch.gt(..., out=float)``): going through a bool tensor costs several times more.
    """
    want_spikes, want_fired = want
    T, N = x.shape
    dtype, device = x.dtype, x.device
    if dest is None:
        out = torch.empty_like(x)
        m_all = torch.empty_like(x) if keep_m else None
        s_all = None
        if want_spikes:
            s_all = torch.empty_like(x) if spec.scaled else out
    else:
        out, m_all, _, s_all, _, _ = dest
    bits = spec.storage == "bits"
    per = steps_per_byte(spec)
    code_f = torch.zeros((n_code_bytes(spec, T), N), dtype=dtype, device=device) if bits else None
    fired_f = torch.zeros((N,), dtype=dtype, device=device) if want_fired else None
    m_tmp = None if keep_m else torch.empty((N,), dtype=dtype, device=device)
    s_tmp = torch.empty((N,), dtype=dtype, device=device) if spec.scaled and s_all is None else None
    buf = torch.empty((N,), dtype=dtype, device=device) if (bits or spec.sg_mode != "as") else None
    as_mode = spec.sg_mode == "as"
    u = u0
    for t in range(T):
        m = m_all[t] if keep_m else m_tmp
        torch.sub(x[t], u, out=m)  # M = U + (I − U)·k, with the reference's op order
        m.mul_(k)
        m.add_(u)
        s = s_all[t] if s_all is not None else (s_tmp if spec.scaled else out[t])
        if bits:
            xa = torch.sub(m, v, out=buf) if as_mode else torch.div(m, v, out=buf).sub_(1.0)
            torch.gt(xa, 0.0, out=s)
            torch.lt(xa.abs_(), spec.half_width, out=xa)  # Rectangular.derivative's window test
            shift = (t % per) * spec.bits_per_step
            row = code_f[t // per]
            row.add_(xa, alpha=float(1 << shift))
            if spec.bits_per_step == 2:
                row.add_(s, alpha=float(1 << (shift + 1)))
        elif as_mode:
            torch.gt(m, v, out=s)
        else:
            torch.gt(torch.div(m, v, out=buf), 1.0, out=s)
        if spec.scaled:
            torch.mul(s, v, out=out[t])
        if fired_f is not None:
            torch.maximum(fired_f, s, out=fired_f)
        # U = M − V·S (soft; V·S is exact) | M·(1 − S) (hard)
        u = torch.addcmul(m, s, v, value=-1) if spec.reset == "soft" else m * (1.0 - s)
    if dest is None:
        codes = code_f.to(torch.uint8) if bits else None
        fired = fired_f > 0 if fired_f is not None else None
        return out, m_all, codes, s_all, fired, u
    _, _, codes, _, fired, u_last = dest
    if bits:
        codes.copy_(code_f)
    if fired is not None:
        torch.gt(fired_f, 0.0, out=fired)
    u_last.copy_(u)
    return dest



# -- backward ----------------------------------------------------------------------------------

def _unpack(spec: Spec, codes: Tensor, T: int, dtype) -> tuple[Tensor, Optional[Tensor]]:
    """Window (and spike) indicators ``[T, N]`` in ``dtype`` from the packed codes."""
    per = steps_per_byte(spec)
    N = codes.shape[1]
    win = torch.empty((T, N), dtype=dtype, device=codes.device)
    spk = torch.empty((T, N), dtype=dtype, device=codes.device) if spec.bits_per_step == 2 else None
    for t in range(T):
        c = codes[t // per]
        shift = (t % per) * spec.bits_per_step
        win[t].copy_((c >> shift) & 1)
        if spk is not None:
            spk[t].copy_((c >> (shift + 1)) & 1)
    return win, spk


def _owned(a: Tensor, xa: Tensor, m: Tensor) -> Tensor:
    """``a`` if it is a fresh dense tensor of ``xa``'s shape (not ``m``'s storage), else a private copy."""
    if (a.shape == xa.shape and a.dtype == xa.dtype and a.is_contiguous() and a._base is None
            and a.untyped_storage().data_ptr() != m.untyped_storage().data_ptr()):
        return a
    return a.to(xa.dtype).expand(xa.shape).clone(memory_format=torch.contiguous_format)


def _dot(a: Tensor, b: Tensor, buf: Tensor) -> Tensor:
    """Σ a·b through a reusable buffer (torch's cascade sum: as accurate as autograd's own sums)."""
    return torch.mul(a, b, out=buf[: a.shape[0]]).sum()


def backward_eager(spec: Spec, needs: Needs, dfn, g_out: Optional[Tensor], g_last: Optional[Tensor],
                   saved: Tensor, u0: Optional[Tensor], k: Tensor, v: Tensor, T: int, N: int, dtype,
                   gx_out: Optional[Tensor] = None):
    """Reverse-time recurrence. Returns ``(gx [T, N] | None, gu0 [N] | None, gtau | None, gv | None)``;
    ``gx`` is written into ``gx_out`` when that is given (a column slice, see ``forward_eager``).

    Everything without a recurrence is computed for all steps at once, in as few passes over memory
    as the maths allows. With fp = f'(x) (for the rectangular shape: the 0/1 window, its 1/γ
    folded into the scalars fs) and α = dx/dM (1 for AS-SG, 1/V otherwise), every per-element factor is
    fp times a scalar:

        gM[t] = gU[t]·A[t] + gO[t]·fp[t]·(c·α·fs),   gU[t] = (1 − k)·gM[t+1],  gU[T−1] = g(U[T])
        A = 1 − V·α·fs·fp (soft) | 1 − S − α·fs·M·fp (hard) | 1 (soft, detached) | 1 − S (hard, detached)
        gV = Σ gO·P + Σ gU·W,  P = [scaled] S − c·α·fs·qq,  W = V·α·fs·qq − S (soft) | α·fs·M·qq (hard)
        (qq = fp (AS) | M/V·fp; detached reset: W = −S (soft) | 0 (hard))
        gτ = −k Σ gM·(M[t] − U[t−1])

    so the loop is one multiply-add per step and gV, gτ are dot products.
    """
    device = saved.device
    hard = spec.reset == "hard"
    as_mode = spec.sg_mode == "as"
    m = mv = s = None
    one = torch.ones((), dtype=dtype, device=device)
    if spec.storage == "bits":
        fp, s = _unpack(spec, saved, T, dtype)
        fs = 1.0 / spec.gamma
    else:
        m = saved
        need_s = hard or needs.v or needs.tau
        if as_mode:
            xa = m - v
            if need_s:
                s = torch.gt(xa, 0.0, out=torch.empty_like(m))
        else:
            mv = m / v
            if need_s:
                s = torch.gt(mv, 1.0, out=torch.empty_like(m))  # = (M/V − 1 > 0), see forward_eager
            xa = mv - 1.0
        if spec.rect:
            fp = torch.lt(xa.abs_(), spec.half_width, out=xa)  # the window, in place
            fs = 1.0 / spec.gamma
        else:
            fp = _owned(dfn(xa), xa, m)
            fs = 1.0
        del xa
    alpha = one if as_mode else 1.0 / v
    c = v if spec.scaled else one
    one_minus_k = 1.0 - k

    # gM buffer starts as B = gO·fp·(c·α·fs)
    gm = torch.empty((T, N), dtype=dtype, device=device)
    if g_out is not None:
        torch.mul(g_out, fp, out=gm)
        gm.mul_(c * alpha * fs)
    else:
        gm.zero_()

    # A[:-1] already scaled by (1 − k); A[T−1] unscaled (it multiplies g(U[T]))
    A = None
    if not spec.detach:
        if hard:
            A = torch.mul(m, fp)
            A[: T - 1].mul_(-(alpha * fs) * one_minus_k).add_(one_minus_k)
            A[T - 1].mul_(-(alpha * fs)).add_(1.0)
            torch.addcmul(A[: T - 1], s[: T - 1], one_minus_k, value=-1, out=A[: T - 1])
            A[T - 1].sub_(s[T - 1])
        else:  # (an addcmul with a 0-dim first argument is slower than mul + add here)
            A = torch.empty_like(gm)
            coef = v * alpha * fs
            torch.mul(fp[: T - 1], -(one_minus_k * coef), out=A[: T - 1]).add_(one_minus_k)
            torch.mul(fp[T - 1], -coef, out=A[T - 1]).add_(1.0)
    elif hard:
        A = torch.empty_like(gm)
        torch.mul(s[: T - 1], -one_minus_k, out=A[: T - 1]).add_(one_minus_k)
        torch.sub(1.0, s[T - 1], out=A[T - 1])
    if g_last is not None:
        gm[T - 1].add_(g_last * A[T - 1] if A is not None else g_last)
    if A is not None:
        for t in range(T - 2, -1, -1):
            gm[t].addcmul_(gm[t + 1], A[t])
    else:
        for t in range(T - 2, -1, -1):
            gm[t].addcmul_(gm[t + 1], one_minus_k)
    del A

    gx = None
    if needs.x:
        gx = gm * k if gx_out is None else torch.mul(gm, k, out=gx_out)
    gu0 = gm[0] * one_minus_k if needs.u0 else None

    gv = None
    if needs.v:
        qq = fp if as_mode else torch.mul(mv, fp, out=mv)
        scale = alpha * fs
        if not spec.detach:  # W = dU/dS·q − [soft] S
            W = torch.mul(qq, m).mul_(scale) if hard else torch.addcmul(-s, qq, v * scale)
        else:
            W = None if hard else s.neg()
        P = None
        if g_out is not None:  # P = c·q + [scaled] S
            P = torch.addcmul(s, qq, c * scale, value=-1) if spec.scaled else qq.mul(-(c * scale))
        del qq
        scratch = fp  # fp and qq are dead from here on
        total = torch.zeros((), dtype=dtype, device=device)
        if P is not None:
            total = total + _dot(g_out, P, scratch)
            del P
        if W is not None:
            if T > 1:
                total = total + one_minus_k * _dot(gm[1:], W[:-1], scratch)
            if g_last is not None:
                total = total + _dot(g_last.reshape(1, -1), W[T - 1:], scratch)
        gv = total
    gtau = None
    if needs.tau:
        D = torch.empty((T, N), dtype=dtype, device=device)
        torch.sub(m[0], u0, out=D[0])
        if T > 1:
            torch.sub(m[1:], m[:-1], out=D[1:])
            if hard:
                D[1:].addcmul_(m[:-1], s[:-1])
            else:
                D[1:].addcmul_(s[:-1], v)
        gtau = -k * _dot(gm, D, D)
    return gx, gu0, gtau, gv


# -- eager kernels in cache-sized chunks of neurons on the CPU -------------------------------

CPU_CHUNK = 1 << 16  # neurons per chunk and thread: a [T, chunk] float32 temporary stays in L2 for T ≤ 8


def _chunk_size(t: torch.Tensor, n: int) -> int:
    """The eager kernels are strings of elementwise passes; on the CPU, running them on column
    chunks keeps the temporaries in cache (benchmarks/results.md, "Eager kernels in chunks"). Each op is
    split over the intra-op threads, so the chunk grows with their number (fewer fork/joins, the
    same bytes per core). On a GPU one launch per op over everything is better."""
    if t.device.type != "cpu":
        return n
    c = CPU_CHUNK * max(1, torch.get_num_threads())
    return c if n > 2 * c else n


def forward_chunked(spec, x2, u0c, k, v, keep_m, want):
    T, N = x2.shape
    C = _chunk_size(x2, N)
    if C >= N:
        return forward_eager(spec, x2, u0c, k, v, keep_m, want)
    want_spikes, want_fired = want
    out = torch.empty_like(x2)
    m_all = torch.empty_like(x2) if keep_m else None
    s_all = (torch.empty_like(x2) if spec.scaled else out) if want_spikes else None
    codes = (torch.empty((n_code_bytes(spec, T), N), dtype=torch.uint8, device=x2.device)
             if spec.storage == "bits" else None)
    fired = torch.empty((N,), dtype=torch.bool, device=x2.device) if want_fired else None
    u_last = torch.empty((N,), dtype=x2.dtype, device=x2.device)
    for j in range(0, N, C):
        sl = slice(j, j + C)
        dest = tuple(None if b is None else (b[sl] if b.dim() == 1 else b[:, sl])
                     for b in (out, m_all, codes, s_all, fired, u_last))
        forward_eager(spec, x2[:, sl], u0c if u0c.dim() == 0 else u0c[sl], k, v, keep_m, want, dest)
    return out, m_all, codes, s_all, fired, u_last


def backward_chunked(spec, needs, dfn, go, gl, saved, u0c, k, v, T, N, dtype):
    C = _chunk_size(saved, N)
    if C >= N:
        return backward_eager(spec, needs, dfn, go, gl, saved, u0c, k, v, T, N, dtype)
    gx = torch.empty((T, N), dtype=dtype, device=saved.device) if needs.x else None
    gu0 = torch.empty((N,), dtype=dtype, device=saved.device) if needs.u0 else None
    gtau = gv = None
    for j in range(0, N, C):
        sl = slice(j, j + C)
        n = min(C, N - j)
        u0s = u0c if (u0c is None or u0c.dim() == 0) else u0c[sl]
        _, gu0_c, gtau_c, gv_c = backward_eager(
            spec, needs, dfn, None if go is None else go[:, sl], None if gl is None else gl[sl], saved[:, sl],
            u0s, k, v, T, n, dtype, gx_out=None if gx is None else gx[:, sl])
        if gu0 is not None:
            gu0[sl].copy_(gu0_c)
        if gtau_c is not None:
            gtau = gtau_c if gtau is None else gtau + gtau_c
        if gv_c is not None:
            gv = gv_c if gv is None else gv + gv_c
    return gx, gu0, gtau, gv


__all__ = ["forward_eager", "backward_eager", "forward_chunked", "backward_chunked", "CPU_CHUNK"]
