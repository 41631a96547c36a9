"""The Triton LIF backend against the reference loop, on CPU tensors through Triton's interpreter.

Triton decides at import whether its ``@jit`` functions (its own ``tl.sigmoid`` included) run
interpreted, from ``TRITON_INTERPRET``, and checks the variable again while a kernel runs. Lightning
imports Triton, so in a whole-suite pytest process Triton is usually imported, not interpreted,
before this module is collected. Then the tests below skip here and
``test_interpreted_suite_in_a_subprocess`` runs this file in a fresh interpreter with
``TRITON_INTERPRET=1`` (with the same ``-m`` selection); run alone, this file sets the variable
itself before Triton is imported and runs in-process. Shapes stay tiny (the interpreter runs every
program as numpy ops).

Tolerances: float32 within 1e-5 of the float32 reference. bfloat16/float16 inputs against the float32
reference on the same (upcast) values: the kernel's state is float32, so the spikes are the same and
only the storage of O, U[T] and M in the half dtype differs — outputs and U[T] within one half-precision
rounding (rtol 1e-2 bf16 / 2e-3 f16), gradients within 5e-2 / 1e-2. They use a smooth surrogate where
M is saved and the rectangular one where window bits are saved: a rectangular window rebuilt from a
half-rounded M can flip at an edge (``benchmarks/notes.md``, "The Triton backend").
"""
from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

if "triton" not in sys.modules:  # nothing has imported Triton yet: it can still start interpreted
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

pytest.importorskip("triton")

from snn_lightning.neurons import LIF  # noqa: E402
from snn_lightning.neurons.kernels import dispatch  # noqa: E402
from snn_lightning.neurons.kernels.agreement import disagreements, state_pass, training_pass  # noqa: E402
from snn_lightning.surrogates import Surrogate  # noqa: E402


def _triton_is_interpreted() -> bool:
    import triton.language.standard as standard
    from triton.runtime.interpreter import InterpretedFunction

    return os.environ.get("TRITON_INTERPRET") == "1" and isinstance(standard.sigmoid, InterpretedFunction)


IN_PROCESS = _triton_is_interpreted()
if IN_PROCESS:
    TK = importlib.import_module("snn_lightning.neurons.kernels.triton_lif")
    assert TK.INTERPRET, "the Triton LIF kernels were imported before TRITON_INTERPRET=1 was set"


@pytest.fixture(autouse=True)
def _interpreted_or_delegated(request):
    if not IN_PROCESS and request.node.originalname != "test_interpreted_suite_in_a_subprocess":
        pytest.skip("Triton was imported without its interpreter in this process: "
                    "test_interpreted_suite_in_a_subprocess runs these")


@pytest.mark.skipif(IN_PROCESS, reason="the tests run in this process")
def test_interpreted_suite_in_a_subprocess(request):
    """Runs this file under ``TRITON_INTERPRET=1`` in a fresh Python (see the module docstring)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).resolve())]
    markexpr = request.config.getoption("-m")
    if markexpr:
        cmd += ["-m", markexpr]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout.strip().splitlines()[-1], tail


SG_MODES = ("as", "rs", "trsg")
RESETS = ("soft", "hard")
SURROGATES = ("rectangular", "triangular", "sigmoid", "atan")
F32 = dict(atol=1e-5, rtol=1e-5)
HALF = {torch.bfloat16: (dict(atol=1e-2, rtol=1e-2), dict(atol=5e-2, rtol=5e-2)),
        torch.float16: (dict(atol=2e-3, rtol=2e-3), dict(atol=1e-2, rtol=1e-2))}


def make_lif(sg, reset, detach, sur, learn_tau, learn_thr, mp_init, **kw):
    lif = LIF(tau=1.7, v_threshold=0.8, reset=reset, surrogate=sur, sg_mode=sg, learn_tau=learn_tau,
              learn_threshold=learn_thr, detach_reset=detach, mp_init=mp_init, **kw)
    lif.mp_init_mean.fill_(0.15)
    return lif


def inputs(shape=(5, 3, 37), seed=0, dtype=torch.float32):
    """N = 3·37 = 111 neurons: 4 blocks of 32 under the interpreter, the last one ragged."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 1.2 + 0.45).to(dtype)


def module_pass(lif, backend, x, w):
    """One training forward + backward; everything that must agree with the reference (a list, in a fixed order)."""
    return list(training_pass(lif, backend, x, w).values())


def run_pass(lif, backend, x, w, u0, wu):
    """``_run`` from a U[0] that requires grad, with a loss on U[T] as well."""
    return list(state_pass(lif, backend, x, w, u0, wu).values())


def check_config(cfg, shape=(5, 3, 37)):
    lif = make_lif(*cfg)
    x, w = inputs(shape), inputs(shape, seed=1)
    ref, got = training_pass(lif, "torch", x, w), training_pass(lif, "triton", x, w)
    assert disagreements(ref, got, **F32) == []
    assert len(ref) == 4 + cfg[4] + cfg[5]  # O, U[T], MP-Init mean, dx and the learnable raw parameters
    if cfg[-1]:  # MP-Init moved, and moved identically
        assert ref["mp_init_mean"].item() != 0.15
    u0, wu = inputs(shape[1:], seed=2) * 0.5, inputs(shape[1:], seed=3)
    ref, got = state_pass(lif, "torch", x, w, u0, wu), state_pass(lif, "triton", x, w, u0, wu)
    assert disagreements(ref, got, **F32) == []
    assert "grad_u0" in got


GRID = list(itertools.product(SG_MODES, RESETS, (False, True), SURROGATES, (False, True), (False, True), (False, True)))
# every (sg, reset, detach, surrogate) combination once, with learnable τ, learnable V_thr and MP-Init
# cycling through all eight of their combinations
FAST = [(sg, reset, detach, sur, i % 2 == 0, (i // 2) % 2 == 0, (i // 4) % 2 == 0)
        for i, (sg, reset, detach, sur) in enumerate(itertools.product(SG_MODES, RESETS, (False, True), SURROGATES))]


@pytest.mark.parametrize("cfg", FAST, ids=["-".join(map(str, c)) for c in FAST])
def test_triton_matches_reference(cfg):
    check_config(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", GRID, ids=["-".join(map(str, c)) for c in GRID])
def test_triton_matches_reference_full_grid(cfg):
    check_config(cfg)


SHAPE_CASES = [("trsg", "soft", False, "rectangular", True, True, True),
               ("as", "soft", False, "rectangular", False, False, False),  # packed window bits
               ("rs", "hard", True, "rectangular", False, False, True),  # packed window + spike bits
               ("trsg", "hard", False, "atan", True, False, False)]


@pytest.mark.parametrize("shape", [(1, 2, 5), (11, 3, 7), (9, 64)], ids=["T1", "T11-ragged-block", "T9-whole-blocks"])
@pytest.mark.parametrize("cfg", SHAPE_CASES, ids=["-".join(map(str, c)) for c in SHAPE_CASES])
def test_shapes_and_long_sequences(cfg, shape):
    """T = 1, T > 8 (bits spill into a second byte), a neuron count that is not a multiple of the block."""
    check_config(cfg, shape)


def test_non_contiguous_and_strided_input():
    lif = make_lif("trsg", "hard", False, "sigmoid", True, True, True)
    base = inputs((4, 7, 6))
    for x in (base.transpose(1, 2), inputs((8, 6, 7))[::2]):
        assert not x.is_contiguous()
        w = torch.ones_like(x)
        for a, b in zip(module_pass(lif, "torch", x, w), module_pass(lif, "triton", x, w)):
            torch.testing.assert_close(b, a, **F32)


@pytest.mark.parametrize("sg,reset", list(itertools.product(SG_MODES, RESETS)))
def test_forward_is_bit_identical_and_eval_freezes_mp_init(sg, reset):
    x = inputs((6, 4, 9))
    for train in (True, False):
        outs = {}
        for backend in ("torch", "triton"):
            lif = make_lif(sg, reset, False, "sigmoid", True, True, True, backend=backend)
            lif.train(train)
            with torch.no_grad():
                y = lif(x)
            outs[backend] = (y, lif.v, lif.mp_init_mean.clone())
        assert torch.equal(outs["triton"][0], outs["torch"][0])
        assert torch.equal(outs["triton"][1], outs["torch"][1])
        torch.testing.assert_close(outs["triton"][2], outs["torch"][2], atol=1e-7, rtol=1e-6)
        if not train:
            assert outs["triton"][2].item() == pytest.approx(0.15)


@pytest.mark.parametrize("sg,reset,detach", [("trsg", "soft", False), ("trsg", "hard", True), ("as", "soft", True)])
def test_unscaled_output_and_monitor(sg, reset, detach):
    """``scaled_output=False`` (exported TrSG nets) and the monitor's M and S on the Triton path."""
    seen, res = {}, {}
    for backend in ("torch", "triton"):
        lif = make_lif(sg, reset, detach, "triangular", True, True, True)
        lif.scaled_output = False
        lif.monitor = lambda mod, m, s, b=backend: seen.__setitem__(b, (m.clone(), s.clone()))
        res[backend] = module_pass(lif, backend, inputs(), inputs(seed=1))
    for a, b in zip(res["torch"], res["triton"]):
        torch.testing.assert_close(b, a, **F32)
    torch.testing.assert_close(seen["triton"][0], seen["torch"][0], **F32)
    assert torch.equal(seen["triton"][1], seen["torch"][1])
    assert set(res["triton"][0].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("stat", ["active", "all"])
def test_mp_init_statistic_over_several_steps(stat):
    """The kernel's per-block (sum, count) feeds the same running mean as the reference's statistic."""
    means = {}
    for backend in ("torch", "triton"):
        lif = LIF(mp_init_stat=stat, backend=backend)
        for i in range(3):
            lif.reset()
            lif(inputs(seed=10 + i).requires_grad_(True)).sum().backward()
        means[backend] = lif.mp_init_mean.clone()
    assert means["torch"].item() != 0.0
    torch.testing.assert_close(means["triton"], means["torch"], atol=1e-6, rtol=1e-6)


def test_carry_state_gradient_flows_across_calls():
    res = {}
    for backend in ("torch", "triton"):
        lif = make_lif("trsg", "soft", False, "rectangular", True, True, False, carry_state=True, backend=backend)
        x1, x2 = inputs(seed=4).requires_grad_(True), inputs(seed=5).requires_grad_(True)
        y = lif(x1).sum() + 2 * lif(x2).sum()
        res[backend] = torch.autograd.grad(y, [x1, x2, lif.raw_tau, lif.raw_threshold])
    for a, b in zip(res["torch"], res["triton"]):
        torch.testing.assert_close(b, a, **F32)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("cfg", [("trsg", "soft", False, "sigmoid", True, True, True),
                                 ("as", "hard", True, "rectangular", False, False, False)], ids=["trsg", "as-bits"])
def test_half_precision_against_float32_reference(dtype, cfg):
    val_tol, grad_tol = HALF[dtype]
    lif = make_lif(*cfg)
    x, w = inputs(dtype=dtype), inputs(seed=1, dtype=dtype)
    ref = module_pass(lif, "torch", x.float(), w.float())
    got = module_pass(lif, "triton", x, w)
    assert got[0].dtype == dtype and got[1].dtype == dtype and got[3].dtype == dtype
    assert torch.equal((got[0] != 0), (ref[0] != 0))  # float32 state: the very same spikes
    for a, b in zip(ref[:2], got[:2]):
        torch.testing.assert_close(b.float(), a, **val_tol)
    torch.testing.assert_close(got[2], ref[2], atol=1e-6, rtol=1e-5)
    for a, b in zip(ref[3:], got[3:]):
        torch.testing.assert_close(b.float(), a, **grad_tol)


def saved_bytes(fn):
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("cfg", [dict(sg_mode="as", learn_tau=False, learn_threshold=False, mp_init=False),
                                 dict(sg_mode="as", reset="hard", detach_reset=True, learn_tau=False,
                                      learn_threshold=False),
                                 dict()], ids=["bits", "bits-hard", "m"])
def test_saved_for_backward_no_larger_than_fused(cfg):
    x = inputs((4, 8, 16))
    sizes = {b: saved_bytes(lambda b=b: LIF(**cfg, backend=b)(x.clone().requires_grad_(True))) for b in ("fused", "triton")}
    assert sizes["triton"] <= sizes["fused"]
    if "learn_tau" in cfg:  # one byte per neuron for T = 4 (plus the scalars)
        assert sizes["triton"] <= x.numel() // 4 + 64


def test_disagreements_reports_what_differs():
    ref = {"out": torch.zeros(3), "grad_x": torch.ones(3)}
    assert disagreements(ref, {"out": torch.zeros(3), "grad_x": torch.ones(3) + 1e-6}, atol=1e-5, rtol=0) == []
    bad = disagreements(ref, {"out": torch.zeros(3), "grad_x": torch.tensor([1.0, 1.1, 1.0])}, atol=1e-5, rtol=1e-5)
    assert len(bad) == 1 and bad[0].startswith("grad_x")
    assert disagreements(ref, {"out": torch.zeros(3)}, atol=1, rtol=1)[0].startswith("keys differ")


def test_triton_refuses_with_one_line(monkeypatch):
    """``backend="triton"`` runs the kernels or says why in one line; it never falls back."""
    from conftest import assert_one_line

    class Cubic(Surrogate):
        def derivative(self, x):
            return torch.clamp(1 - x * x, min=0.0)

    with pytest.raises(ValueError) as err:
        LIF(surrogate=Cubic(), backend="triton")
    assert "Cubic" in assert_one_line(err.value)
    lif = LIF(backend="triton")
    with pytest.raises(ValueError) as err:
        lif(inputs(dtype=torch.float64))
    assert "float64" in assert_one_line(err.value)
    monkeypatch.setattr(TK, "INTERPRET", False)
    with pytest.raises(ValueError) as err:
        lif(inputs())
    assert "TRITON_INTERPRET=1" in assert_one_line(err.value)
    monkeypatch.setattr(dispatch, "triton_installed", lambda: False)
    with pytest.raises(ValueError) as err:
        LIF(backend="triton")
    assert "not installed" in assert_one_line(err.value)
    assert dispatch.resolve(LIF(), inputs(), torch.zeros(3, 37)) == "fused"  # auto on the CPU: today's choice


def test_auto_takes_triton_on_cuda_tensors_when_it_has_a_kernel(monkeypatch):
    """The "auto" rule, with the device test pretending CPU tensors are CUDA ones (no GPU here)."""
    class Cubic(Surrogate):
        def derivative(self, x):
            return torch.clamp(1 - x * x, min=0.0)

    monkeypatch.setattr(dispatch, "on_cuda", lambda x: True)
    x, u0 = inputs(), torch.zeros(3, 37)
    assert dispatch.resolve(LIF(), x, u0) == "triton"
    assert dispatch.resolve(LIF(surrogate=Cubic()), x, u0) == "fused"  # no kernel for it: today's choice
    assert dispatch.resolve(LIF(), x.double(), u0.double()) == "fused"  # float64: no Triton kernel
    lif = make_lif("trsg", "soft", False, "atan", True, True, True)
    res = {b: training_pass(lif, b, x, inputs(seed=1)) for b in ("torch", "auto")}
    assert disagreements(res["torch"], res["auto"], **F32) == []
    monkeypatch.setattr(dispatch, "triton_installed", lambda: False)
    assert dispatch.resolve(LIF(), x, u0) == "fused"
