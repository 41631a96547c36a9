"""memory="light": bit-packed spikes for the convs they feed, norms rebuilt in backward — same gradients."""
import copy

import pytest
import torch
from torch import nn

from conftest import assert_one_line
from snn_lightning.errors import InvalidValue
from snn_lightning.models import create_model, make_light
from snn_lightning.models._light_ops import pack_spikes, unpack_spikes
from snn_lightning.models.light import saved_bytes

TINY = {  # name -> (in_channels, size)
    "resnet19": (3, 8),
    "cnn7": (2, 16),
    "sew_resnet34": (3, 32),
    "small_cnn": (1, 8),
}


def _pair(name, dtype=torch.float64, T=2, **kw):
    cin, size = TINY[name]
    torch.manual_seed(0)
    net = create_model(name, num_classes=5, in_channels=cin, T=T, input_size=size, **kw).to(dtype)
    light = copy.deepcopy(net)
    make_light(light)
    return net, light, cin, size


def _step(net, x, weights):
    """One training step with a per-timestep weighted loss (a TET-like, non-uniform dL/dy)."""
    net.train()
    net.zero_grad(set_to_none=True)
    y = net(x)
    (y * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    return y.detach(), grads, buffers


def _assert_same(net, light, x, tol=1e-6, steps=2):
    torch.manual_seed(1)
    weights = torch.randn(net.T, x.shape[-4] if x.dim() == 5 else x.shape[0], 5, dtype=x.dtype)
    for _ in range(steps):  # a second step sees the updated running stats and MP-Init buffers
        y0, g0, b0 = _step(net, x, weights)
        y1, g1, b1 = _step(light, x, weights)
        assert torch.allclose(y0, y1, atol=tol, rtol=0)
        assert g0.keys() == g1.keys() and len(g0) > 0
        for k in g0:
            assert torch.allclose(g0[k], g1[k], atol=tol, rtol=tol), k
        for k in b0:  # running statistics updated once per step, as in the default mode
            assert torch.equal(b0[k], b1[k]), k


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 1001])
def test_pack_unpack_round_trip_is_exact(n):
    torch.manual_seed(n)
    v = torch.tensor(0.7312, dtype=torch.float64)
    x = (torch.rand(n, dtype=torch.float64) > 0.6).to(torch.float64) * v
    bits, scale = pack_spikes(x)
    assert bits.dtype == torch.uint8 and bits.numel() == (n + 7) // 8
    assert torch.equal(unpack_spikes(bits, scale, x.shape, x.dtype), x)


def test_pack_of_silence_is_zero():
    x = torch.zeros(3, 5)
    bits, scale = pack_spikes(x)
    assert torch.equal(unpack_spikes(bits, scale, x.shape, x.dtype), x)


@pytest.mark.parametrize("name", ["resnet19", "cnn7", pytest.param("sew_resnet34", marks=pytest.mark.slow)])
def test_gradients_equal_default_mode_float64(name):
    net, light, cin, size = _pair(name)
    assert light.light_layers, "nothing was converted"
    x = torch.randn(2, cin, size, size, dtype=torch.float64)
    _assert_same(net, light, x)


def test_frames_input_and_conversion_names():
    net, light, cin, size = _pair("resnet19")
    names = dict(light.light_layers)
    convs = [n for n, m in light.named_modules() if isinstance(m, nn.Conv2d)]
    # every conv but the stem's (which reads the image) reads spikes: 8 blocks x 2 + 3 projections
    assert len(names) == len(convs) - 1 == 2 * 8 + 3 and convs[0] not in names
    assert all(norm is not None for norm in names.values())
    _assert_same(net, light, torch.randn(net.T, 2, cin, size, size, dtype=torch.float64))


@pytest.mark.parametrize("norm", ["tebn", "tab", "bn", "none"])
def test_every_norm_kind(norm):
    net, light, cin, size = _pair("small_cnn", norm=norm)
    _assert_same(net, light, torch.randn(4, cin, size, size, dtype=torch.float64))


@pytest.mark.parametrize(
    "neuron",
    [
        {"sg_mode": "as"},
        {"sg_mode": "rs", "mp_init": False},
        {"sg_mode": "trsg", "backend": "torch"},
        {"sg_mode": "trsg", "backend": "fused", "reset": "hard"},
        {"sg_mode": "as", "learn_tau": False, "learn_threshold": False},  # the neuron's "bits" storage
        {"surrogate": "sigmoid", "mp_init_stat": "all"},
    ],
)
def test_neuron_variants_and_backends(neuron):
    net, light, cin, size = _pair("small_cnn", neuron=neuron)
    _assert_same(net, light, torch.randn(4, cin, size, size, dtype=torch.float64), steps=3)


def test_cpu_autocast_bf16_matches_default():
    net, light, cin, size = _pair("small_cnn", dtype=torch.float32)
    x = torch.randn(4, cin, size, size)
    w = torch.randn(net.T, 4, 5)
    res = []
    for m in (net, light):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            res.append(_step(m, x, w))
    for k in res[0][1]:
        assert torch.allclose(res[0][1][k], res[1][1][k], atol=1e-6, rtol=1e-5), k


def test_saves_a_third_of_the_activations_on_resnet19():
    net, light, cin, size = _pair("resnet19", dtype=torch.float32, T=4)
    x = torch.randn(4, cin, 16, 16)
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    full, _ = saved_bytes(lambda: net(x))
    lean, _ = saved_bytes(lambda: light(x))
    # what remains is the neurons' membranes (one float per neuron), the stem and the head
    assert (lean - params) < 0.4 * (full - params)


def test_state_dict_and_eval_unchanged():
    net, light, cin, size = _pair("resnet19")
    assert list(net.state_dict()) == list(light.state_dict())
    x = torch.randn(2, cin, size, size, dtype=torch.float64)
    net.eval(), light.eval()
    with torch.no_grad():
        assert torch.equal(net(x), light(x))
    light.load_state_dict(net.state_dict())
    copy.deepcopy(light)  # converted networks still copy (DDP, EMA and checkpoint callbacks do)


def test_unknown_memory_mode_is_one_line():
    with pytest.raises(InvalidValue) as err:
        create_model("small_cnn", num_classes=3, in_channels=1, T=2, memory="heavy")
    assert "heavy" in assert_one_line(err.value) and "light" in str(err.value)


@pytest.mark.parametrize("memory", [None, False, "off"])
def test_off_spellings(memory):
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, memory=memory)
    assert not getattr(net, "light_layers", None)


def test_network_without_spike_fed_conv_is_refused():
    with pytest.raises(InvalidValue) as err:
        create_model("small_cnn", num_classes=3, in_channels=1, T=2, neuron=nn.ReLU, memory="light")
    assert "no convolution fed by spiking neurons" in assert_one_line(err.value)


def test_converting_twice_is_refused():
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, memory="light")
    with pytest.raises(InvalidValue):
        make_light(net)


def _ddp_rank(rank, world, port, result_dir):
    """One gloo rank: the default and the light network under DDP, two steps; grads saved.

    (SyncBatchNorm refuses CPU modules under DDP, so here each rank's BatchNorm sees its own half.)"""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        net, light, cin, size = _pair("resnet19", dtype=torch.float64)
        torch.manual_seed(10 + rank)  # each rank its own half of the batch
        x = torch.randn(2, cin, size, size, dtype=torch.float64)
        w = torch.randn(net.T, 2, 5, dtype=torch.float64)
        out = {}
        for tag, m in (("default", net), ("light", light)):
            ddp = DDP(m)
            for step in range(2):
                ddp.zero_grad(set_to_none=True)
                (ddp(x) * w).sum().backward()
            out[tag] = {n: p.grad.clone() for n, p in ddp.module.named_parameters() if p.grad is not None}
            out[tag + "_buffers"] = {n: b.clone() for n, b in ddp.module.named_buffers()}
        torch.save(out, f"{result_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_matches_default(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        res = torch.load(tmp_path / f"rank{rank}.pt")
        assert res["default"].keys() == res["light"].keys()
        for k, g in res["default"].items():
            assert torch.allclose(g, res["light"][k], atol=1e-6, rtol=1e-6), k
        for k, b in res["default_buffers"].items():
            assert torch.equal(b, res["light_buffers"][k]), k


@pytest.mark.slow
def test_torch_compile_two_steps():
    net, light, cin, size = _pair("small_cnn", dtype=torch.float32)
    x = torch.randn(4, cin, size, size)
    grads = []
    for m in (net, light):
        compiled = torch.compile(m)
        for _ in range(2):
            m.zero_grad(set_to_none=True)
            compiled(x).sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4), k


def test_channels_last_weights():
    net, light, cin, size = _pair("small_cnn")
    net, light = (m.to(memory_format=torch.channels_last) for m in (net, light))
    _assert_same(net, light, torch.randn(4, cin, size, size, dtype=torch.float64))
