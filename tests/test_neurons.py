"""The LIF neuron against the paper's equations (float64, hand computations)."""
import itertools

import pytest
import torch

from snn_lightning.neurons import LIF, reset_net
from snn_lightning.neurons import functional as F
from snn_lightning.surrogates import Rectangular, Sigmoid, Triangular



@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


SHAPES = {"rectangular": Rectangular(1.0), "triangular": Triangular(1.0), "sigmoid": Sigmoid(4.0)}


def lif(**kw):
    kw.setdefault("backend", "torch")
    return LIF(**kw).double()


# --- Eq. 1-3: dynamics ---------------------------------------------------------------------------
def loop_by_hand(x, tau, vth, reset, u0=0.0):
    """Python floats, one neuron: the paper's equations written out."""
    u, outs, us = u0, [], []
    for xt in x:
        m = (1 - 1 / tau) * u + xt / tau
        s = 1.0 if m > vth else 0.0
        u = m - vth * s if reset == "soft" else m * (1 - s)
        outs.append(s)
        us.append(u)
    return outs, us


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("tau,vth", [(2.0, 1.0), (1.5, 0.4), (4.0, 2.5)])
def test_dynamics_match_equations(reset, tau, vth):
    x = [3.0, 0.2, 1.7, -0.5, 2.2, 4.0, 0.0]
    n = lif(tau=tau, v_threshold=vth, reset=reset, sg_mode="rs", mp_init=False)
    out = n(torch.tensor(x).view(-1, 1))
    s_ref, u_ref = loop_by_hand(x, tau, vth, reset)
    assert out.view(-1).tolist() == s_ref
    assert n.v.item() == pytest.approx(u_ref[-1], abs=1e-12)
    assert n.tau.item() == pytest.approx(tau) and n.v_threshold.item() == pytest.approx(vth)


def test_trsg_emits_threshold_times_spike_and_as_emits_spike():
    x = torch.tensor([[3.0], [0.1], [3.0]])
    o_tr = lif(v_threshold=0.7, sg_mode="trsg", mp_init=False)(x)
    o_as = lif(v_threshold=0.7, sg_mode="as", mp_init=False)(x)
    assert torch.allclose(o_tr, 0.7 * o_as)
    assert set(o_as.view(-1).tolist()) <= {0.0, 1.0} and o_as.sum() > 0


def test_detach_reset_changes_gradient_not_values():
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 5) * 3).requires_grad_(True)
    grads, outs = [], []
    for detach in (False, True):
        n = lif(detach_reset=detach, mp_init=False, surrogate="sigmoid")
        o = n(x)
        (g,) = torch.autograd.grad(o.sum(), x)
        grads.append(g)
        outs.append(o)
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("detach", [False, True])
def test_reset_gradients(detach):
    m = torch.tensor([0.3, 1.7], requires_grad=True)
    v = torch.tensor(0.9, requires_grad=True)
    s = torch.tensor([0.0, 1.0], requires_grad=True)
    u = F.reset(m, s, v, "soft", detach)
    gm, gv, gs = torch.autograd.grad(u.sum(), (m, v, s), allow_unused=True)
    assert gm.tolist() == [1.0, 1.0] and gv.item() == -1.0
    assert (gs is None) if detach else gs.tolist() == [-0.9, -0.9]
    u = F.reset(m, s, v, "hard", detach)
    gm, gs = torch.autograd.grad(u.sum(), (m, s), allow_unused=True)
    assert gm.tolist() == [1.0, 0.0]
    assert (gs is None) if detach else gs.tolist() == [-0.3, -1.7]


def test_smooth_formulas_pass_gradcheck():
    u = torch.randn(5, requires_grad=True)
    i = torch.randn(5, requires_grad=True)
    tau = torch.tensor(2.3, requires_grad=True)
    assert torch.autograd.gradcheck(F.charge, (u, i, tau))
    m = torch.randn(5, requires_grad=True)
    v = torch.tensor(0.8, requires_grad=True)
    s = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    assert torch.autograd.gradcheck(lambda m, v: F.reset(m, s, v, "soft"), (m, v))
    assert torch.autograd.gradcheck(lambda m: F.reset(m, s, v.detach(), "hard"), (m,))
    assert torch.autograd.gradcheck(lambda v: F.layer_output(s, v, "trsg"), (v,))
    for mode in ("as", "rs", "trsg"):
        assert torch.autograd.gradcheck(lambda m, v: F.sg_argument(m, v, mode), (m, v))
    w = torch.tensor(0.3, requires_grad=True)
    assert torch.autograd.gradcheck(F.tau_from_raw, (w,))
    assert torch.autograd.gradcheck(F.v_threshold_from_raw, (w,))


def test_parameterization_inverts():
    for tau in (1.1, 2.0, 7.5):
        assert F.tau_from_raw(torch.tensor(F.raw_from_tau(tau))).item() == pytest.approx(tau)
    for v in (0.01, 0.5, 1.0, 4.0, 30.0):
        assert F.v_threshold_from_raw(torch.tensor(F.raw_from_v_threshold(v))).item() == pytest.approx(v)


# --- Eqs. 4-11: the three SG formulations -------------------------------------------------------
def sg_grads(mode, shape, m_val, v_val):
    m = torch.tensor([m_val], requires_grad=True)
    v = torch.tensor(v_val, requires_grad=True)
    o = F.layer_output(F.fire(m, v, shape, mode), v, mode)
    gm, gv = torch.autograd.grad(o.sum(), (m, v))
    return o.item(), gm.item(), gv.item()


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("m_val,v_val", [(0.9, 1.0), (1.2, 1.0), (0.3, 0.25), (2.5, 2.0), (0.7, 0.5), (5.0, 4.0)])
def test_sg_formulations_match_paper(name, m_val, v_val):
    f1 = SHAPES[name].derivative
    # AS-SG (Eqs. 5-7): x = M − V, O = S
    x = torch.tensor(m_val - v_val)
    o, gm, gv = sg_grads("as", SHAPES[name], m_val, v_val)
    assert o == float(m_val > v_val)
    assert gm == pytest.approx(f1(x).item()) and gv == pytest.approx(-f1(x).item())
    # RS-SG (Eqs. 8-9): x = M/V − 1, O = S
    x = torch.tensor(m_val / v_val - 1)
    o, gm, gv = sg_grads("rs", SHAPES[name], m_val, v_val)
    assert gm == pytest.approx(f1(x).item() / v_val)
    assert gv == pytest.approx(-(m_val / v_val**2) * f1(x).item())
    # TrSG (Eqs. 10-11): O = V·S, ∂O/∂M = f'(x), ∂O/∂V = S − (M/V) f'(x)
    o, gm, gv = sg_grads("trsg", SHAPES[name], m_val, v_val)
    s = float(m_val > v_val)
    assert o == pytest.approx(v_val * s)
    assert gm == pytest.approx(f1(x).item())
    assert gv == pytest.approx(s - (m_val / v_val) * f1(x).item())


@pytest.mark.parametrize("name", list(SHAPES))
def test_trsg_gradient_is_threshold_invariant(name):
    """Eq. 11: at the same relative position M/V_thr, ∂O/∂M is identical for every V_thr."""
    rel = torch.linspace(0.2, 1.8, 17)
    per_v = {}
    for v in (0.25, 0.5, 1.0, 2.0, 4.0):
        m = (rel * v).requires_grad_(True)
        o = F.layer_output(F.fire(m, torch.tensor(v), SHAPES[name], "trsg"), torch.tensor(v), "trsg")
        (per_v[v],) = torch.autograd.grad(o.sum(), m)
        # RS-SG at the same points scales as 1/V (the problem TrSG fixes)
        m2 = (rel * v).requires_grad_(True)
        (g_rs,) = torch.autograd.grad(F.fire(m2, torch.tensor(v), SHAPES[name], "rs").sum(), m2)
        assert torch.allclose(g_rs * v, per_v[v])
    ref = per_v[1.0]
    assert ref.abs().sum() > 0
    for g in per_v.values():
        assert torch.allclose(g, ref, atol=1e-12)


def test_as_window_is_absolute():
    """AS-SG window has fixed width γ around V_thr: with V_thr = 4 most relative positions get nothing."""
    rel = torch.linspace(0.2, 1.8, 17)
    m = (rel * 4.0).requires_grad_(True)
    (g,) = torch.autograd.grad(F.fire(m, torch.tensor(4.0), Rectangular(1.0), "as").sum(), m)
    assert (g > 0).sum() <= 3


def test_neuron_parameter_gradients_flow_through_time():
    torch.manual_seed(1)
    x = (torch.rand(5, 4, 8) * 3).requires_grad_(True)
    for mode, reset, learn in itertools.product(("as", "rs", "trsg"), ("soft", "hard"), (True, False)):
        n = lif(sg_mode=mode, reset=reset, learn_tau=learn, learn_threshold=learn, surrogate="triangular")
        n(x).sum().backward()
        names = {k for k, p in n.named_parameters()}
        assert names == ({"raw_tau", "raw_threshold"} if learn else set())
        if learn:
            assert n.raw_tau.grad.abs() > 0 and n.raw_threshold.grad.abs() > 0


# --- MP-Init ------------------------------------------------------------------------------------
X2 = torch.tensor([[[2.5, 0.4], [3.0, 1.0]], [[0.0, 0.2], [1.0, 0.6]]])  # [T=2, B=2, N=2]


def test_mp_init_hand_computed_two_steps():
    n = lif(tau=2.0, v_threshold=1.0, reset="soft")
    assert n.mp_init_mean.item() == 0.0
    n(X2)
    # t1: M = x/2 → [1.25, .2], [1.5, .5]; neuron 0 fires in both samples; U = [.25, .2], [.5, .5]
    # t2: M = U/2 + x/2 → [.125, .2], [.75, .55]; no spike. Active pairs: (b0,n0), (b1,n0).
    assert n.mp_init_mean.item() == pytest.approx(0.1 * (0.125 + 0.75) / 2)
    r = n.mp_init_mean.item()
    reset_net(n)
    n(X2)
    # second pass starts from U[0] = r everywhere
    u = [[r, r], [r, r]]
    fired = [[False, False], [False, False]]
    for t in range(2):
        for b in range(2):
            for j in range(2):
                m = 0.5 * u[b][j] + 0.5 * X2[t, b, j].item()
                s = m > 1.0
                fired[b][j] |= s
                u[b][j] = m - s
    act = [u[b][j] for b in range(2) for j in range(2) if fired[b][j]]
    assert n.mp_init_mean.item() == pytest.approx(0.9 * r + 0.1 * sum(act) / len(act))


def test_mp_init_all_statistic_and_silent_layer():
    n = lif(mp_init_stat="all")
    n(X2)
    assert n.mp_init_mean.item() == pytest.approx(0.1 * (0.125 + 0.2 + 0.75 + 0.55) / 4)
    silent = lif()
    silent(torch.zeros(3, 2, 4))
    assert silent.mp_init_mean.item() == 0.0  # nothing fired: mean 0, no division by zero


def test_mp_init_used_and_frozen_in_eval():
    n = lif()
    n.mp_init_mean.fill_(0.8)
    n.eval()
    out = n(torch.tensor([[0.0], [0.0]]) + 1.3)  # M[1] = 0.4 + 0.65 > 1 only thanks to U[0] = 0.8
    assert out[0].item() == pytest.approx(1.0)
    assert n.mp_init_mean.item() == 0.8
    off = lif(mp_init=False)
    off.mp_init_mean.fill_(0.8)
    off.train()
    assert off(torch.tensor([[1.3], [0.0]]))[0].item() == 0.0  # off: U[0] = 0, never updated
    assert off.mp_init_mean.item() == 0.8


def test_mp_init_state_dict_round_trip():
    a = lif(tau=3.0, v_threshold=0.6, learn_tau=False)
    for _ in range(3):
        a(torch.rand(4, 8, 16) * 3)
    assert a.mp_init_mean.item() != 0.0
    sd = a.state_dict()
    assert {"mp_init_mean", "raw_tau", "raw_threshold"} <= set(sd)
    b = lif(learn_tau=False)
    b.load_state_dict(sd)
    assert b.mp_init_mean.item() == a.mp_init_mean.item()
    a.eval(), b.eval()
    x = torch.rand(4, 2, 16) * 2
    assert torch.equal(a(x), b(x))


def test_mp_init_no_gradient_into_buffer():
    n = lif()
    x = (torch.rand(3, 2, 5) * 3).requires_grad_(True)
    n(x).sum().backward()
    assert not n.mp_init_mean.requires_grad and n.mp_init_mean.grad is None


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tau": 1.0}, "tau must be greater than 1, got 1.0"),
        ({"tau": 0.5}, "tau"),
        ({"v_threshold": 0.0}, "v_threshold must be greater than 0"),
        ({"v_threshold": -1}, "v_threshold"),
        ({"reset": "zero"}, "unknown reset 'zero'; allowed: \\['soft', 'hard'\\]"),
        ({"sg_mode": "trs"}, "unknown sg_mode 'trs'; allowed: \\['as', 'rs', 'trsg'\\]"),
        ({"surrogate": "gauss"}, "unknown surrogate 'gauss'"),
        ({"mp_init_momentum": 0.0}, "mp_init_momentum"),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIF(**kwargs)


def test_carry_state_continues_a_sequence_until_reset():
    torch.manual_seed(2)
    x = torch.rand(6, 2, 3) * 3
    whole = lif(mp_init=False)(x)
    n = lif(mp_init=False, carry_state=True)
    assert torch.equal(torch.cat([n(x[:2]), n(x[2:])]), whole)
    n.reset()
    assert n.v is None and torch.equal(n(x[:3]), whole[:3])
    fresh = lif(mp_init=False)
    fresh(x[:2])
    assert torch.equal(fresh(x[2:4]), whole[:2] * 0 + lif(mp_init=False)(x[2:4]))


def test_bad_input_rank():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\].*shape \(5,\)"):
        lif()(torch.zeros(5))
