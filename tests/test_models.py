"""Model registry, shapes, layer and parameter counts, the forward contract, and gradients."""
import pytest
import torch
from torch import nn

from snn_lightning.models import (
    CNN7,
    MODELS,
    BasicBlock,
    ResNet19,
    SEWBlock,
    SpikingNetwork,
    create_model,
)
from snn_lightning.neurons import LIF
from snn_lightning.norm import NORM_KINDS, TAB, TDBN, TEBN, NoNorm, PerFrameBN

# name -> (in_channels, spatial size for quick tests, extra kwargs)
TINY = {
    "resnet19": (3, 8, {}),
    "cnn7": (2, 16, {"input_size": 16}),
    "resnet34": (3, 32, {}),
    "sew_resnet34": (3, 32, {}),
    "small_cnn": (1, 8, {}),
}
NEURON_LAYERS = {"resnet19": 17, "cnn7": 8, "resnet34": 33, "sew_resnet34": 36, "small_cnn": 2}

# Trainable parameters with the default norm (tdbn); each LIF layer adds 2 (raw τ and raw V_thr).
PARAM_COUNTS = [
    ("resnet19", 10, 3, {}, 12_502_124),
    ("resnet19", 100, 3, {}, 12_548_294),
    ("cnn7", 10, 2, {}, 11_184_538),  # DVS: 2 x 48 x 48 frames
    ("cnn7", 10, 3, {}, 5_942_234),  # CIFAR-shaped: 3 x 32 x 32
    ("cnn7", 100, 3, {}, 6_034_484),
    ("resnet34", 1000, 3, {}, 21_797_738),
    ("sew_resnet34", 1000, 3, {}, 21_797_744),
    ("small_cnn", 10, 1, {}, 21_486),
]


def build(name, T=2, num_classes=10, **kw):
    cin, size, extra = TINY[name]
    model = create_model(name, num_classes=num_classes, in_channels=cin, T=T, **{**extra, **kw})
    return model, cin, size


def prime(model, x, steps=2):
    """A few train-mode forwards so BatchNorm running statistics fit the data (cumulative average)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# --- registry -----------------------------------------------------------------------------------
def test_registry_names():
    assert set(MODELS) == {"resnet19", "cnn7", "resnet34", "sew_resnet34", "small_cnn"}
    assert all(issubclass(cls, SpikingNetwork) for cls in MODELS.values())


def test_unknown_model_names_value_and_allowed():
    with pytest.raises(ValueError) as e:
        create_model("vgg16", num_classes=10, in_channels=3, T=4)
    assert "vgg16" in str(e.value)
    for name in MODELS:
        assert name in str(e.value)


def test_unknown_norm_raises():
    with pytest.raises(ValueError, match="groupnorm"):
        create_model("small_cnn", num_classes=10, in_channels=1, T=2, norm="groupnorm")


@pytest.mark.parametrize("T", [0, -2, 1.5, True])
def test_bad_T_raises(T):
    with pytest.raises(ValueError, match="T"):
        create_model("small_cnn", num_classes=10, in_channels=1, T=T)
    model = create_model("small_cnn", num_classes=10, in_channels=1, T=2)
    with pytest.raises(ValueError):
        model.T = T


# --- shapes and counts --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TINY))
def test_output_shapes_static_and_frames(name):
    T, B = 2, 2
    model, cin, size = build(name, T=T, num_classes=7)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(B, cin, size, size)).shape == (T, B, 7)
        assert model(torch.randn(T, B, cin, size, size)).shape == (T, B, 7)


def test_cnn7_dvs_and_image_shapes():
    dvs = create_model("cnn7", num_classes=10, in_channels=2, T=2)
    assert dvs.input_size == 48
    img = create_model("cnn7", num_classes=10, in_channels=3, T=2)
    assert img.input_size == 32
    with torch.no_grad():
        assert dvs.eval()(torch.rand(2, 1, 2, 48, 48)).shape == (2, 1, 10)
        assert img.eval()(torch.randn(1, 3, 32, 32)).shape == (2, 1, 10)
    with pytest.raises(ValueError, match="multiple of 8"):
        create_model("cnn7", num_classes=10, in_channels=2, T=2, input_size=20)


@pytest.mark.parametrize("name", sorted(TINY))
def test_neuron_layer_counts(name):
    model, _, _ = build(name)
    layers = model.neuron_layers()
    assert len(layers) == NEURON_LAYERS[name]
    assert all(isinstance(m, LIF) for _, m in layers)
    assert len({id(m) for _, m in layers}) == len(layers)  # one fresh neuron per layer


@pytest.mark.parametrize("name,num_classes,cin,kw,expected", PARAM_COUNTS)
def test_parameter_counts(name, num_classes, cin, kw, expected):
    model = create_model(name, num_classes=num_classes, in_channels=cin, T=4, **kw)
    assert n_params(model) == expected


def test_resnet34_matches_torchvision_plus_neuron_params():
    torchvision = pytest.importorskip("torchvision")
    ours = create_model("resnet34", num_classes=1000, in_channels=3, T=4)
    ref = n_params(torchvision.models.resnet34(weights=None))
    assert n_params(ours) == ref + 2 * NEURON_LAYERS["resnet34"]
    # SEW adds one neuron (no weights) on each of the 3 downsample paths.
    sew = create_model("sew_resnet34", num_classes=1000, in_channels=3, T=4)
    assert n_params(sew) == ref + 2 * NEURON_LAYERS["sew_resnet34"]


def test_resnet19_structure():
    model = create_model("resnet19", num_classes=100, in_channels=3, T=4)
    blocks = list(model.body)
    assert [type(b) for b in blocks] == [BasicBlock] * 8
    assert [b.conv1[0].out_channels for b in blocks] == [128] * 3 + [256] * 3 + [512] * 2
    assert [b.conv1[0].stride[0] for b in blocks] == [1, 1, 1, 2, 1, 1, 2, 1]
    assert [b.shortcut is not None for b in blocks] == [True, False, False, True, False, False, True, False]
    assert model.stem.conv.out_channels == 64 and model.stem.conv.kernel_size == (3, 3)
    assert model.head[-1].in_features == 512 and model.head[-1].out_features == 100
    for b in blocks:
        if b.shortcut is None:
            assert torch.equal(b.shortcut_scale, torch.tensor(1.0))


def test_resnet34_structure_and_init():
    torch.manual_seed(0)
    model = create_model("resnet34", num_classes=1000, in_channels=3, T=4)
    stem = model.stem.conv
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 7), (2, 2), (3, 3))
    assert isinstance(model.stem.pool[0], nn.MaxPool2d)
    assert len(model.body) == 16
    fc = model.head[-1]
    assert abs(fc.weight.std().item() - 0.01) < 1e-3 and torch.count_nonzero(fc.bias) == 0
    conv = model.body[0].conv1[0]  # kaiming normal, fan_out: std = sqrt(2 / (64·9))
    assert abs(conv.weight.std().item() - (2 / (64 * 9)) ** 0.5) < 0.005
    sew = create_model("sew_resnet34", num_classes=1000, in_channels=3, T=4)
    assert all(isinstance(b, SEWBlock) for b in sew.body)
    assert sum(b.downsample is not None for b in sew.body) == 3


# --- forward contract ---------------------------------------------------------------------------
def test_neuron_layers_are_in_forward_order():
    for name in ("resnet19", "sew_resnet34", "cnn7"):
        model, cin, size = build(name)
        seen = []
        for _, m in model.neuron_layers():
            m.register_forward_hook(lambda mod, i, o, seen=seen: seen.append(mod))
        with torch.no_grad():
            model.eval()(torch.randn(1, cin, size, size))
        assert [id(m) for m in seen] == [id(m) for _, m in model.neuron_layers()]


def test_static_input_encodes_once_and_repeats():
    model = create_model("small_cnn", num_classes=10, in_channels=1, T=3).eval()
    conv_inputs, lif_inputs = [], []
    model.stem.conv.register_forward_hook(lambda m, i, o: conv_inputs.append(i[0].shape))
    model.stem.lif.register_forward_hook(lambda m, i, o: lif_inputs.append(i[0]))
    with torch.no_grad():
        model(torch.randn(2, 1, 8, 8))
        model(torch.randn(3, 2, 1, 8, 8))
    assert conv_inputs == [(2, 1, 8, 8), (6, 1, 8, 8)]  # once on the image; frames folded to T·B
    static = lif_inputs[0]
    assert static.shape[:2] == (3, 2)
    assert torch.equal(static[0], static[1]) and torch.equal(static[0], static[2])


@pytest.mark.parametrize("name", ["resnet19", "cnn7", "sew_resnet34", "small_cnn"])
def test_network_resets_state_every_forward(name):
    torch.manual_seed(0)
    # carry_state=True: a neuron would continue from the previous call's U[T] unless reset.
    model, cin, size = build(name, T=2, neuron={"carry_state": True, "v_threshold": 0.5})
    with torch.no_grad():
        for m in model.modules():  # make the hidden FC neuron of cnn7 fire too
            if isinstance(m, nn.Linear):
                m.weight.mul_(20.0)
    x = torch.randn(2, cin, size, size)
    prime(model, x)
    with torch.no_grad():
        a = model(x)
        assert all(lif.v is not None for _, lif in model.neuron_layers())  # state was left behind ...
        b = model(x)
        stale = model.head(model.body(model.stem(x, model.T)))  # the same pass without the reset
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # ... and cleared before the next forward
    assert not torch.equal(a, stale)


@pytest.mark.parametrize(
    "shape,match",
    [
        ((1, 8, 8), "shape"),
        ((2, 2, 1, 1, 8, 8), "shape"),
        ((2, 3, 8, 8), "channels"),
        ((2, 2, 3, 8, 8), "channels"),
        ((3, 2, 1, 8, 8), "timesteps"),  # [B, T, ...] passed by mistake (T = 2 here)
    ],
)
def test_bad_inputs_raise(shape, match):
    model = create_model("small_cnn", num_classes=10, in_channels=1, T=2)
    with pytest.raises(ValueError, match=match) as e:
        model(torch.randn(*shape))
    assert str(tuple(shape)) in str(e.value)


def test_cnn7_wrong_spatial_size_raises():
    model = create_model("cnn7", num_classes=10, in_channels=2, T=2, input_size=16)
    with pytest.raises(ValueError, match="16x16"):
        model(torch.randn(1, 2, 32, 32))


# --- neuron and norm options --------------------------------------------------------------------
def test_neuron_dict_applies_to_every_layer():
    model = create_model(
        "resnet19", num_classes=10, in_channels=3, T=2, neuron={"sg_mode": "as", "v_threshold": 0.5, "tau": 3.0, "mp_init": False}
    )
    lifs = [m for _, m in model.neuron_layers()]
    assert len(lifs) == 17
    for lif in lifs:
        assert lif.sg_mode == "as" and not lif.mp_init
        assert abs(lif.v_threshold.item() - 0.5) < 1e-6 and abs(lif.tau.item() - 3.0) < 1e-5
    assert len({id(lif.raw_threshold) for lif in lifs}) == 17
    with pytest.raises(ValueError):
        create_model("small_cnn", num_classes=10, in_channels=1, T=2, neuron={"sg_mode": "bogus"})


def test_backbone_takes_factories():
    calls = {"neuron": 0, "norm": []}

    def neuron():
        calls["neuron"] += 1
        return LIF(v_threshold=0.7)

    def norm(c):
        calls["norm"].append(c)
        return TDBN(c, 2)

    model = ResNet19(num_classes=10, in_channels=3, T=2, neuron=neuron, norm=norm)
    assert calls["neuron"] == 17
    assert len(calls["norm"]) == 1 + 8 * 2 + 3  # stem, two per block, three projections
    assert model(torch.randn(1, 3, 8, 8)).shape == (2, 1, 10)
    assert isinstance(CNN7(in_channels=2, T=2, norm="tab").stem.norm, TAB)


NORM_CLASSES = {"none": NoNorm, "bn": PerFrameBN, "tdbn": TDBN, "tebn": TEBN, "tab": TAB}


@pytest.mark.parametrize("norm", NORM_KINDS)
@pytest.mark.parametrize("name", ["small_cnn", "resnet19"])
def test_every_norm_kind_works(name, norm):
    torch.manual_seed(0)
    model, cin, size = build(name, T=2, norm=norm)
    norms = [m for m in model.modules() if isinstance(m, NORM_CLASSES[norm])]
    assert norms and all(type(m) is NORM_CLASSES[norm] for m in model.modules() if type(m) in NORM_CLASSES.values())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all((c.bias is not None) == (norm == "none") for c in convs)
    model.train()
    for x in (torch.randn(2, cin, size, size), torch.randn(2, 2, cin, size, size)):
        out = model(x)
        assert out.shape == (2, 2, 10) and torch.isfinite(out).all()
        out.sum().backward()
    with torch.no_grad():
        assert model.eval()(torch.randn(2, cin, size, size)).shape == (2, 2, 10)


# --- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TINY))
def test_backprop_reaches_input_and_neuron_params(name):
    torch.manual_seed(0)
    model, cin, size = build(name, T=2)
    with torch.no_grad():
        for _, lif in model.neuron_layers():
            lif.raw_threshold.fill_(-0.5)  # V_thr ≈ 0.47: enough activity for gradients everywhere
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(20.0)
    model.train()
    x = torch.randn(2, 2, cin, size, size, requires_grad=True)
    out = model(x)
    torch.nn.functional.cross_entropy(out.mean(0), torch.tensor([1, 3])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for lname, lif in model.neuron_layers():
        assert lif.raw_threshold.grad is not None and lif.raw_tau.grad is not None, lname
    assert sum(lif.raw_threshold.grad.abs().sum() > 0 for _, lif in model.neuron_layers()) >= len(model.neuron_layers()) - 1
    assert all(p.grad is not None for p in model.parameters())


# --- small_cnn learns digits --------------------------------------------------------------------
def test_small_cnn_learns_digits_quickly():
    datasets = pytest.importorskip("sklearn.datasets")
    torch.manual_seed(0)
    X, y = datasets.load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    X = (X - X.mean()) / X.std()
    y = torch.tensor(y)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400:]
    model = create_model("small_cnn", num_classes=10, in_channels=1, T=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        model.train()
        order = tr[torch.randperm(len(tr))]
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = torch.nn.functional.cross_entropy(model(X[idx]).mean(0), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (model.eval()(X[te]).mean(0).argmax(1) == y[te]).float().mean().item()
    assert acc >= 0.9
