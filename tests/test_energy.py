"""Operation and energy counts (snn_lightning.energy) against independent counts and hand-sized examples."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from snn_lightning.energy import OperationCounts, conv_accumulates, count_operations, energy_pj
from snn_lightning.export import fold_thresholds
from snn_lightning.models import TimeDistributed, create_model
from snn_lightning.neurons import LIF


def brute_force_conv_ac(conv: nn.Conv2d, x: torch.Tensor) -> list[int]:
    """Per-item AC by enumerating every output, input channel and kernel tap (the definition, literally)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    g = conv.groups
    cin_g, cout_g = conv.in_channels // g, conv.out_channels // g
    N, _, H, W = x.shape
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    counts = []
    for n in range(N):
        total = 0
        for co, i, j in itertools.product(range(conv.out_channels), range(Ho), range(Wo)):
            grp = co // cout_g
            for ci, a, b in itertools.product(range(grp * cin_g, (grp + 1) * cin_g), range(kh), range(kw)):
                r, c = i * sh - ph + a * dh, j * sw - pw + b * dw
                if 0 <= r < H and 0 <= c < W and x[n, ci, r, c] != 0:
                    total += 1
        counts.append(total)
    return counts


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=2, out_channels=3, kernel_size=3, padding=1),
        dict(in_channels=2, out_channels=2, kernel_size=3, stride=2, padding=1),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=2, dilation=2, groups=2),
        dict(in_channels=1, out_channels=2, kernel_size=(2, 3), padding=(0, 1)),
        dict(in_channels=3, out_channels=1, kernel_size=1, stride=2),
    ],
)
def test_conv_accumulates_matches_brute_force(kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(bias=False, **kwargs)
    x = (torch.rand(2, kwargs["in_channels"], 5, 6) < 0.4).float() * 0.7  # TrSG-like V_thr·S values
    assert conv_accumulates(conv, x).tolist() == brute_force_conv_ac(conv, x)


def test_conv_accumulates_padding_borders_by_hand():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    x = torch.zeros(3, 1, 3, 3)
    x[0, 0, 0, 0] = 1.0  # a corner spike reaches 4 outputs (the other 5 taps fall on padding)
    x[1, 0, 1, 1] = 2.5  # the centre reaches all 9
    x[2, 0, 0, 1] = 1.0  # an edge reaches 6
    assert conv_accumulates(conv, x).tolist() == [4, 9, 6]


def test_conv_accumulates_circular_padding_reaches_every_output():
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 1.0  # wrapped around, a corner spike feeds all 9 outputs
    assert conv_accumulates(conv, x).tolist() == [9]


class _HandNet(nn.Module):
    """1×1 stem conv (weight 1) → LIF → 3×3 conv (pad 1, 2 outputs) → LIF → flatten → Linear(2·3·3, 4).

    With pixel values 0 or 10, τ = 2, V_thr = 1 the first LIF fires exactly where the pixel is 10 at
    both timesteps (M = 5, then 4 + 3 = 7), so its spikes are the image mask.
    """

    T = 2
    in_channels = 1

    def __init__(self, sg_mode="trsg"):
        super().__init__()
        self.stem = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.stem.weight)
        self.lif1 = LIF(tau=2.0, v_threshold=1.0, mp_init=False, sg_mode=sg_mode, backend="torch")
        self.conv = TimeDistributed(nn.Conv2d(1, 2, 3, padding=1, bias=False))
        self.lif2 = LIF(tau=2.0, v_threshold=0.5, mp_init=False, sg_mode=sg_mode, backend="torch")
        self.fc = nn.Linear(2 * 9, 4)

    def forward(self, x):
        y = self.stem(x).unsqueeze(0).expand(self.T, -1, -1, -1, -1)
        s = self.lif2(self.conv(self.lif1(y)))
        self.s2 = s
        return self.fc(s.flatten(2))


def test_hand_sized_network():
    net = _HandNet()
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 10.0  # corner: 4 outputs per output channel
    x[0, 0, 1, 1] = 10.0  # centre: 9
    counts = count_operations(net, x)
    # stem: 9 outputs × 1 weight, once (static image), booked at t = 0
    assert counts.per_layer["stem"] == {"ac": 0.0, "mac": 9.0}
    # conv: (4 + 9) taps × 2 output channels, per timestep
    assert counts.per_layer["conv.0"] == {"ac": 2 * 13 * 2.0, "mac": 0.0}
    nnz2 = [int((net.s2[t] != 0).sum()) for t in range(2)]
    assert counts.per_layer["fc"] == {"ac": 4.0 * sum(nnz2), "mac": 0.0}
    assert counts.per_timestep == [{"ac": 26.0 + 4 * nnz2[0], "mac": 9.0}, {"ac": 26.0 + 4 * nnz2[1], "mac": 0.0}]
    assert counts.ac == 52.0 + 4 * sum(nnz2) and counts.mac == 9.0
    assert energy_pj(counts) == pytest.approx(counts.ac * 0.9 + 9 * 4.6)


def test_counts_are_per_sample_and_restore_the_mode():
    net = _HandNet().train()
    x = torch.zeros(2, 1, 3, 3)
    x[0, 0, 0, 0] = 10.0
    x[1, 0, 1, 1] = 10.0
    counts = count_operations(net, x)
    assert counts.per_layer["conv.0"]["ac"] == (2 * 4 * 2 + 2 * 9 * 2) / 2
    assert counts.mac == 9.0  # per sample, not per batch
    assert net.training


def _randomize_neurons(net: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, LIF):
            with torch.no_grad():
                m.raw_threshold.fill_(float(torch.empty(()).uniform_(-1.0, 1.0, generator=gen)))
                m.mp_init_mean.fill_(float(torch.empty(()).uniform_(0.0, 0.4, generator=gen)))


def _independent_counts(net: nn.Module, x: torch.Tensor, mac_layers: set[str]) -> dict[str, dict[str, float]]:
    """Record each conv/linear's input with our own hooks and count with unfold (AC) or shapes (MAC)."""
    B = x.shape[0]
    seen: dict[str, dict[str, float]] = {}

    def hook(name):
        def fn(mod, inp, out):
            xin = inp[0]
            if name in mac_layers:  # every output element uses fan-in weights
                fan_in = mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels * mod.weight[0, 0].numel()
                seen[name] = {"ac": 0.0, "mac": out.numel() * fan_in / B}
            elif isinstance(mod, nn.Linear):
                seen[name] = {"ac": float((xin != 0).sum()) * mod.out_features / B, "mac": 0.0}
            else:
                cols = nn.functional.unfold(
                    (xin != 0).double(), mod.kernel_size, dilation=mod.dilation, padding=mod.padding, stride=mod.stride
                )
                seen[name] = {"ac": float(cols.sum()) * mod.out_channels / B, "mac": 0.0}

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return seen


MODELS = {
    "small_cnn": (dict(channels=4), (8, 8), {"stem.conv", "head.2"}),
    "cnn7": (dict(input_size=8, hidden=16), (8, 8), {"stem.conv", "body.2.conv.0", "body.5.conv.0", "head.2"}),
    "resnet19": ({}, (4, 4), {"stem.conv", "head.1"}),
    "sew_resnet34": ({}, (8, 8), {"stem.conv", "head.1"}),
    "resnet34": ({}, (8, 8), {"stem.conv", "head.1"}),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_match_independent_count_and_fold(name):
    kwargs, hw, mac_layers = MODELS[name]
    torch.manual_seed(0)
    in_ch = 2 if name == "cnn7" else 3
    net = create_model(name, num_classes=5, in_channels=in_ch, T=2, neuron={"backend": "torch"}, **kwargs).double()
    _randomize_neurons(net)
    x = torch.randn(2, in_ch, *hw, dtype=torch.float64) * 3
    counts = count_operations(net, x)
    conv_names = {k for k in counts.per_layer if not k.endswith("shortcut_add")}
    expected = _independent_counts(net, x, mac_layers)
    assert conv_names == set(expected)
    for layer in expected:
        assert counts.per_layer[layer] == pytest.approx(expected[layer]), layer
    assert counts.ac > 0 and counts.mac > 0
    assert {k for k, v in counts.per_layer.items() if v["mac"] > 0} == mac_layers
    assert counts.ac == pytest.approx(sum(t["ac"] for t in counts.per_timestep))
    assert counts.mac == pytest.approx(sum(t["mac"] for t in counts.per_timestep))
    # the folded network emits 0/1 spikes where the training one emits V_thr·S: same non-zeros, same counts
    folded = fold_thresholds(net)
    fc = count_operations(folded, x)
    assert fc.ac == counts.ac and fc.mac == counts.mac
    assert fc.per_layer == counts.per_layer and fc.per_timestep == counts.per_timestep


def test_resnet19_identity_shortcuts_count_their_spikes():
    torch.manual_seed(0)
    net = create_model("resnet19", num_classes=5, in_channels=3, T=2, neuron={"backend": "torch"}).double()
    _randomize_neurons(net)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64) * 3
    nnz = {}
    handles = [
        blk.register_forward_hook(lambda m, inp, out, i=i: nnz.__setitem__(f"body.{i}.shortcut_add", float((inp[0] != 0).sum()) / 2))
        for i, blk in enumerate(net.body)
        if blk.shortcut is None
    ]
    counts = count_operations(net, x)
    for h in handles:
        h.remove()
    shortcut = {k: v["ac"] for k, v in counts.per_layer.items() if k.endswith("shortcut_add")}
    assert shortcut == nnz and len(shortcut) == 5  # 8 blocks, 3 of them with a projection


def test_frames_input_counts_every_timestep_of_the_stem():
    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=3, in_channels=2, T=3, channels=2)
    frames = torch.rand(3, 2, 2, 6, 6)
    counts = count_operations(net, frames)
    stem = net.stem.conv
    per_t = 6 * 6 * stem.out_channels * stem.in_channels * 9
    assert counts.per_layer["stem.conv"]["mac"] == 3 * per_t
    assert [t["mac"] for t in counts.per_timestep][0] == per_t + counts.per_layer["head.2"]["mac"] / 3


def test_energy_pj_and_its_validation():
    assert energy_pj({"ac": 10, "mac": 2}) == pytest.approx(10 * 0.9 + 2 * 4.6)
    assert energy_pj(OperationCounts(ac=1.0, mac=1.0), e_ac=1.0, e_mac=2.0) == 3.0
    with pytest.raises(ValueError, match="e_mac"):
        energy_pj({"ac": 1, "mac": 1}, e_mac=-1.0)


def test_count_operations_rejects_a_model_without_T():
    with pytest.raises(ValueError, match="attribute T"):
        count_operations(nn.Linear(2, 2), torch.zeros(1, 2))


def test_counter_averages_over_forwards_and_releases_its_hooks():
    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=4).eval()
    xs = [torch.randn(3, 1, 8, 8) * 3, torch.randn(5, 1, 8, 8) * 3]
    singles = [count_operations(net, x) for x in xs]
    from snn_lightning.energy import OperationCounter

    with torch.no_grad(), OperationCounter(net) as counter:
        for x in xs:
            net(x)
    both = counter.result()
    assert counter.samples == 8
    assert both.ac == pytest.approx((3 * singles[0].ac + 5 * singles[1].ac) / 8)
    assert both.mac == singles[0].mac
    assert not net._forward_hooks and not net.stem.lif._forward_hooks
    counter.reset()
    assert counter.result().ac == 0.0


def test_firing_rates_count_non_zero_outputs():
    net = _HandNet()
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 10.0
    x[0, 0, 1, 1] = 10.0
    counts = count_operations(net, x)
    assert counts.firing_rates["lif1"] == 2 / 9  # the image mask, at both timesteps
    fr2 = float((net.s2 != 0).double().mean())
    assert counts.firing_rates["lif2"] == pytest.approx(fr2)
    assert counts.mean_firing_rate == pytest.approx((2 * 2 + fr2 * 36) / (18 + 36))


def test_counts_do_not_depend_on_the_neuron_backend():
    x = torch.randn(3, 1, 8, 8) * 3
    results = []
    for backend in ("torch", "fused"):
        torch.manual_seed(0)
        net = create_model("small_cnn", num_classes=3, in_channels=1, T=3, channels=4, neuron={"backend": backend, "v_threshold": 0.5})
        results.append(count_operations(net, x))
    assert results[0].ac > 0 and results[0].as_dict() == results[1].as_dict()


def test_sew_identity_additions_count_the_identity_spikes():
    torch.manual_seed(0)
    net = create_model("sew_resnet34", num_classes=5, in_channels=3, T=2, neuron={"backend": "torch"}).double()
    _randomize_neurons(net)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 3
    nnz, handles = {}, []
    for i, blk in enumerate(net.body):
        key = f"body.{i}.shortcut_add"
        if blk.downsample is None:
            handles.append(blk.register_forward_hook(lambda m, inp, out, k=key: nnz.__setitem__(k, float((inp[0] != 0).sum()) / 2)))
        else:
            handles.append(blk.downsample.register_forward_hook(lambda m, inp, out, k=key: nnz.__setitem__(k, float((out != 0).sum()) / 2)))
    counts = count_operations(net, x)
    for h in handles:
        h.remove()
    shortcut = {k: v["ac"] for k, v in counts.per_layer.items() if k.endswith("shortcut_add")}
    assert shortcut == nnz and len(shortcut) == 16 and sum(shortcut.values()) > 0
