"""Normalization layers against hand-written formulas (float64), and their SyncBatchNorm conversion."""
import pytest
import torch
from torch import nn

from snn_lightning.norm import NORM_KINDS, TAB, TDBN, TEBN, NoNorm, PerFrameBN, build_norm

EPS = 1e-5


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def randomize_affine(layer):
    """Non-trivial γ, β (and p) so the formulas are really exercised."""
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
        if hasattr(layer, "p"):
            layer.p.uniform_(0.5, 1.5)
    return layer


def channel_view(v, rank):
    return v.reshape(1, -1, *([1] * (rank - 2)))


def normalize(x, gamma, beta, mean, var):
    """(x − μ)/√(σ² + ε)·γ + β with per-channel vectors, x is [N, C, ...]."""
    r = x.dim()
    return (x - channel_view(mean, r)) / torch.sqrt(channel_view(var, r) + EPS) * channel_view(gamma, r) + channel_view(beta, r)


def batch_stats(x):
    """Per-channel mean, biased and unbiased variance of x [N, C, ...]."""
    dims = [0] + list(range(2, x.dim()))
    return x.mean(dims), x.var(dims, unbiased=False), x.var(dims, unbiased=True)


def steps(p, n, rank):
    return p.reshape(-1)[:n].reshape(n, *([1] * (rank - 1)))


X_SHAPE = (3, 4, 5, 3, 3)  # [T, B, C, H, W]


# --- construction -----------------------------------------------------------------------------
def test_build_norm_unknown_kind_names_value_and_allowed():
    with pytest.raises(ValueError) as e:
        build_norm("layernorm", 8, 4)
    msg = str(e.value)
    assert "layernorm" in msg
    for kind in NORM_KINDS:
        assert kind in msg


@pytest.mark.parametrize("T", [0, -1, 2.0, None])
def test_build_norm_rejects_bad_T(T):
    with pytest.raises(ValueError):
        build_norm("tdbn", 8, T)


def test_build_norm_classes_and_children():
    assert isinstance(build_norm("none", 4, 2), NoNorm)
    for kind, cls in [("bn", PerFrameBN), ("tdbn", TDBN), ("tebn", TEBN)]:
        layer = build_norm(kind, 4, 3)
        assert type(layer) is cls and isinstance(layer.bn, nn.BatchNorm2d)
    tab = build_norm("tab", 4, 3)
    assert isinstance(tab, TAB) and isinstance(tab.bns, nn.ModuleList) and len(tab.bns) == 3
    assert isinstance(build_norm("tdbn", 4, 3, dim=1).bn, nn.BatchNorm1d)
    assert build_norm("tebn", 4, 3).p.shape == (3, 1, 1, 1, 1)
    assert build_norm("tab", 4, 3, dim=1).p.shape == (3, 1, 1, 1)
    assert build_norm("tdbn", 4, 3, eps=1e-3).bn.eps == 1e-3
    for kind in ("bn", "tdbn", "tebn"):  # γ = 1 init (no α·V_thr scaling), β = 0
        bn = build_norm(kind, 4, 3).bn
        assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))


@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("dim,shape", [(2, (3, 2, 4, 5, 5)), (1, (3, 2, 4)), (1, (3, 2, 4, 6)), (3, (3, 2, 4, 2, 2, 2))])
def test_shapes_preserved(kind, dim, shape):
    layer = build_norm(kind, 4, 3, dim=dim)
    for mode in ("train", "eval"):
        getattr(layer, mode)()
        for t in (1, 3):  # T' <= T, including a static stem's T' = 1
            x = torch.randn(t, *shape[1:])
            assert layer(x).shape == x.shape


@pytest.mark.parametrize("kind", ["bn", "tdbn", "tebn", "tab"])
def test_bad_rank_raises(kind):
    layer = build_norm(kind, 4, 3)
    with pytest.raises(ValueError, match=r"\(2, 4, 5, 5\)"):
        layer(torch.randn(2, 4, 5, 5))


@pytest.mark.parametrize("kind", ["tebn", "tab"])
def test_more_timesteps_than_built_raises(kind):
    with pytest.raises(ValueError, match="T=3"):
        build_norm(kind, 4, 3)(torch.randn(4, 2, 4, 3, 3))


def test_none_is_identity():
    x = torch.randn(*X_SHAPE)
    assert build_norm("none", 5, 3)(x) is x


# --- tdBN ---------------------------------------------------------------------------------------
def test_tdbn_train_and_eval_match_formula():
    layer = randomize_affine(build_norm("tdbn", 5, 3)).train()
    x = torch.randn(*X_SHAPE) * 2 + 0.5
    y = layer(x)
    flat = x.flatten(0, 1)
    mean, var_b, var_u = batch_stats(flat)
    bn = layer.bn
    expected = normalize(flat, bn.weight, bn.bias, mean, var_b).unflatten(0, (3, 4))
    torch.testing.assert_close(y, expected)
    # running statistics over all of T, B, H, W (n = T·B·H·W, unbiased variance)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var_u)
    assert bn.num_batches_tracked.item() == 1

    layer.eval()
    x2 = torch.randn(2, 4, 5, 3, 3)
    expected = normalize(x2.flatten(0, 1), bn.weight, bn.bias, bn.running_mean, bn.running_var).unflatten(0, (2, 4))
    torch.testing.assert_close(layer(x2), expected)


# --- TEBN ---------------------------------------------------------------------------------------
def test_tebn_train_and_eval_match_formula():
    layer = randomize_affine(build_norm("tebn", 5, 3)).train()
    x = torch.randn(*X_SHAPE) * 2 - 0.3
    y = layer(x)
    flat = x.flatten(0, 1)
    mean, var_b, var_u = batch_stats(flat)
    bn = layer.bn
    expected = normalize(flat, bn.weight, bn.bias, mean, var_b).unflatten(0, (3, 4)) * steps(layer.p, 3, 5)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var_u)

    layer.eval()
    x2 = torch.randn(2, 4, 5, 3, 3)  # T' = 2 < T uses p_0, p_1
    expected = normalize(x2.flatten(0, 1), bn.weight, bn.bias, bn.running_mean, bn.running_var).unflatten(0, (2, 4))
    torch.testing.assert_close(layer(x2), expected * steps(layer.p, 2, 5))


def test_tebn_p_gets_gradient():
    layer = build_norm("tebn", 5, 3)
    layer(torch.randn(*X_SHAPE)).pow(2).sum().backward()
    assert layer.p.grad is not None and layer.p.grad.abs().sum() > 0


# --- TAB ----------------------------------------------------------------------------------------
def test_tab_train_and_eval_match_formula():
    T = X_SHAPE[0]
    layer = randomize_affine(build_norm("tab", 5, T)).train()
    x = torch.randn(*X_SHAPE) * 1.5 + torch.arange(T).reshape(T, 1, 1, 1, 1)  # statistics drift over t
    y = layer(x)
    for t in range(T):
        prefix = x[: t + 1].flatten(0, 1)  # timesteps 0..t
        mean, var_b, var_u = batch_stats(prefix)
        bn = layer.bns[t]
        expected = normalize(x[t], bn.weight, bn.bias, mean, var_b) * layer.p.reshape(-1)[t] ** 2
        torch.testing.assert_close(y[t], expected)
        torch.testing.assert_close(bn.running_mean, 0.1 * mean)
        torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var_u)

    layer.eval()
    x2 = torch.randn(*X_SHAPE)
    y2 = layer(x2)
    for t in range(T):
        bn = layer.bns[t]
        expected = normalize(x2[t], bn.weight, bn.bias, bn.running_mean, bn.running_var) * layer.p.reshape(-1)[t] ** 2
        torch.testing.assert_close(y2[t], expected)


def test_tab_gradients_reach_every_bn_and_p():
    layer = build_norm("tab", 5, 3)
    layer(torch.randn(*X_SHAPE)).pow(2).sum().backward()
    assert layer.p.grad.abs().sum() > 0
    for bn in layer.bns:
        assert bn.weight.grad.abs().sum() > 0


# --- per-frame BN -------------------------------------------------------------------------------
def test_per_frame_bn_train_and_eval_match_formula():
    T = X_SHAPE[0]
    layer = randomize_affine(build_norm("bn", 5, T)).train()
    x = torch.randn(*X_SHAPE) + torch.arange(T).reshape(T, 1, 1, 1, 1)
    y = layer(x)
    bn = layer.bn
    rm, rv = torch.zeros(5), torch.ones(5)
    for t in range(T):  # statistics of frame t only; running stats updated once per frame, in order
        mean, var_b, var_u = batch_stats(x[t])
        torch.testing.assert_close(y[t], normalize(x[t], bn.weight, bn.bias, mean, var_b))
        rm, rv = 0.9 * rm + 0.1 * mean, 0.9 * rv + 0.1 * var_u
    torch.testing.assert_close(bn.running_mean, rm)
    torch.testing.assert_close(bn.running_var, rv)
    assert bn.num_batches_tracked.item() == T

    layer.eval()
    x2 = torch.randn(*X_SHAPE)
    y2 = layer(x2)
    for t in range(T):
        torch.testing.assert_close(y2[t], normalize(x2[t], bn.weight, bn.bias, rm, rv))


# --- SyncBatchNorm ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bn", "tdbn", "tebn", "tab"])
def test_convert_sync_batchnorm_converts_only_the_child(kind):
    layer = randomize_affine(build_norm(kind, 5, 3))
    with torch.no_grad():  # give it non-trivial running statistics first
        layer.train()(torch.randn(*X_SHAPE))
    model = nn.Sequential(layer)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapper = converted[0]
    assert type(wrapper) is type(layer)
    children = list(wrapper.bns) if kind == "tab" else [wrapper.bn]
    assert children and all(isinstance(c, nn.SyncBatchNorm) for c in children)
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) for m in converted.modules())
    assert sum(p.numel() for p in converted.parameters()) == sum(p.numel() for p in layer.parameters())

    # Eval forward with SyncBatchNorm on CPU: compare where this torch build supports it.
    x = torch.randn(*X_SHAPE)
    reference = build_norm(kind, 5, 3)
    reference.load_state_dict(wrapper.state_dict())
    try:
        y = wrapper.eval()(x)
    except (ValueError, RuntimeError) as e:  # pragma: no cover - depends on the torch build
        pytest.skip(f"SyncBatchNorm eval forward not supported on CPU here: {e}")
    torch.testing.assert_close(y, reference.eval()(x))
