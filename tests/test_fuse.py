"""conv → BatchNorm fusion found from the data flow, and the state_dict key map of the rename."""
import functools
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from snn_lightning.export import fold_thresholds, fuse_conv_norm
from snn_lightning.export.fuse import conv_norm_pairs
from snn_lightning.models import MODELS, create_model
from snn_lightning.models.base import TimeDistributed
from snn_lightning.models.keys import upgrade_key, upgrade_state_dict
from snn_lightning.neurons import LIF
from snn_lightning.norm.layers import TAB, TDBN, TEBN, NoNorm, PerFrameBN

from export_models import trained_like  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"

CASES = [("small_cnn", "tdbn"), ("small_cnn", "bn"), ("small_cnn", "tebn"), ("resnet19", "tdbn"), ("cnn7", "tdbn"), ("sew_resnet34", "tdbn")]


def randomize_bn(net):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("name,norm", CASES)
def test_fused_logits_equal(name, norm):
    net, cin, size = trained_like(name, norm=norm)
    x = torch.randn(3, cin, size, size, dtype=torch.float64) * 2
    if norm == "tebn":
        with pytest.warns(UserWarning, match=r"left 2 norm\(s\) unfused: stem.conv → stem.norm \(TEBN.*body.0.conv.0 → body.0.norm"):
            fused = fuse_conv_norm(net)
        assert sum(isinstance(m, TEBN) for m in fused.modules()) == 2  # time-dependent: kept
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every pair fused: no warning
            fused = fuse_conv_norm(net)
        left = [m for m in fused.modules() if isinstance(m, (TDBN, PerFrameBN, nn.modules.batchnorm._BatchNorm))]
        assert not left  # every tdBN/BN after a conv was fused
        # every conv of these backbones is followed by a norm: one NoNorm per conv
        assert sum(isinstance(m, nn.Conv2d) for m in fused.modules()) == sum(isinstance(m, NoNorm) for m in fused.modules())
    with torch.no_grad():
        got, ref = fused(x), net(x)
    assert torch.allclose(got, ref, atol=1e-9)
    assert ref.std(dim=1).max() > 1e-3  # the samples give different logits: the test sees the weights


def test_fusion_changes_the_weights_and_the_copy_only():
    net, _, _ = trained_like("resnet19")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = fuse_conv_norm(net)
    assert not torch.equal(fused.body[0].conv1[0].weight, net.body[0].conv1[0].weight)
    assert fused.body[0].conv1[0].bias is not None and net.body[0].conv1[0].bias is None
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # mutation check: dropping the norms without moving them into the convs changes the logits
    naive = fuse_conv_norm(net)
    naive.load_state_dict({k: v for k, v in net.state_dict().items() if k in naive.state_dict()}, strict=False)
    for m in naive.modules():
        if isinstance(m, nn.Conv2d):
            m.bias = None
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 2
    assert (naive(x) - net(x)).abs().max() > 1e-3


def test_fuse_then_fold_binary_spikes():
    net, _, _ = trained_like("resnet19")
    deployed = fold_thresholds(fuse_conv_norm(net))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 2
    with torch.no_grad():
        assert torch.allclose(deployed(x), net(x), atol=1e-9)


class OddNames(nn.Module):
    """A block whose layers follow no naming convention: the data flow still pairs them."""

    def __init__(self):
        super().__init__()
        self.alpha = TimeDistributed(nn.Conv2d(2, 4, 3, padding=1, bias=False))
        self.omega = TDBN(4, T=2)
        self.spiky = LIF(v_threshold=0.4, backend="torch")
        self.side = TimeDistributed(nn.Conv2d(2, 4, 1))
        self.shared = TDBN(4, T=2)  # reads side's output, which the 'also' Identity reads too
        self.also = nn.Identity()
        self.lonely = nn.BatchNorm1d(4)  # after a Linear: nothing to fuse it into
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        a = self.spiky(self.omega(self.alpha(x)))
        s = self.side(x)
        b = self.shared(s) + self.also(s)
        y = (a + b).mean(dim=(-1, -2))
        return self.lonely(self.fc(y).flatten(0, 1)).unflatten(0, y.shape[:2])


def test_pairs_come_from_the_data_flow_not_the_names():
    torch.manual_seed(0)
    block = OddNames().double()
    randomize_bn(block)
    x = torch.randn(2, 3, 2, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        block.train()
        block(x)
    block.eval()
    pairs, skipped = conv_norm_pairs(block, x)
    assert pairs == [("alpha.0", "omega")]
    assert skipped == ["side.0 → also, shared (the conv output has 2 readers)", "lonely (reads no convolution's output)"]
    with pytest.warns(UserWarning, match=r"left 2 norm\(s\) unfused: side.0 → also, shared .*; lonely"):
        fused = fuse_conv_norm(block, x)
    assert isinstance(fused.omega, NoNorm) and isinstance(fused.shared, TDBN)
    with torch.no_grad():
        assert torch.allclose(fused(x), block(x), atol=1e-9)


def test_tab_and_untracked_statistics_are_named():
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, norm="tab", channels=4)
    with pytest.warns(UserWarning, match="stem.conv → stem.norm \\(TAB scales each timestep"):
        fused = fuse_conv_norm(net)
    assert sum(isinstance(m, TAB) for m in fused.modules()) == 2
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    with pytest.warns(UserWarning, match=r"0 → 1 \(it has no running statistics\)"):
        fuse_conv_norm(net, torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match="pass example_input"):
        fuse_conv_norm(net)


# -- the key map of the conv*/norm*/lif* rename -----------------------------------------------------
@functools.lru_cache(maxsize=1)
def _tiny_resnet_builder():
    sys.path.insert(0, str(FIXTURES))
    try:
        from make_pre_rename_checkpoint import tiny_resnet
    finally:
        sys.path.remove(str(FIXTURES))
    return tiny_resnet


def test_checkpoint_written_before_the_rename_loads_and_gives_its_logits():
    from snn_lightning.module import SNNModule

    ckpt = torch.load(FIXTURES / "pre_rename.ckpt", map_location="cpu", weights_only=False)
    ref = torch.load(FIXTURES / "pre_rename_ref.pt")
    assert any(".bn1." in k for k in ckpt["state_dict"]) and any(".downsample.2." in k for k in ckpt["state_dict"])
    net = _tiny_resnet_builder()()
    module = SNNModule(net, num_classes=3, T=2, optimizer=torch.optim.SGD)
    fresh = net.body[0].lif1.mp_init_mean.clone()
    module.load_state_dict(ckpt["state_dict"])  # strict: every key found under its new name
    assert not torch.equal(net.body[0].lif1.mp_init_mean, fresh)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(ref["input"]), ref["logits"], rtol=0, atol=0)


def test_old_keys_of_every_full_size_backbone_map_onto_the_current_ones():
    old = json.loads((FIXTURES / "pre_rename_keys.json").read_text())
    assert set(old) == set(MODELS)
    for name, keys in old.items():
        model = create_model(name, num_classes=10, in_channels=2 if name == "cnn7" else 3, T=2)
        current = {k: list(v.shape) for k, v in model.state_dict().items()}
        upgraded = {upgrade_key(k): shape for k, shape in keys.items()}
        assert list(upgraded) == list(current), name
        assert upgraded == current, name
    assert any(".sn2." in k for k in old["sew_resnet34"])


def test_upgrade_is_idempotent_and_refuses_mixed_names():
    sd = create_model("resnet19", num_classes=10, in_channels=3, T=2).state_dict()
    assert list(upgrade_state_dict(sd)) == list(sd)
    assert upgrade_key("body.3.downsample.2.raw_tau") == "body.3.downsample.lif.raw_tau"
    assert upgrade_key("net.body.0.bn1.bn.weight") == "net.body.0.norm1.bn.weight"
    assert upgrade_key("stem.norm.bn.weight") == "stem.norm.bn.weight"
    with pytest.raises(ValueError, match="body.0.bn1.bn.weight"):
        upgrade_state_dict({"body.0.bn1.bn.weight": 1, "body.0.norm1.bn.weight": 2})


def test_a_model_that_really_has_a_bn1_keeps_its_keys():
    """The key map renames only keys the loading model does not have (a user's block may say bn1)."""
    from snn_lightning.models.base import SpikingNetwork

    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn1 = nn.BatchNorm1d(3)
            self.sn1 = LIF()

    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=4)
    assert isinstance(net, SpikingNetwork)
    net.body.append(Mine())
    sd = net.state_dict()
    assert "body.1.bn1.running_mean" in sd and "body.1.sn1.raw_tau" in sd
    other = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=4)
    other.body.append(Mine())
    other.load_state_dict(sd)  # strict: nothing renamed
