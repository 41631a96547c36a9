"""Spike raster and membrane traces (snn_lightning.raster) against the layer's own outputs."""
from __future__ import annotations

import pytest
import torch

from snn_lightning.models import create_model
from snn_lightning.raster import plot_raster, record_raster, trace_neurons


def test_raster_matches_the_layer_outputs():
    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=3, channels=2, neuron={"backend": "torch"}).train()
    x = torch.randn(5, 1, 6, 6) * 3
    outs = {}
    h = net.stem.lif.register_forward_hook(lambda m, i, o: outs.__setitem__("s", (o != 0).float()))
    rec = record_raster(net, x, "stem.lif", samples=2, neurons=10)
    h.remove()
    assert net.training  # the mode is restored
    s = outs["s"][:, :2].reshape(3, 2, -1)  # [T, S, N]
    idx = torch.tensor(rec["neuron_index"])
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == s.shape[-1] - 1
    assert torch.equal(torch.tensor(rec["spikes"]), s[:, :, idx].permute(1, 2, 0))
    assert torch.tensor(rec["spikes"]).sum() > 0
    assert net.stem.lif.monitor is None
    m = torch.tensor(rec["membrane"])
    fired = torch.tensor(rec["spikes"]).bool()
    assert (m[fired] >= rec["v_threshold"]).all() and (m[~fired] <= rec["v_threshold"]).all()  # Eq. 2 (TrSG: M/V_thr − 1 > 0)


def test_trace_neurons_and_plot():
    assert trace_neurons([[0, 0], [1, 1], [1, 0], [1, 1]], 2) == [1, 3]
    rec = {"layer": "l", "v_threshold": 1.0, "neuron_index": [0, 5], "spikes": [[[0, 1], [1, 1]]], "membrane": [[[0.2, 1.2], [1.5, 1.1]]]}
    fig = plot_raster(rec)
    assert len(fig.axes) == 2


def test_unknown_layer():
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=2)
    with pytest.raises(ValueError, match="unknown neuron layer 'nope'; allowed: stem.lif, body.0.lif"):
        record_raster(net, torch.zeros(1, 1, 4, 4), "nope")
