"""NIR export/import: a round trip through nir.write/nir.read gives the trained model's logits."""
import copy
import warnings

import nir
import numpy as np
import pytest
import torch

from snn_lightning.export import from_nir, to_nir
from snn_lightning.export.nir_graph import DT
from snn_lightning.models import create_model

from conftest import assert_one_line  # noqa: E402
from export_models import T, trained_like  # noqa: E402

TOL = 1e-5  # the bar, in float64; the measured gap is ~1e-14


def logits(net, x):
    with torch.no_grad():
        return net(x)


def round_trip(model, size, tmp_path):
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(model, input_size=size))
    return from_nir(path)


def inputs(cin, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    static = torch.randn(3, cin, size, size, generator=g, dtype=torch.float64) * 2
    frames = torch.randn(T, 3, cin, size, size, generator=g, dtype=torch.float64) * 4
    return static, frames


def check_round_trip(name, tmp_path, neuron=None):
    model, cin, size = trained_like(name, neuron=neuron)
    lifs = [m for _, m in model.neuron_layers()]
    assert all(abs(float(m.v_threshold.detach()) - 1) > 1e-3 for m in lifs)  # non-unit thresholds
    assert all(float(m.mp_init_mean) != 0 for m in lifs)  # non-zero MP-Init means
    assert all(m.reset_mode == (neuron or {}).get("reset", "soft") for m in lifs)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(not torch.equal(b.running_var, torch.ones_like(b.running_var)) for b in bns)  # trained statistics
    imported = round_trip(model, size, tmp_path)
    for x in inputs(cin, size):
        ref, got = logits(model, x), logits(imported, x)
        assert got.shape == ref.shape == (T, 3, 10)
        assert (got - ref).abs().max().item() < TOL
        assert ref.std(dim=1).max() > 1e-2  # the samples' logits differ: every weight matters
    return model, imported


@pytest.mark.parametrize("name", ["small_cnn", "cnn7"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_round_trip_gives_the_trained_logits(name, reset, tmp_path):
    check_round_trip(name, tmp_path, neuron={"reset": reset})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet19", "sew_resnet34"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_round_trip_residual_networks(name, reset, tmp_path):
    check_round_trip(name, tmp_path, neuron={"reset": reset})


@pytest.mark.slow
def test_round_trip_plain_resnet34(tmp_path):
    check_round_trip("resnet34", tmp_path)


def test_graph_holds_standard_nodes_and_the_documented_metadata():
    model, cin, size = trained_like("sew_resnet34")
    g = to_nir(model, input_size=size)
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert kinds == {"Input", "Conv2d", "LIF", "Scale", "SumPool2d", "Threshold", "AvgPool2d", "Flatten", "Affine", "Output"}
    assert g.metadata["T"] == T and g.metadata["dt"] == DT and g.metadata["encoding"] == "direct"
    lifs = {k: n for k, n in g.nodes.items() if isinstance(n, nir.LIF)}
    assert len(lifs) == len(model.neuron_layers())
    for (qual, lif), key in zip(model.neuron_layers(), lifs):
        node = lifs[key]
        assert key == qual  # nodes are named after the modules they come from
        assert node.metadata["reset"] == "soft"
        assert node.metadata["v_init"] == pytest.approx(float(lif.mp_init_mean))
        np.testing.assert_allclose(node.tau, float(lif.tau.detach()) * DT)
        np.testing.assert_allclose(node.v_threshold, float(lif.v_threshold.detach()))
        assert np.all(node.r == 1) and np.all(node.v_leak == 0) and np.all(node.v_reset == 0)
    # residual additions are nodes with several inputs; the folded identity scales are explicit
    fan_in = {}
    for a, b in g.edges:
        fan_in[b] = fan_in.get(b, 0) + 1
    assert max(fan_in.values()) == 2
    scales = [n for n in g.nodes.values() if isinstance(n, nir.Scale)]
    assert len(scales) == len(model.body) and any(not np.allclose(s.scale, 1) for s in scales)
    assert not any("norm" in k for k in g.nodes)  # every norm fused into its conv


def test_metadata_is_what_makes_the_logits_equal(tmp_path):
    """Mutation checks: a consumer that ignores soft reset or v_init gets different logits."""
    model, cin, size = trained_like("small_cnn")
    x = inputs(cin, size)[0]
    ref = logits(model, x)
    for key, value in (("reset", "hard"), ("v_init", 0.0)):
        g = to_nir(model, input_size=size)
        for node in g.nodes.values():
            if isinstance(node, nir.LIF):
                node.metadata[key] = value
        assert (logits(from_nir(g), x) - ref).abs().max() > 1e-2, key
    plain = to_nir(model, input_size=size)
    for node in plain.nodes.values():
        if isinstance(node, nir.LIF):
            node.metadata = {}  # plain NIR: hard reset from 0
    hard = copy.deepcopy(model)
    for _, m in hard.neuron_layers():
        m.reset_mode = "hard"
        m.mp_init = False
    torch.testing.assert_close(logits(from_nir(plain), x), logits(hard, x), rtol=0, atol=TOL)


def test_as_sg_model_fires_on_the_absolute_comparison(tmp_path):
    model, cin, size = trained_like("small_cnn", neuron={"sg_mode": "as"})
    g = to_nir(model, input_size=size)
    assert {n.metadata["fire"] for n in g.nodes.values() if isinstance(n, nir.LIF)} == {"v - v_threshold > 0"}
    x = inputs(cin, size)[0]
    assert (logits(from_nir(g), x) - logits(model, x)).abs().max() < TOL


@pytest.mark.parametrize("norm", ["tebn", "tab"])
def test_time_dependent_norms_are_refused_in_one_line(norm):
    model = create_model("small_cnn", num_classes=3, in_channels=1, T=2, norm=norm, channels=4)
    with pytest.raises(ValueError, match=f"cannot export {norm.upper()} \\(stem.norm\\) to NIR") as err:
        to_nir(model, input_size=8)
    assert "allowed norms: none, bn, tdbn" in assert_one_line(err.value)


@pytest.mark.parametrize("norm", ["none", "bn"])
def test_other_norms_export(norm, tmp_path):
    model, cin, size = trained_like("small_cnn", norm=norm)
    x = inputs(cin, size)[1]
    assert (logits(round_trip(model, size, tmp_path), x) - logits(model, x)).abs().max() < TOL


def test_bad_requests_fail_in_one_line():
    model = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=4)
    if getattr(model, "input_size", None) is None:
        with pytest.raises(ValueError, match="input_size") as err:
            to_nir(model)
        assert_one_line(err.value)
    with pytest.raises(ValueError, match="SpikingNetwork") as err:
        to_nir(torch.nn.Linear(2, 2))
    g = nir.NIRGraph.from_list(nir.Input(input_type={"input": np.array([2])}), nir.CubaLI(
        tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
    with pytest.raises(ValueError, match="is a CubaLI; supported: ") as err:
        from_nir(g)
    assert_one_line(err.value)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("sg_mode", ["as", "rs", "trsg"])
def test_inference_lif_matches_the_reference_loop(reset, sg_mode):
    """InferenceLIF (from_nir's and TorchScript's neuron) against LIF.reference, spike for spike."""
    from snn_lightning.export import InferenceLIF
    from snn_lightning.neurons import LIF

    torch.manual_seed(0)
    lif = LIF(tau=1.7, v_threshold=0.6, reset=reset, sg_mode=sg_mode, backend="torch").double()
    lif.mp_init_mean.fill_(0.23)
    lif.scaled_output = False  # the folded form: 0/1 spikes
    x = torch.randn(6, 4, 50, dtype=torch.float64)
    with torch.no_grad():
        ref = lif.eval()(x)
        got = InferenceLIF.from_lif(lif)(x)
    assert torch.equal(got, ref) and 0 < ref.mean() < 1
    lif.scaled_output = True
    if sg_mode == "trsg":
        with pytest.raises(ValueError, match="folded LIF"):
            InferenceLIF.from_lif(lif)


@pytest.mark.parametrize("name,norm", [("small_cnn", "tebn"), ("small_cnn", "tab"), ("resnet19", "tdbn")])
def test_torchscript_gives_the_trained_logits_for_any_batch(name, norm, tmp_path):
    from snn_lightning.export import to_torchscript

    model, cin, size = trained_like(name, norm=norm)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = to_torchscript(model, input_size=size)  # traced on a batch of 2
    unfused = [w for w in caught if "unfused" in str(w.message)]
    assert bool(unfused) == (norm != "tdbn")  # TEBN/TAB stay in place, named in the warning
    with pytest.warns(FutureWarning):  # torch.jit.save/load are deprecated upstream
        torch.jit.save(traced, str(tmp_path / "net.pt"))
        loaded = torch.jit.load(str(tmp_path / "net.pt"))
    x = inputs(cin, size)[0]  # a batch of 3
    assert (logits(loaded, x) - logits(model, x)).abs().max() < TOL

