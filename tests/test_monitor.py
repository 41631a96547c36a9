"""The monitor library (plain PyTorch): drift and its NaN rules, metric keys both ways, one analysis pass."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from snn_lightning.errors import InvalidValue, UserError
from snn_lightning.monitor import (
    NeuronRecorder,
    analysis_summary,
    drift,
    layer_drift,
    neuron_metrics,
    overall_firing_rate,
    pick_layers,
    run_analysis,
    summary_from_metrics,
)
from snn_lightning.neurons import LIF

NAN = math.nan


def stats(v_mean, v_mean_active, fr=None, neurons=10.0):
    T = len(v_mean)
    return {"v_mean": v_mean, "v_std": [0.0] * T, "v_mean_active": v_mean_active, "v_std_active": [0.0] * T,
            "fr": fr or [0.1] * T, "active_fraction": 0.5, "neurons": neurons, "mp_init": 0.2, "v_threshold": 1.0, "tau": 2.0}


def test_layer_drift_rules():
    assert layer_drift([0.5, 0.1, 0.2]) == pytest.approx(0.3)
    assert layer_drift([0.2, 0.9]) == pytest.approx(0.7)
    assert math.isnan(layer_drift([NAN, 0.1, 0.2]))  # NaN at t=1
    assert math.isnan(layer_drift([0.1, 0.2, NAN]))  # NaN at t=T
    assert layer_drift([0.1, NAN, 0.4]) == pytest.approx(0.3)  # only the ends count
    assert math.isnan(layer_drift([0.3]))  # T = 1: no drift
    assert math.isnan(layer_drift(None))


def test_drift_mean_leaves_out_nan_layers():
    summary = {
        "a": stats([1.0, 0.5], [2.0, 1.0]),
        "b": stats([0.0, 0.1], [NAN, NAN]),  # never fired: active drift NaN
        "c": stats([NAN, 0.3], [0.0, 0.4]),  # NaN at t=1 for all neurons
    }
    d = drift(summary)
    assert d["per_layer"]["a"] == pytest.approx({"active": 1.0, "all": 0.5})
    assert math.isnan(d["per_layer"]["b"]["active"]) and d["per_layer"]["b"]["all"] == pytest.approx(0.1)
    assert d["mean_active"] == pytest.approx((1.0 + 0.4) / 2)  # b left out
    assert d["mean_all"] == pytest.approx((0.5 + 0.1) / 2)  # c left out
    nothing = drift({"b": stats([NAN, 0.0], [NAN, NAN])})
    assert math.isnan(nothing["mean_active"]) and math.isnan(nothing["mean_all"])
    empty = drift({})
    assert empty["per_layer"] == {} and math.isnan(empty["mean_active"]) and math.isnan(empty["mean_all"])


def test_metric_keys_round_trip_and_drift_from_a_log():
    summary = {"stem.lif": stats([0.4, 0.3, 0.1], [0.9, 0.6, 0.5]), "body.0.lif": stats([0.2, 0.2, 0.25], [NAN, 0.5, NAN])}
    flat = neuron_metrics(summary, prefix="test_neuron", params=False)
    flat["test/acc"] = 0.5  # other columns are ignored
    flat["neuron/stem.lif/v_mean_t1"] = 9.0  # another stage's prefix too
    back = summary_from_metrics(flat, prefix="test_neuron")
    assert list(back) == ["stem.lif", "body.0.lif"]
    for layer, st in summary.items():
        for key in ("fr", "v_mean", "v_std"):
            assert back[layer][key] == pytest.approx(st[key])
    # the drift of the rebuilt summary is the drift of the original (NaN rules included)
    a, b = drift(summary), drift(back)
    assert b["mean_all"] == pytest.approx(a["mean_all"]) and b["mean_active"] == pytest.approx(a["mean_active"])
    assert b["mean_active"] == pytest.approx(0.4)  # body.0.lif: NaN at t=T, left out
    # a timestep missing from the log is NaN, so the layer drops out
    del flat["test_neuron/stem.lif/v_mean_t3"]
    partial = summary_from_metrics(flat, prefix="test_neuron")
    assert math.isnan(partial["stem.lif"]["v_mean"][2]) and len(partial["stem.lif"]["v_mean"]) == 3
    assert drift(partial)["mean_all"] == pytest.approx(0.05)


def test_overall_firing_rate_weights_by_layer_size():
    s = {"a": stats([0, 0], [0, 0], fr=[0.2, 0.0], neurons=30.0), "b": stats([0, 0], [0, 0], fr=[0.6, 0.4], neurons=10.0)}
    assert overall_firing_rate(s) == pytest.approx([(0.2 * 30 + 0.6 * 10) / 40, 0.4 * 10 / 40])


def test_bad_values_are_user_errors_and_value_errors():
    with pytest.raises(InvalidValue, match="unknown neuron layer 'x'"):
        pick_layers(["a", "b"], "x")
    with pytest.raises(ValueError, match="hist_bins"):
        NeuronRecorder([("a", LIF(backend="torch"))], hist_bins=0)
    assert issubclass(InvalidValue, UserError)


class Repeat(nn.Module):
    """[B, D] → repeated over T=3 → Linear → LIF → Linear: logits [T, B, K] (plain torch)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 8), LIF(backend="torch", mp_init=False), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


def test_run_analysis_on_a_plain_network():
    net = Repeat()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 4, generator=g) * 3, torch.randint(0, 3, (5,), generator=g)) for _ in range(3)]
    seen = []

    def prepare(x):
        seen.append(x.shape)
        return x.unsqueeze(0).expand(3, *x.shape)

    result = run_analysis(net, batches, prepare=prepare, limit_batches=2, hist_layers="all", pca_classes=2)
    assert result.batches == 2 and len(seen) == 2
    assert result.predictions["samples"] == 10 and result.neurons["body.1"]["neurons"] == 10 * 8
    assert set(result.histograms) == {"body.1"} and result.pca is not None
    assert set(result.stage_parts()) == {"neurons", "histograms", "predictions", "pca", "operations"}
    assert result.operations is None  # a network without T: nothing to count per timestep
    # the accuracy is the recomputed one
    with torch.no_grad():
        logits = torch.cat([net(prepare(x)) for x, _ in batches[:2]], dim=1)
    y = torch.cat([y for _, y in batches[:2]])
    inst = (logits.argmax(-1) == y).double().mean(1).tolist()
    s = analysis_summary(result)
    assert s["accuracy"]["instant"] == pytest.approx(inst) and s["T"] == 3 and s["samples"] == 10
    d = drift(result.neurons)
    assert s["drift"]["mean_all"] == pytest.approx(d["mean_all"], nan_ok=True)
    assert s["drift"]["mean_active"] == pytest.approx(d["mean_active"], nan_ok=True)
    assert s["layers"]["body.1"]["drift_all"] == pytest.approx(layer_drift(result.neurons["body.1"]["v_mean"]))
    assert "drift_all" not in result.neurons["body.1"]  # the summary does not edit the recorder's numbers
    assert all(lif.monitor is None for lif in net.modules() if isinstance(lif, LIF))
    with pytest.raises(InvalidValue, match="no batch"):
        run_analysis(net, [], prepare=prepare)


def test_monitor_imports_no_lightning_hydra_omegaconf():
    code = (
        "import sys, snn_lightning.monitor, snn_lightning.monitor.analysis\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'hydra', 'omegaconf'))\n"
        "print(bad)\n"
        "raise SystemExit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_histogram_survives_non_finite_values_and_ranges():
    import math

    import torch

    from snn_lightning.monitor.neurons import batch_histogram

    m = torch.tensor([[[0.5, float("nan"), 1.5, float("inf")]], [[0.2, 0.4, float("-inf"), 0.9]]])  # [T=2, B=1, 4]
    s = torch.ones_like(m)
    h = batch_histogram(m, s, 0.0, 2.0, 4)
    assert h.tolist() == [[0, 1, 0, 1], [2, 1, 0, 0]]  # the non-finite entries are left out
    z = batch_histogram(m, s, math.nan, math.nan, 4)
    assert z.shape == (2, 4) and int(z.sum()) == 0
