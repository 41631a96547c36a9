"""Whole-sequence LIF kernels: the forward recurrence and the hand-written reverse-time backward.

Every kernel works on a flattened sequence ``x: [T, N]`` and is written twice:

* ``*_eager``: in-place PyTorch ops with preallocated buffers (few passes over memory, no autograd);
* ``*_functional``: the same maths in out-of-place form, the input of ``torch.compile`` (inductor fuses
  the whole unrolled T-loop into one or two loops over N).

The maths is that of ``functional.lif_step`` (charge, fire, reset, output) and its chain rule:

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
``fused.py`` for what is saved in which case.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch

Tensor = torch.Tensor


class Spec(NamedTuple):
    """Static configuration of one kernel (the compile cache key, with the surrogate's key)."""

    sg_mode: str  # "as" | "rs" | "trsg"
    reset: str  # "soft" | "hard"
    detach: bool  # detach_reset
    scaled: bool  # O = V·S (TrSG before export) rather than S
    storage: str  # "m": M in the input dtype | "bits": packed uint8 (rectangular, no τ/V grads)
    bits_per_step: int  # 1 (window) or 2 (window, spike) in "bits" storage
    rect: bool  # the surrogate is the built-in rectangular shape
    half_width: float  # rectangular γ/2
    gamma: float  # rectangular γ


# -- small pieces shared by every kernel -------------------------------------------------------

def sg_arg(m: Tensor, v: Tensor, sg_mode: str) -> Tensor:
    """x(M, V_thr), computed with the very ops of ``functional.sg_argument`` (same rounding)."""
    return m - v if sg_mode == "as" else m / v - 1.0


def reset_u(m: Tensor, s: Tensor, v: Tensor, mode: str) -> Tensor:
    return m - v * s if mode == "soft" else m * (1.0 - s)


def steps_per_byte(spec: Spec) -> int:
    return 8 // spec.bits_per_step


def n_code_bytes(spec: Spec, T: int) -> int:
    per = steps_per_byte(spec)
    return (T + per - 1) // per


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
    float buffers (``torch.gt(..., out=float)``): going through a bool tensor costs 4x more here.
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
                # badly in inductor's CPU code (measured 20x slower for this kernel)
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


# -- backward ----------------------------------------------------------------------------------

class Needs(NamedTuple):
    x: bool
    u0: bool
    tau: bool
    v: bool


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
        else:  # (an addcmul with a 0-dim first argument is 2-4x slower than mul + add here)
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


# -- helpers for fused.py ---------------------------------------------------------------------

def rectangular_gamma(surrogate) -> Optional[float]:
    """γ of the built-in rectangular shape (exact type), else None."""
    from ..surrogates.shapes import Rectangular

    if type(surrogate) is Rectangular:
        return float(surrogate.gamma)
    return None


__all__ = ["Spec", "Needs", "forward_eager", "backward_eager", "make_forward_functional",
           "make_backward_functional", "sg_arg", "reset_u", "n_code_bytes", "rectangular_gamma"]
