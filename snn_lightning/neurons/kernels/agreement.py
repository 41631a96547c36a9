"""One training pass of a LIF on a given backend, for comparing backends with the reference loop.

Shared by the tests (``tests/test_triton.py``) and the GPU check (``benchmarks/gpu_check.py``), which
must not need pytest: everything a backend must agree on, as named tensors.
"""
from __future__ import annotations

import torch


def training_pass(lif, backend: str, x: torch.Tensor, w: torch.Tensor, mp_init_mean: float = 0.15) -> dict:
    """Forward + backward of ``(lif(x)·w).sum()`` from a fresh state: O, U[T], the updated MP-Init mean,
    and the gradients to x and to the learnable raw τ / V_thr."""
    lif.backend = backend
    lif.reset()
    lif.mp_init_mean.fill_(mp_init_mean)
    xx = x.detach().clone().requires_grad_(True)
    out = lif(xx)
    named = [(n, p) for n, p in (("grad_raw_tau", lif.raw_tau), ("grad_raw_threshold", lif.raw_threshold))
             if p.requires_grad]
    grads = torch.autograd.grad((out.float() * w.float()).sum(), [xx, *[p for _, p in named]])
    res = {"out": out.detach(), "u_last": lif.v.detach(), "mp_init_mean": lif.mp_init_mean.clone(), "grad_x": grads[0]}
    res.update({n: g for (n, _), g in zip(named, grads[1:])})
    return res


def state_pass(lif, backend: str, x: torch.Tensor, w: torch.Tensor, u0: torch.Tensor, wu: torch.Tensor) -> dict:
    """``LIF._run`` from a U[0] that requires grad, with a loss on U[T] as well: adds the gradient to U[0]."""
    lif.backend = backend
    xx = x.detach().clone().requires_grad_(True)
    uu = u0.detach().clone().requires_grad_(True)
    named = [(n, p) for n, p in (("grad_raw_tau", lif.raw_tau), ("grad_raw_threshold", lif.raw_threshold))
             if p.requires_grad]
    run = lif._run(xx, uu, lif.tau, lif.v_threshold, False)
    loss = (run.out.float() * w.float()).sum() + (run.u_last.float() * wu.float()).sum()
    grads = torch.autograd.grad(loss, [xx, uu, *[p for _, p in named]])
    res = {"out": run.out.detach(), "u_last": run.u_last.detach(), "grad_x": grads[0], "grad_u0": grads[1]}
    res.update({n: g for (n, _), g in zip(named, grads[2:])})
    return res


def disagreements(ref: dict, got: dict, atol: float, rtol: float) -> list[str]:
    """The names (with the worst error) where ``got`` leaves ``|got − ref| ≤ atol + rtol·|ref|``."""
    bad = []
    if set(ref) != set(got):
        return [f"keys differ: {sorted(ref)} vs {sorted(got)}"]
    for name, a in ref.items():
        b = got[name].to(a.device)
        if a.shape != b.shape:
            bad.append(f"{name}: shape {tuple(b.shape)} vs {tuple(a.shape)}")
            continue
        a64, b64 = a.double(), b.double()
        err = (a64 - b64).abs()
        if not bool((err <= atol + rtol * a64.abs()).all()):
            bad.append(f"{name}: max |Δ| {err.max().item():.2e}")
    return bad


__all__ = ["training_pass", "state_pass", "disagreements"]
