"""Gradient telemetry (snn_lightning.telemetry) against autograd on the reference LIF."""
from __future__ import annotations

import math

import pytest
import torch

from snn_lightning.monitor import NeuronRecorder
from snn_lightning.neurons import LIF
from snn_lightning.neurons import functional as F
from snn_lightning.telemetry import GradientRecorder, gradient_metrics

T, B, N = 4, 3, 5


def _autograd_truth(lif: LIF, x: torch.Tensor, w: torch.Tensor):
    """The reference recurrence with M[t], U[t], τ and V_thr as graph nodes whose grads autograd fills."""
    tau = lif.tau.detach().clone().requires_grad_(True)
    v_thr = lif.v_threshold.detach().clone().requires_grad_(True)
    u = lif.initial_membrane(x).clone()
    ms, us, outs = [], [], []
    for t in range(T):
        o, s, m, u = F.lif_step(u, x[t], tau, v_thr, lif.surrogate, lif.sg_mode, lif.reset_mode, lif.detach_reset)
        m.retain_grad()
        u.retain_grad()
        ms.append(m)
        us.append(u)
        outs.append(o)
    (torch.stack(outs) * w).sum().backward()
    window = [float((lif.surrogate.derivative(F.sg_argument(m.detach(), v_thr.detach(), lif.sg_mode)) > 0).double().mean()) for m in ms]
    return {
        "m_norm": [float(m.grad.norm()) for m in ms],
        "u_norm": [float(u.grad.norm()) if u.grad is not None else 0.0 for u in us],
        "window": window,
        "v_threshold": float(v_thr.grad),
        "tau": float(tau.grad),
        "v_thr": float(v_thr.detach()),
        "tau_value": float(tau.detach()),
    }


@pytest.mark.parametrize("sg_mode", ["as", "rs", "trsg"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_recorder_matches_autograd(sg_mode, reset):
    torch.manual_seed(0)
    lif = LIF(tau=1.7, v_threshold=0.8, sg_mode=sg_mode, reset=reset, surrogate="triangular", backend="torch").double()
    lif.mp_init_mean.fill_(0.2)
    x = (torch.randn(T, B, N, dtype=torch.float64) * 1.5).requires_grad_(True)
    w = torch.randn(T, B, N, dtype=torch.float64)
    truth = _autograd_truth(lif, x.detach(), w)

    rec = GradientRecorder([("layer", lif)])
    rec.attach()
    (lif(x) * w).sum().backward()
    rec.record_parameters()
    rec.detach()
    st = rec.summary()["layer"]
    assert st["m_norm"] == pytest.approx(truth["m_norm"], rel=1e-9, abs=1e-12)
    assert st["u_norm"] == pytest.approx(truth["u_norm"][:-1], rel=1e-9, abs=1e-12)
    assert truth["u_norm"][-1] == 0.0  # U[T] feeds nothing the loss sees, which is why it is not reported
    assert st["window"] == pytest.approx(truth["window"])
    assert 0.0 < sum(st["window"]) < T  # the case exercises both sides of the window
    assert st["v_threshold"] == pytest.approx(truth["v_threshold"], rel=1e-9, abs=1e-12)
    assert st["tau"] == pytest.approx(truth["tau"], rel=1e-9, abs=1e-12)
    assert st["v_threshold_rel"] == pytest.approx(abs(truth["v_threshold"]) / truth["v_thr"], rel=1e-9)
    assert st["tau_rel"] == pytest.approx(abs(truth["tau"]) / truth["tau_value"], rel=1e-9)


def test_norms_accumulate_over_recorded_backward_passes():
    torch.manual_seed(1)
    lif = LIF(backend="torch", surrogate="rectangular").double()
    xs = [(torch.randn(T, B, N, dtype=torch.float64) * 2).requires_grad_(True) for _ in range(2)]
    rec = GradientRecorder([("l", lif)])
    singles = []
    for x in xs:
        rec.reset()
        rec.attach()
        lif(x).sum().backward()
        rec.detach()
        singles.append(rec.summary()["l"]["m_norm"])
    rec.reset()
    rec.attach()
    for x in xs:
        lif(x).sum().backward()
    rec.detach()
    both = rec.summary()["l"]["m_norm"]
    assert both == pytest.approx([math.hypot(a, b) for a, b in zip(*singles)])
    assert rec.backward_calls == 2


def test_detached_recorder_records_nothing_and_restores_the_monitor():
    lif = LIF(backend="torch")
    rec = GradientRecorder([("l", lif)])
    rec.attach()
    rec.detach()
    assert lif.monitor is None
    lif(torch.randn(T, B, N, requires_grad=True)).sum().backward()
    assert rec.summary() == {}


def test_chains_with_the_forward_monitor_in_either_detach_order():
    torch.manual_seed(2)
    lif = LIF(backend="torch")
    fwd = NeuronRecorder([("l", lif)])
    grad = GradientRecorder([("l", lif)])
    fwd.attach()
    grad.attach()  # wraps the forward recorder's monitor and keeps calling it
    lif(torch.randn(T, B, N) * 2)
    assert fwd.calls == 1 and "window" in grad.summary()["l"]
    fwd.detach()  # restores what it saw before it (None), dropping the gradient recorder's wrapper
    grad.detach()
    assert lif.monitor is None
    fwd.attach()
    grad.attach()
    grad.detach()  # outermost: hands the slot back to the forward recorder
    before = list(grad.summary()["l"]["window"])
    lif(torch.randn(T, B, N) * 2)
    assert fwd.calls == 2 and grad.summary()["l"]["window"] == before
    fwd.detach()
    assert lif.monitor is None


def test_gradient_metrics_keys():
    summary = {"body.0.lif": {"window": [0.5, 0.25], "m_norm": [1.0, 2.0], "u_norm": [3.0], "v_threshold": 0.1,
                              "v_threshold_rel": 0.2, "tau": math.nan, "tau_rel": math.nan}}
    assert gradient_metrics(summary) == {
        "neuron/body.0.lif/window_t1": 0.5,
        "neuron/body.0.lif/window_t2": 0.25,
        "grad/body.0.lif/m_norm_t1": 1.0,
        "grad/body.0.lif/m_norm_t2": 2.0,
        "grad/body.0.lif/u_norm_t1": 3.0,
        "grad/body.0.lif/v_threshold": 0.1,
        "grad/body.0.lif/v_threshold_rel": 0.2,
    }


def test_frozen_parameters_give_nan():
    lif = LIF(backend="torch", learn_tau=False, learn_threshold=False)
    rec = GradientRecorder([("l", lif)])
    rec.attach()
    lif(torch.randn(T, B, N, requires_grad=True)).sum().backward()
    rec.record_parameters()
    rec.detach()
    st = rec.summary()["l"]
    assert math.isnan(st["v_threshold"]) and math.isnan(st["tau"])
    assert "grad/l/tau" not in gradient_metrics(rec.summary())


def test_reusing_an_input_tensor_does_not_count_an_old_hook():
    lif = LIF(backend="torch").double().eval()
    x = (torch.randn(T, B, N, dtype=torch.float64) * 2).requires_grad_(True)
    rec = GradientRecorder([("l", lif)])
    norms = []
    for _ in range(2):
        rec.reset()
        rec.attach()
        lif(x).sum().backward()
        rec.detach()
        norms.append(rec.summary()["l"]["m_norm"])
    assert rec.backward_calls == 1 and norms[0] == norms[1]


@pytest.mark.parametrize("backend", ["fused", pytest.param("compiled", marks=pytest.mark.slow)])
def test_other_backends_give_the_reference_telemetry(backend):
    # the hooks sit on the neuron's input and monitor, which every backend feeds: whatever the backend
    # dispatches to on this machine must give the reference loop's numbers (Triton: GPU only, untested here)
    torch.manual_seed(3)
    x = torch.randn(T, B, N) * 2
    results = []
    for name in ("torch", backend):
        lif = LIF(backend=name, surrogate="triangular")
        rec = GradientRecorder([("l", lif)])
        rec.attach()
        lif(x.clone().requires_grad_(True)).sum().backward()
        rec.record_parameters()
        rec.detach()
        results.append(rec.summary()["l"])
    for key in ("window", "m_norm", "u_norm"):
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-5)
    assert results[1]["v_threshold"] == pytest.approx(results[0]["v_threshold"], rel=1e-5)


def test_gradient_pass_leaves_grads_and_mode_alone():
    from snn_lightning.models import create_model
    from snn_lightning.telemetry import gradient_pass

    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=2, neuron={"backend": "torch", "surrogate": "sigmoid"}).train()
    w = net.head[2].weight
    w.grad = torch.ones_like(w)
    before = net.stem.lif.mp_init_mean.clone()
    x, y = torch.randn(4, 1, 6, 6) * 3, torch.tensor([0, 1, 2, 0])
    summary = gradient_pass(net, [(x, y)], lambda logits, t: torch.nn.functional.cross_entropy(logits.mean(0), t))
    assert set(summary) == {"stem.lif", "body.0.lif"}
    assert len(summary["stem.lif"]["m_norm"]) == 2 and summary["stem.lif"]["m_norm"][0] > 0
    assert torch.equal(w.grad, torch.ones_like(w)) and net.stem.lif.raw_threshold.grad is None
    assert net.training and torch.equal(net.stem.lif.mp_init_mean, before)
