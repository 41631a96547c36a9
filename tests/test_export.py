"""Folding TrSG thresholds for binary-spike inference: same logits, 0/1 spikes everywhere."""
import copy

import pytest
import torch
from torch import nn

from snn_lightning.export import fold_module, fold_thresholds
from snn_lightning.models import create_model
from snn_lightning.models.base import TimeDistributed
from snn_lightning.neurons import LIF

from export_models import B, T, trained_like  # noqa: E402


def neuron_outputs(model, x):
    """Run ``model(x)`` and collect every neuron's output (forward hooks)."""
    outs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach())) for _, m in model.neuron_layers()]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, outs


def assert_binary(outs):
    for o in outs:
        assert torch.all((o == 0) | (o == 1))


@pytest.mark.parametrize("name", ["resnet19", "cnn7", "sew_resnet34", "small_cnn"])
def test_folded_logits_equal_and_spikes_binary(name):
    model, cin, size = trained_like(name)
    lifs = [m for _, m in model.neuron_layers()]
    vthr = torch.stack([m.v_threshold.detach() for m in lifs])
    assert (vthr - 1).abs().min() > 1e-3  # every threshold is non-unit
    assert all(m.mp_init_mean.item() != 0 for m in lifs)

    folded = fold_thresholds(model)
    assert not folded.training
    assert all(not m.scaled_output for _, m in folded.neuron_layers())
    for x in (torch.randn(B, cin, size, size, dtype=torch.float64) * 2, torch.randn(T, B, cin, size, size, dtype=torch.float64) * 2):
        ref, ref_outs = neuron_outputs(model, x)
        got, outs = neuron_outputs(folded, x)
        assert (got - ref).abs().max().item() < 1e-4
        assert_binary(outs)
        # the training form emits V_thr·S: the folded spikes are exactly those spikes
        for o_ref, o, v in zip(ref_outs, outs, vthr):
            torch.testing.assert_close(o * v, o_ref)
        active = sum(bool(o.any()) for o in outs)
        assert active >= 0.75 * len(outs), f"only {active}/{len(outs)} layers fired: the test would prove little"
    assert ref.abs().max() > 1e-3


@pytest.mark.parametrize(
    "name,norm",
    [("small_cnn", n) for n in ("none", "bn", "tdbn", "tebn", "tab")] + [("resnet19", "none"), ("resnet19", "tab")],
)
def test_folding_with_every_norm(name, norm):
    model, cin, size = trained_like(name, norm=norm, seed=1)
    x = torch.randn(T, B, cin, size, size, dtype=torch.float64) * 2
    ref, _ = neuron_outputs(model, x)
    got, outs = neuron_outputs(fold_thresholds(model), x)
    assert (got - ref).abs().max().item() < 1e-4
    assert_binary(outs)


def test_folding_is_needed_binarizing_alone_changes_logits():
    """Mutation checks: skipping the fold, or the shortcut scale, gives different logits."""
    for name, scale_attr in (("resnet19", "shortcut_scale"), ("sew_resnet34", "identity_scale")):
        model, cin, size = trained_like(name)
        x = torch.randn(B, cin, size, size, dtype=torch.float64) * 2
        ref, _ = neuron_outputs(model, x)
        naive = fold_thresholds(model)
        naive.load_state_dict(model.state_dict())  # undo the folded weights and scales, keep 0/1 outputs
        assert (neuron_outputs(naive, x)[0] - ref).abs().max() > 1e-3
        folded = fold_thresholds(model)
        blocks = [b for b in folded.body if hasattr(b, scale_attr)]
        assert blocks and any(getattr(b, scale_attr).item() != 1.0 for b in blocks)
        for b in blocks:
            getattr(b, scale_attr).fill_(1.0)
        assert (neuron_outputs(folded, x)[0] - ref).abs().max() > 1e-3


def test_fold_leaves_the_original_alone():
    model, _, _ = trained_like("resnet19")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_thresholds(model)
    assert model.training and all(m.scaled_output for _, m in model.neuron_layers())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    # folded: weights of consumers changed, biases of linear layers not, MP-Init means kept
    assert not torch.equal(folded.head[-1].weight, model.head[-1].weight)
    assert torch.equal(folded.head[-1].bias, model.head[-1].bias)
    for (_, a), (_, b) in zip(model.neuron_layers(), folded.neuron_layers()):
        assert torch.equal(a.mp_init_mean, b.mp_init_mean)


def test_fold_is_idempotent():
    model, _, _ = trained_like("sew_resnet34")
    once = fold_thresholds(model)
    twice = fold_thresholds(once)
    for (k, a), (_, b) in zip(once.state_dict().items(), twice.state_dict().items()):
        assert torch.equal(a, b), k


def test_float32_model_within_tolerance():
    model, cin, size = trained_like("resnet19", dtype=torch.float32)
    x = torch.randn(B, cin, size, size) * 2
    ref, _ = neuron_outputs(model, x)
    got, outs = neuron_outputs(fold_thresholds(model), x)
    assert (got - ref).abs().max().item() < 1e-4
    assert_binary(outs)


@pytest.mark.parametrize("name,sg_mode", [("resnet19", "as"), ("small_cnn", "rs")])
def test_non_trsg_model_is_unchanged(name, sg_mode):
    model, cin, size = trained_like(name, neuron={"sg_mode": sg_mode})
    x = torch.randn(B, cin, size, size, dtype=torch.float64) * 2
    ref, _ = neuron_outputs(model, x)
    folded = fold_thresholds(model)
    got, outs = neuron_outputs(folded, x)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert_binary(outs)
    for (k, a), (_, b) in zip(model.state_dict().items(), folded.state_dict().items()):
        assert torch.equal(a, b), k


def test_mixed_formulations_fold_only_trsg():
    model, cin, size = trained_like("small_cnn")
    model.stem.lif.sg_mode = "as"  # an AS-SG neuron emits S already
    x = torch.randn(B, cin, size, size, dtype=torch.float64) * 2
    ref, _ = neuron_outputs(model, x)
    folded = fold_thresholds(model)
    torch.testing.assert_close(folded.body[0].conv[0].weight, model.body[0].conv[0].weight)
    got, outs = neuron_outputs(folded, x)
    assert (got - ref).abs().max().item() < 1e-4
    assert_binary(outs)


def test_plain_sequential_folds_and_unknown_modules_raise():
    torch.manual_seed(0)
    lif = LIF(v_threshold=2.5).double()
    net = nn.Sequential(TimeDistributed(nn.Conv2d(1, 4, 3, padding=1)), lif, nn.Flatten(2), nn.Linear(4 * 16, 3)).double()
    x = torch.randn(T, 2, 1, 4, 4, dtype=torch.float64) * 5
    with torch.no_grad():
        ref = net.eval()(x)
        folded = fold_thresholds(net)
        torch.testing.assert_close(folded(x), ref)
    assert not folded[1].scaled_output

    with pytest.raises(TypeError, match="GELU"):
        fold_thresholds(nn.Sequential(LIF(), nn.GELU(), nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="BatchNorm"):  # a scale cannot pass a norm
        fold_thresholds(nn.Sequential(LIF(v_threshold=2.0), nn.BatchNorm1d(3), nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="nothing absorbs"):
        fold_thresholds(nn.Sequential(nn.Linear(3, 3), LIF(v_threshold=2.0)))
    assert fold_module(nn.Identity(), 2.0) == 2.0


def test_fold_and_deepcopy_after_a_training_forward():
    """A training forward leaves membrane state behind; copying or folding the net must still work."""
    net = create_model("small_cnn", num_classes=10, in_channels=1, T=2)
    net.train()
    net(torch.rand(4, 1, 8, 8)).sum().backward()
    copy.deepcopy(net)
    folded = fold_thresholds(net)
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(folded(x), net.eval()(x), atol=1e-5)


# -- snn-export ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Two smoke runs written by snn-train: tdbn (NIR-exportable) and tebn (TorchScript only)."""
    from helpers import compose_cfg
    from snn_lightning.cli.train import train

    runs = {}
    for norm in ("tdbn", "tebn"):
        out = tmp_path_factory.mktemp(f"run_{norm}")
        train(compose_cfg(out, ["debug=smoke", "logger=none", "T=2", f"norm={norm}", "neuron.v_threshold=0.5"]))
        runs[norm] = out / "checkpoints" / "last.ckpt"
        assert runs[norm].is_file()
    return runs


def _export(capsys, *args, exits=False):
    """Run ``snn-export args`` in process; with ``exits`` it must exit with status 2."""
    from snn_lightning.cli.export import main

    if exits:
        with pytest.raises(SystemExit) as stop:
            main(list(args))
        assert stop.value.code == 2
    else:
        main(list(args))
    return capsys.readouterr()


def _run_logits(ckpt):
    from snn_lightning.experiment import load_trained

    trained = load_trained(ckpt)
    trained.datamodule.setup("test")
    x, _ = next(iter(trained.datamodule.test_dataloader()))
    with torch.no_grad():
        return trained.net, x, trained.net(x)


def test_snn_export_nir_and_torchscript_give_the_checkpoints_logits(trained_runs, tmp_path, capsys):
    from snn_lightning.export import from_nir

    ckpt = trained_runs["tdbn"]
    net, x, ref = _run_logits(ckpt)
    out = _export(capsys, f"ckpt_path={ckpt}", "format=nir", f"out={tmp_path / 'net.nir'}")
    assert f"to {tmp_path / 'net.nir'}" in out.out and "max |logit difference|" in out.out
    with torch.no_grad():
        assert (from_nir(tmp_path / "net.nir")(x) - ref).abs().max() < 1e-4
    _export(capsys, f"ckpt_path={ckpt}", "format=torchscript", f"out={tmp_path / 'net.pt'}")
    with torch.no_grad(), pytest.warns(FutureWarning):
        scripted = torch.jit.load(str(tmp_path / "net.pt"))
        assert (scripted(x) - ref).abs().max() < 1e-4
    # the default file name sits next to the checkpoint
    _export(capsys, f"ckpt_path={ckpt}")
    assert ckpt.with_suffix(".nir").is_file()


def test_snn_export_errors_are_one_line_and_overwrite_nothing(trained_runs, tmp_path, capsys):
    ckpt = trained_runs["tdbn"]
    existing = tmp_path / "keep.nir"
    existing.write_text("precious")
    cases = [
        (["ckpt_path=/no/such.ckpt"], "error: checkpoint /no/such.ckpt does not exist"),
        ([f"ckpt_path={ckpt}", "format=onnx"], "error: unknown format 'onnx'; allowed: nir, torchscript"),
        ([f"ckpt_path={ckpt}", "fromat=nir"], "error: unknown key 'fromat'; allowed: ckpt_path, format, out, overwrite"),
        ([f"ckpt_path={ckpt}", f"out={existing}"], f"error: {existing} exists; pass overwrite=true to replace it"),
        ([f"ckpt_path={trained_runs['tebn']}", f"out={tmp_path / 'tebn.nir'}"], "error: cannot export TEBN (stem.norm) to NIR"),
        (["format=nir"], "error: ckpt_path=... is required"),
    ]
    for args, message in cases:
        err = _export(capsys, *args, exits=True).err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), err
    assert existing.read_text() == "precious"
    assert not (tmp_path / "tebn.nir").exists() and not list(tmp_path.glob(".*.tmp"))


def test_snn_export_torchscript_keeps_time_dependent_norms(trained_runs, tmp_path, capsys):
    ckpt = trained_runs["tebn"]
    net, x, ref = _run_logits(ckpt)
    with pytest.warns(UserWarning, match="TEBN scales each timestep"):
        _export(capsys, f"ckpt_path={ckpt}", "format=torchscript", f"out={tmp_path / 'tebn.pt'}")
    with torch.no_grad(), pytest.warns(FutureWarning):
        assert (torch.jit.load(str(tmp_path / "tebn.pt"))(x) - ref).abs().max() < 1e-4


def test_snn_export_help_lists_the_keys(capsys):
    from snn_lightning.cli.export import KEYS, main

    main(["--help"])
    out = capsys.readouterr().out
    assert all(k in out for k in KEYS) and "format=nir" in out
