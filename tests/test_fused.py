"""The fused and compiled multi-step LIF backends against the per-timestep reference loop (values and gradients)."""
from __future__ import annotations

import itertools
import logging

import pytest
import torch

from snn_lightning.neurons import LIF
from snn_lightning.neurons.kernels import COMPILE_CACHE, LIFRun, dispatch, eager
from snn_lightning.surrogates import Surrogate

SG_MODES = ("as", "rs", "trsg")
RESETS = ("soft", "hard")
SURROGATES = ("rectangular", "triangular", "sigmoid", "atan")
TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-5)}


def make_lif(sg, reset, detach, sur, learn_tau, learn_thr, mp_init, dtype, **kw):
    lif = LIF(tau=1.7, v_threshold=0.8, reset=reset, surrogate=sur, sg_mode=sg, learn_tau=learn_tau,
              learn_threshold=learn_thr, detach_reset=detach, mp_init=mp_init, **kw).to(dtype)
    lif.mp_init_mean.fill_(0.15)
    return lif


def inputs(dtype, shape=(5, 3, 2, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 1.2 + 0.45
    return x.to(dtype)


def module_pass(lif, backend, x, w):
    """One training forward + backward through the module; returns everything that must agree."""
    lif.backend = backend
    lif.reset()
    lif.mp_init_mean.fill_(0.15)
    xx = x.clone().requires_grad_(True)
    out = lif(xx)
    params = [p for p in (lif.raw_tau, lif.raw_threshold) if p.requires_grad]
    grads = torch.autograd.grad((out * w).sum(), [xx, *params])
    return [out.detach(), lif.v.detach(), lif.mp_init_mean.clone(), *grads]


def run_pass(lif, backend, x, w, u0, wu):
    """``_run`` with an initial membrane that requires grad and a loss on U[T] as well."""
    lif.backend = backend
    xx = x.clone().requires_grad_(True)
    uu = u0.clone().requires_grad_(True)
    tau, v_thr = lif.tau.to(x.dtype), lif.v_threshold.to(x.dtype)
    run = lif._run(xx, uu, tau, v_thr, False)
    assert isinstance(run, LIFRun)
    out, u_last = run.out, run.u_last
    params = [p for p in (lif.raw_tau, lif.raw_threshold) if p.requires_grad]
    loss = (out * w).sum() + (u_last * wu).sum()
    grads = torch.autograd.grad(loss, [xx, uu, *params])
    return [out.detach(), u_last.detach(), *grads]


GRID = list(itertools.product(SG_MODES, RESETS, (False, True), SURROGATES, (False, True), (False, True), (False, True)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("sg,reset,detach,sur,learn_tau,learn_thr,mp_init", GRID,
                         ids=["-".join(map(str, c)) for c in GRID])
def test_fused_matches_reference(sg, reset, detach, sur, learn_tau, learn_thr, mp_init, dtype):
    lif = make_lif(sg, reset, detach, sur, learn_tau, learn_thr, mp_init, dtype)
    x = inputs(dtype)
    w = inputs(dtype, seed=1)
    ref = module_pass(lif, "torch", x, w)
    got = module_pass(lif, "fused", x, w)
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, **TOL[dtype])
    if mp_init:  # the statistic moved and moved identically
        assert ref[2].item() != 0.15

    u0 = inputs(dtype, shape=x.shape[1:], seed=2) * 0.5
    wu = inputs(dtype, shape=x.shape[1:], seed=3)
    ref = run_pass(lif, "torch", x, w, u0, wu)
    got = run_pass(lif, "fused", x, w, u0, wu)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, **TOL[dtype])


@pytest.mark.parametrize("sg,reset,detach", list(itertools.product(SG_MODES, RESETS, (False, True))))
def test_unscaled_output_and_monitor(sg, reset, detach):
    """``scaled_output=False`` (exported TrSG nets) and the monitor's M and S, with gradients."""
    dtype = torch.float64
    seen = {}
    for backend in ("torch", "fused"):
        lif = make_lif(sg, reset, detach, "triangular", True, True, True, dtype)
        lif.scaled_output = False
        lif.monitor = lambda mod, m, s, b=backend: seen.__setitem__(b, (m.clone(), s.clone()))
        x, w = inputs(dtype), inputs(dtype, seed=1)
        seen[backend + "_res"] = module_pass(lif, backend, x, w)
    for a, b in zip(seen["torch_res"], seen["fused_res"]):
        torch.testing.assert_close(b, a, **TOL[dtype])
    torch.testing.assert_close(seen["fused"][0], seen["torch"][0], **TOL[dtype])
    assert torch.equal(seen["fused"][1], seen["torch"][1])
    assert set(seen["fused"][1].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("stat", ["active", "all"])
@pytest.mark.parametrize("reset", RESETS)
def test_mp_init_statistic_updates_identically(stat, reset):
    means = {}
    for backend in ("torch", "fused"):
        torch.manual_seed(0)
        lif = LIF(reset=reset, mp_init_stat=stat, backend=backend)
        for i in range(3):  # several training forwards: the running mean feeds the next U[0]
            lif.reset()
            x = inputs(torch.float32, seed=10 + i)
            lif(x.requires_grad_(True)).sum().backward()
        means[backend] = lif.mp_init_mean.clone()
    assert means["torch"].item() != 0.0
    torch.testing.assert_close(means["fused"], means["torch"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("sg", SG_MODES)
@pytest.mark.parametrize("reset", RESETS)
def test_eval_and_no_grad_are_bit_identical(sg, reset):
    """Without autograd the eager fused forward reproduces the reference bit for bit; eval freezes MP-Init."""
    x = inputs(torch.float32, shape=(6, 4, 3, 5))
    for train, grad in ((False, False), (False, True), (True, False)):
        outs = {}
        for backend in ("torch", "fused"):
            lif = make_lif(sg, reset, False, "sigmoid", True, True, True, torch.float32)
            lif.train(train)
            lif.backend = backend
            with torch.set_grad_enabled(grad):
                y = lif(x)
            outs[backend] = (y.detach(), lif.v.detach(), lif.mp_init_mean.clone())
        for a, b in zip(outs["torch"], outs["fused"]):
            assert torch.equal(a, b)
        if not train:
            assert outs["fused"][2].item() == pytest.approx(0.15)


def test_carry_state_gradient_flows_across_calls():
    """With ``carry_state`` the second call starts from the first call's U[T], which requires grad."""
    res = {}
    for backend in ("torch", "fused"):
        lif = make_lif("trsg", "soft", False, "rectangular", True, True, False, torch.float64, carry_state=True)
        lif.backend = backend
        x1 = inputs(torch.float64, seed=4).requires_grad_(True)
        x2 = inputs(torch.float64, seed=5).requires_grad_(True)
        y = lif(x1).sum() + 2 * lif(x2).sum()
        res[backend] = torch.autograd.grad(y, [x1, x2, lif.raw_tau, lif.raw_threshold])
    for a, b in zip(res["torch"], res["fused"]):
        torch.testing.assert_close(b, a, **TOL[torch.float64])


def test_single_step_non_contiguous_and_big_batch_shapes():
    lif = make_lif("trsg", "hard", False, "atan", True, True, True, torch.float64)
    for x in (inputs(torch.float64, shape=(1, 4, 3)), inputs(torch.float64, shape=(4, 3, 6)).transpose(1, 2)):
        w = torch.ones_like(x)
        for a, b in zip(module_pass(lif, "torch", x, w), module_pass(lif, "fused", x, w)):
            torch.testing.assert_close(b, a, **TOL[torch.float64])


def test_custom_surrogate_runs_through_its_own_derivative():
    class Cubic(Surrogate):
        def derivative(self, x):
            return torch.clamp(1 - x * x, min=0.0) * 0.75

        def primitive(self, x):  # pragma: no cover - not used here
            raise NotImplementedError

    res = {}
    for backend in ("torch", "fused"):
        lif = make_lif("rs", "soft", False, Cubic(), True, True, True, torch.float64)
        res[backend] = module_pass(lif, backend, inputs(torch.float64), inputs(torch.float64, seed=1))
    for a, b in zip(res["torch"], res["fused"]):
        torch.testing.assert_close(b, a, **TOL[torch.float64])


def saved_bytes(fn):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_saved_for_backward_is_compact():
    T, B, C = 4, 8, 64
    x = torch.randn(T, B, C)
    n = x.numel()

    def fwd(lif):
        return lambda: lif(x.clone().requires_grad_(True))

    # fixed τ, V_thr and a rectangular surrogate: window bits packed along time (T ≤ 8 -> 1 byte/neuron)
    fixed = LIF(sg_mode="as", learn_tau=False, learn_threshold=False, mp_init=False, backend="fused")
    assert saved_bytes(fwd(fixed)) <= n // T + 64
    # hard reset with detach: window and spike bits (T ≤ 4 -> 1 byte/neuron)
    fixed_hard = LIF(sg_mode="as", reset="hard", detach_reset=True, learn_tau=False, learn_threshold=False,
                     mp_init=False, backend="fused")
    assert saved_bytes(fwd(fixed_hard)) <= n // T + 64
    # learnable: M in the input dtype, once
    learn = LIF(backend="fused")
    assert saved_bytes(fwd(learn)) <= 4 * n + 64
    reference = LIF(backend="torch")
    assert saved_bytes(fwd(reference)) > 2 * saved_bytes(fwd(learn))


def test_bits_storage_matches_reference_for_long_sequences():
    """More steps than fit in one byte: codes spill into further bytes."""
    for reset, detach in (("soft", False), ("soft", True), ("hard", True)):
        res = {}
        for backend in ("torch", "fused"):
            lif = make_lif("rs", reset, detach, "rectangular", False, False, True, torch.float64)
            res[backend] = module_pass(lif, backend, inputs(torch.float64, shape=(11, 3, 5)),
                                       inputs(torch.float64, shape=(11, 3, 5), seed=1))
        for a, b in zip(res["torch"], res["fused"]):
            torch.testing.assert_close(b, a, **TOL[torch.float64])


CHUNK_CASES = [("trsg", "soft", False, "rectangular", True, True, True),
               ("rs", "hard", False, "sigmoid", True, True, False),
               ("as", "soft", False, "rectangular", False, False, True),
               ("as", "hard", True, "rectangular", False, False, False),
               ("trsg", "hard", True, "atan", False, True, True)]


@pytest.mark.parametrize("case", CHUNK_CASES, ids=["-".join(map(str, c)) for c in CHUNK_CASES])
def test_cpu_chunking_matches_reference(monkeypatch, case):
    """Large layers run in column chunks on the CPU; shrink the chunk so tiny tensors take that path."""
    monkeypatch.setattr(eager, "CPU_CHUNK", 7)
    dtype = torch.float64
    lif = make_lif(*case, dtype)
    seen = {}
    lif.monitor = lambda mod, m, s: seen.setdefault(lif.backend, (m.clone(), s.clone()))
    x, w = inputs(dtype, shape=(5, 3, 11)), inputs(dtype, shape=(5, 3, 11), seed=1)  # N = 33 > 2·7
    for a, b in zip(module_pass(lif, "torch", x, w), module_pass(lif, "fused", x, w)):
        torch.testing.assert_close(b, a, **TOL[dtype])
    for a, b in zip(seen["torch"], seen["fused"]):
        torch.testing.assert_close(b, a, **TOL[dtype])
    u0 = inputs(dtype, shape=x.shape[1:], seed=2) * 0.5
    wu = inputs(dtype, shape=x.shape[1:], seed=3)
    for a, b in zip(run_pass(lif, "torch", x, w, u0, wu), run_pass(lif, "fused", x, w, u0, wu)):
        torch.testing.assert_close(b, a, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_half_precision_runs_and_agrees_loosely(dtype):
    """Mixed-precision inputs: same forward as the reference, gradients to half-precision rounding."""
    lif = make_lif("trsg", "soft", False, "sigmoid", True, True, True, torch.float32)
    x, w = inputs(dtype), inputs(dtype, seed=1)
    ref = module_pass(lif, "torch", x, w)
    got = module_pass(lif, "fused", x, w)
    assert torch.equal(got[0], ref[0])
    for a, b in zip(ref[3:], got[3:]):
        torch.testing.assert_close(b.float(), a.float(), atol=0.1, rtol=0.05)


def test_dispatch(monkeypatch):
    """"auto" takes the fused path on CPU tensors; "torch" never does; a whole-model compile gets the loop."""
    from snn_lightning.neurons.kernels import function

    calls = []
    orig = function.run_fused

    def spy(*args, **kw):
        calls.append(args[-1])  # the ``compiled`` flag
        return orig(*args, **kw)

    monkeypatch.setattr(function, "run_fused", spy)
    x = inputs(torch.float32)
    lif = LIF()
    lif(x.requires_grad_(True))
    assert calls == [False], "backend auto must take the fused (eager) path on the CPU"
    calls.clear()
    lif.backend = "torch"
    lif.reset()
    lif(x)
    assert not calls
    u0 = torch.zeros(x.shape[1:])
    assert dispatch.resolve(LIF(), x, u0) == "fused"
    assert dispatch.resolve(LIF(backend="compiled"), x, u0) == "compiled"
    assert dispatch.resolve(LIF(), x[:, :0], u0[:0]) == "torch"  # empty input: nothing to fuse
    assert dispatch.resolve(LIF(), x, u0[:1]) == "torch"  # a broadcastable u0: the loop broadcasts it
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert dispatch.resolve(LIF(), x, u0) == "torch"
    assert dispatch.resolve(LIF(backend="fused"), x, u0) == "fused"


@pytest.mark.parametrize("bad", ["Fused", "cuda", ""])
def test_unknown_backend_is_refused(bad):
    with pytest.raises(ValueError, match="unknown backend"):
        LIF(backend=bad)
    lif = LIF()
    with pytest.raises(ValueError, match="allowed"):
        lif.backend = bad
    assert lif.backend == "auto"


def test_compiled_needs_a_built_in_surrogate():
    class Cubic(Surrogate):
        def derivative(self, x):
            return torch.clamp(1 - x * x, min=0.0)

    with pytest.raises(ValueError, match="compiled.*Cubic"):
        LIF(surrogate=Cubic(), backend="compiled")
    lif = LIF(backend="compiled")
    lif.surrogate = Cubic()  # swapped after construction: refused at the call, not run eager silently
    with pytest.raises(ValueError, match="compiled.*Cubic"):
        lif(inputs(torch.float32))


def test_no_process_global_switches():
    """The backend is the neuron's own choice: nothing in the environment changes it."""
    import os

    from snn_lightning.neurons import kernels

    for name in ("set_compile", "compile_enabled"):
        assert not hasattr(kernels, name)
    os.environ["SNN_LIGHTNING_COMPILE"] = "1"
    try:
        assert dispatch.resolve(LIF(), inputs(torch.float32), torch.zeros(3, 2, 4)) == "fused"
    finally:
        del os.environ["SNN_LIGHTNING_COMPILE"]


def test_compile_failure_falls_back_to_eager_and_logs_once(monkeypatch, caplog):
    COMPILE_CACHE.clear()

    def broken(fn, **kw):
        def run(*a, **k):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    x, w = inputs(torch.float64), inputs(torch.float64, seed=1)
    with caplog.at_level(logging.WARNING, logger="snn_lightning.neurons.kernels.compiled"):
        ref = module_pass(make_lif("trsg", "soft", False, "rectangular", True, True, True, torch.float64), "torch", x, w)
        got = module_pass(make_lif("trsg", "soft", False, "rectangular", True, True, True, torch.float64), "compiled", x, w)
        got2 = module_pass(make_lif("as", "hard", True, "sigmoid", False, True, False, torch.float64), "compiled", x, w)
    for a, b in zip(ref, got):
        torch.testing.assert_close(b, a, **TOL[torch.float64])
    assert got2[0].shape == x.shape
    assert len(COMPILE_CACHE.failures()) >= 2
    assert sum("compiling the fused LIF kernels failed" in r.message for r in caplog.records) == 1
    COMPILE_CACHE.clear()
    assert COMPILE_CACHE.failures() == []


@pytest.mark.slow
def test_compiled_kernels_match_reference():
    """Inductor-compiled kernels (about a minute of compiling on 2 cores; cached on disk afterwards)."""
    COMPILE_CACHE.clear()
    x = inputs(torch.float32, shape=(4, 6, 20))
    w = inputs(torch.float32, shape=(4, 6, 20), seed=1)
    u0 = inputs(torch.float32, shape=(6, 20), seed=2) * 0.5
    wu = inputs(torch.float32, shape=(6, 20), seed=3)
    for cfg in (("trsg", "soft", False, "rectangular", True, True, True),
                ("as", "soft", False, "rectangular", False, False, False)):
        lif = make_lif(*cfg, torch.float32)
        for a, b in zip(module_pass(lif, "torch", x, w), module_pass(lif, "compiled", x, w)):
            torch.testing.assert_close(b, a, **TOL[torch.float32])
        if cfg[4]:
            for a, b in zip(run_pass(lif, "torch", x, w, u0, wu), run_pass(lif, "compiled", x, w, u0, wu)):
                torch.testing.assert_close(b, a, **TOL[torch.float32])
        # a different neuron count reuses the same compiled kernel (dynamic N)
        x2 = inputs(torch.float32, shape=(4, 3, 7))
        for a, b in zip(module_pass(lif, "torch", x2, x2), module_pass(lif, "compiled", x2, x2)):
            torch.testing.assert_close(b, a, **TOL[torch.float32])
    assert COMPILE_CACHE.failures() == []
