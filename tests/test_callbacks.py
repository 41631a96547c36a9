"""Observability callbacks: statistics against hand computation, cost/leak behaviour, logging."""
from __future__ import annotations

import gc
import math
import statistics
import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snn_lightning.callbacks import FigureCallback, NeuronStatsCallback, TimestepPredictionCallback
from snn_lightning.monitor import (
    NeuronRecorder,
    PredictionRecorder,
    batch_histogram,
    drift,
    find_neuron_layers,
    neuron_metrics,
    pca_2d,
    pick_layers,
)
from snn_lightning.neurons import LIF

warnings.filterwarnings("ignore", ".*does not have many workers.*")

# -- one LIF with known inputs (τ = 2, V_thr = 1, soft reset, U[0] = 0) ----------------------------
# I[t][b][n]; M[t] = 0.5·U[t−1] + 0.5·I[t]; S = M ≥ 1; U = M − S
INPUT = [
    [[4.0, 0.0], [1.0, 3.0]],
    [[0.0, 0.0], [1.0, 0.0]],
    [[0.0, 0.0], [1.0, 2.0]],
]
# worked out by hand:
#  (b0,n0): M = 2, 0.5, 0.25      spikes 1,0,0  active
#  (b0,n1): M = 0, 0, 0           silent
#  (b1,n0): M = 0.5, 0.75, 0.875  silent
#  (b1,n1): M = 1.5, 0.25, 1.125  spikes 1,0,1  active
M_HAND = [
    [[2.0, 0.0], [0.5, 1.5]],
    [[0.5, 0.0], [0.75, 0.25]],
    [[0.25, 0.0], [0.875, 1.125]],
]
ACTIVE = [(0, 0), (1, 1)]


def fixed_lif(**kw) -> LIF:
    opts = dict(tau=2.0, v_threshold=1.0, reset="soft", mp_init=False, learn_tau=False, learn_threshold=False, backend="torch")
    opts.update(kw)
    return LIF(**opts)


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_statistics_equal_hand_computation(backend):
    lif = fixed_lif(backend=backend)
    seen = {}
    rec = NeuronRecorder([("sn", lif)])
    rec.attach()
    inner = lif.monitor

    def spy(l, m, s):
        seen["m"], seen["s"] = m.clone(), s.clone()
        inner(l, m, s)

    lif.monitor = spy
    lif(torch.tensor(INPUT))
    lif.monitor = inner
    rec.detach()
    assert lif.monitor is None
    assert torch.allclose(seen["m"], torch.tensor(M_HAND))

    st = rec.summary()["sn"]
    flat = [[M_HAND[t][b][n] for b in range(2) for n in range(2)] for t in range(3)]
    active = [[M_HAND[t][b][n] for b, n in ACTIVE] for t in range(3)]
    assert st["fr"] == pytest.approx([2 / 4, 0.0, 1 / 4])
    assert st["v_mean"] == pytest.approx([1.0, 0.375, 0.5625])
    assert st["v_mean_active"] == pytest.approx([1.75, 0.375, 0.6875])
    assert st["v_std_active"] == pytest.approx([0.25, 0.125, 0.4375])
    assert st["v_std"] == pytest.approx([statistics.pstdev(v) for v in flat])
    assert st["v_mean_active"] == pytest.approx([statistics.fmean(v) for v in active])
    assert st["active_fraction"] == pytest.approx(0.5)
    assert st["neurons"] == 4
    assert (st["v_threshold"], st["tau"], st["mp_init"]) == pytest.approx((1.0, 2.0, 0.0))

    d = drift({"sn": st})
    assert d["per_layer"]["sn"]["active"] == pytest.approx(abs(1.75 - 0.6875))
    assert d["per_layer"]["sn"]["all"] == pytest.approx(abs(1.0 - 0.5625))
    assert d["mean_active"] == pytest.approx(1.0625)

    m = neuron_metrics({"sn": st})
    assert m["neuron/sn/fr_t1"] == pytest.approx(0.5)
    assert m["neuron/sn/v_mean_active_t3"] == pytest.approx(0.6875)
    assert m["v_threshold/sn"] == pytest.approx(1.0) and m["tau/sn"] == pytest.approx(2.0) and "mp_init/sn" in m
    assert m["neuron/sn/active_frac"] == pytest.approx(0.5)
    assert len(m) == 5 * 3 + 1 + 3


def test_accumulates_over_batches_like_one_big_batch():
    torch.manual_seed(0)
    lif = fixed_lif(mp_init=True)
    lif.eval()  # frozen MP-Init: both passes start from the same U[0]
    lif.mp_init_mean.fill_(0.3)
    x = torch.randn(4, 10, 3, 5) * 1.5 + 0.8
    rec = NeuronRecorder([("a", lif)])
    rec.attach()
    lif(x[:, :4])
    lif(x[:, 4:])
    rec.detach()
    two = rec.summary()["a"]
    rec.reset()
    rec.attach()
    lif(x)
    rec.detach()
    one = rec.summary()["a"]
    for key in ("fr", "v_mean", "v_std", "v_mean_active", "v_std_active"):
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-7)
    assert two["mp_init"] == pytest.approx(0.3)


def test_silent_layer_gives_nan_active_stats():
    lif = fixed_lif()
    rec = NeuronRecorder([("a", lif)])
    rec.attach()
    lif(torch.zeros(3, 2, 4))
    rec.detach()
    st = rec.summary()["a"]
    assert all(math.isnan(v) for v in st["v_mean_active"]) and st["fr"] == [0.0, 0.0, 0.0]
    assert math.isnan(drift({"a": st})["mean_active"])


def test_histogram_counts_active_pairs_per_timestep():
    counts = batch_histogram(torch.tensor(M_HAND), torch.tensor(M_HAND) >= 1.0, lo=0.0, hi=2.5, bins=5)  # bins of 0.5
    # active pairs: (b0,n0) M = 2, .5, .25 and (b1,n1) M = 1.5, .25, 1.125
    assert counts.tolist() == [[0, 0, 0, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 0]]
    lif = fixed_lif()
    rec = NeuronRecorder([("sn", lif)], hist_layers=["sn"], hist_bins=5, hist_range=(0.0, 2.5), hist_relative=False)
    rec.attach()
    lif(torch.tensor(INPUT))
    lif(torch.tensor(INPUT))
    rec.detach()
    h = rec.histograms()["sn"]
    assert h["counts"] == [[0, 0, 0, 2, 2], [2, 2, 0, 0, 0], [2, 0, 2, 0, 0]]
    assert h["edges"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    # only the first sample of each batch: the active pair (b0,n0) with M = 2, .5, .25
    rec = NeuronRecorder([("sn", lif)], hist_layers=["sn"], hist_bins=5, hist_range=(0.0, 2.5), hist_relative=False, hist_max_samples=1)
    rec.attach()
    lif(torch.tensor(INPUT))
    rec.detach()
    assert rec.histograms()["sn"]["counts"] == [[0, 0, 0, 0, 1], [0, 1, 0, 0, 0], [1, 0, 0, 0, 0]]
    assert rec.summary()["sn"]["neurons"] == 4  # the statistics still use the whole batch


def test_histogram_range_relative_to_threshold():
    lif = fixed_lif(v_threshold=0.5)
    rec = NeuronRecorder([("sn", lif)], hist_layers=["sn"], hist_bins=4, hist_range=(-2.0, 2.0))
    rec.attach()
    lif(torch.tensor(INPUT))
    rec.detach()
    assert rec.histograms()["sn"]["edges"] == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])


def test_recorder_restores_previous_monitor():
    lif = fixed_lif()
    calls = []
    lif.monitor = lambda *a: calls.append(1)
    rec = NeuronRecorder([("a", lif)])
    rec.attach()
    lif(torch.ones(2, 1, 1))
    rec.detach()
    assert calls == [] and rec.calls == 1
    lif(torch.ones(2, 1, 1))
    assert calls == [1]


def test_pick_layers():
    names = [f"l{i}" for i in range(17)]
    assert pick_layers(names, "auto") == ["l8"]
    assert pick_layers(names, "all") == names
    assert pick_layers(names, None) == [] and pick_layers(names, []) == []
    assert pick_layers(names, 6) == ["l0", "l3", "l6", "l10", "l13", "l16"]
    assert pick_layers(names, ["l2", "l5"]) == ["l2", "l5"]
    assert pick_layers(names, "l4") == ["l4"]
    with pytest.raises(ValueError, match="unknown neuron layer 'x'; allowed: l0"):
        pick_layers(names, ["x"])


def test_prediction_recorder_counts_accuracy_entropy():
    # T=2, B=3, K=3: step 1 predicts class 0 for all; step 2 predicts 0, 1, 2
    logits = torch.tensor(
        [
            [[5.0, 0, 0], [5.0, 0, 0], [5.0, 0, 0]],
            [[1.0, 0, 0], [0, 20.0, 0], [0, 0, 20.0]],
        ]
    )
    y = torch.tensor([0, 1, 2])
    rec = PredictionRecorder(pca_classes=[0, 1], pca_max_samples=10)
    rec.update(logits, y)
    s = rec.summary()
    assert s["counts"]["instant"] == [[3, 0, 0], [1, 1, 1]]
    assert s["accuracy"]["instant"] == pytest.approx([1 / 3, 1.0])
    # cumulative step 2: means (3,0,0), (2.5,10,0), (2.5,0,10)
    assert s["counts"]["cumulative"] == [[3, 0, 0], [1, 1, 1]]
    assert s["entropy"]["instant"] == pytest.approx([0.0, 1.0])
    pca = rec.pca()
    assert pca["labels"] == [0, 1] and len(pca["points"]) == 2 and len(pca["points"][0]) == 2


def test_pca_2d_finds_main_direction():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(200, generator=g)
    x = torch.stack([3 * t, -3 * t, 0.01 * torch.randn(200, generator=g)], 1)
    pts, frac = pca_2d(x)
    assert pts.shape == (200, 2)
    assert frac[0] > 0.99
    corr = torch.corrcoef(torch.stack([pts[:, 0], t.float()]))[0, 1].abs()
    assert corr > 0.999


# -- with a Trainer ------------------------------------------------------------------------------
class TinySNN(pl.LightningModule):
    """[B, D] input repeated over T → Linear → LIF → Linear → LIF → Linear: logits [T, B, K]."""

    def __init__(self, T=3, d=6, h=16, k=4):
        super().__init__()
        self.T = T
        self.net = nn.Sequential(nn.Linear(d, h), LIF(backend="torch"), nn.Linear(h, h), LIF(backend="torch", mp_init=False), nn.Linear(h, k))

    def forward(self, x):
        return self.net(x.unsqueeze(0).expand(self.T, *x.shape))

    def _loss(self, batch):
        x, y = batch
        return nn.functional.cross_entropy(self(x).mean(0), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self._loss(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class MemoryLogger(Logger):
    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    name = "memory"
    version = "0"

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def keys_at(self, prefix):
        return sorted({s for s, m in self.rows if any(k.startswith(prefix) for k in m)})


def loaders(n=64, bs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g) * 2
    y = torch.randint(0, 4, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=bs), DataLoader(ds, batch_size=bs)


def make_trainer(tmp_path, callbacks, loggers, **kw):
    opts = dict(
        max_epochs=1, accelerator="cpu", devices=1, logger=loggers, callbacks=callbacks, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
    )
    opts.update(kw)
    return pl.Trainer(**opts)


class Probe(pl.Callback):
    """After every training batch: are monitors gone, does the recorder hold anything, live tensors."""

    def __init__(self, stats, lifs):
        self.stats, self.lifs = stats, lifs
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        live = None
        if trainer.global_step in (9, 11, 13, 15):  # epoch 2: right after record steps 8, 12 and between
            gc.collect()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                live = sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))
        self.rows.append(
            (trainer.global_step, all(l.monitor is None for l in self.lifs), self.stats.recorder.tensors_held(), live)
        )


def test_callback_records_on_schedule_without_leaking(tmp_path):
    torch.manual_seed(0)
    model = TinySNN()
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    calls = []
    stats = NeuronStatsCallback(every_n_steps=4, on_validation=False, on_test=False, hist_layers=None)
    probe = Probe(stats, lifs)
    mem = MemoryLogger()
    trainer = make_trainer(tmp_path, [stats, probe], [mem], max_steps=16, max_epochs=-1, limit_val_batches=0)
    orig_add = NeuronRecorder._add

    def counting_add(self, name, *a):
        calls.append((trainer.global_step, name))
        return orig_add(self, name, *a)

    NeuronRecorder._add = counting_add
    try:
        trainer.fit(model, *loaders())
    finally:
        NeuronRecorder._add = orig_add

    # monitors ran only on record steps, once per layer
    assert calls == [(s, n) for s in (0, 4, 8, 12) for n in ("1", "3")]
    assert mem.keys_at("neuron/") == [0, 4, 8, 12]
    assert mem.keys_at("v_threshold/") == [0, 4, 8, 12]
    # nothing installed or held after any step
    assert all(ok and held == 0 for _, ok, held, _ in probe.rows)
    # live tensor count is flat once the optimizer state exists (record and other steps alike)
    live = [n for _, _, _, n in probe.rows if n is not None]
    assert len(live) == 4 and max(live) == min(live), probe.rows
    _, metrics = next(r for r in mem.rows if "neuron/1/fr_t1" in r[1])
    expected = {f"neuron/{l}/{k}_t{t}" for l in ("1", "3") for k in ("fr", "v_mean", "v_std", "v_mean_active", "v_std_active") for t in (1, 2, 3)}
    expected |= {f"{p}/{l}" for p in ("mp_init", "v_threshold", "tau") for l in ("1", "3")}
    expected |= {f"neuron/{l}/active_frac" for l in ("1", "3")}
    assert set(metrics) == expected
    assert stats.history["tau/1"][0] == [0.0, 4.0, 8.0, 12.0]


def test_records_once_per_optimizer_step_with_accumulation(tmp_path):
    model = TinySNN()
    stats = NeuronStatsCallback(every_n_steps=2, on_validation=False, on_test=False)
    mem = MemoryLogger()
    trainer = make_trainer(tmp_path, [stats], [mem], max_steps=4, max_epochs=-1, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(model, *loaders())
    assert mem.keys_at("neuron/") == [0, 2]
    # a later test of another module object records that module's neurons
    stats.on_test = True
    other = TinySNN()
    seen = []
    for m in other.modules():
        if isinstance(m, LIF):
            m.register_forward_hook(lambda mod, i, o: seen.append(mod.monitor is not None))
    trainer.test(other, loaders()[1])
    assert seen and all(seen) and stats.last["test"]["1"]["neurons"] == 64 * 16
    assert all(m.monitor is None for m in other.modules() if isinstance(m, LIF))


def test_eval_epochs_log_to_every_logger_and_feed_figures(tmp_path):
    torch.manual_seed(0)
    model = TinySNN()
    # the three meet in the stage data files under one dirpath
    stats = NeuronStatsCallback(every_n_steps=3, hist_layers="all", hist_bins=8, dirpath=str(tmp_path / "figs"))
    preds = TimestepPredictionCallback(pca_classes=2, pca_max_samples=20, dirpath=str(tmp_path / "figs"))
    figs = FigureCallback(dirpath=str(tmp_path / "figs"), fr_layers=6)
    mem = MemoryLogger()
    csv = CSVLogger(tmp_path, name="csv", version="")
    trainer = make_trainer(tmp_path, [stats, preds, figs], [mem, csv], max_epochs=2, limit_train_batches=4, limit_val_batches=3)
    train_dl, val_dl = loaders()
    trainer.fit(model, train_dl, val_dl)
    trainer.test(model, val_dl)

    # both loggers got the same per-layer metrics
    csv_cols = open(tmp_path / "csv" / "metrics.csv").readline().strip().split(",")
    for key in ("neuron/1/fr_t1", "val_neuron/3/v_std_active_t3", "test_neuron/1/v_mean_t2", "tau/3",
                "val/acc_inst_t1", "val/pred_entropy_t3", "test/acc_inst_t2"):
        assert key in csv_cols
        assert any(key in m for _, m in mem.rows)
    assert mem.keys_at("val_neuron/") == [4, 8]
    assert not any(k.startswith("neuron/") for _, m in mem.rows for k in m if k.startswith("val"))
    # eval statistics cover the validation batches: 3 batches of 8 samples, 16 neurons
    assert stats.last["val"]["1"]["neurons"] == 3 * 8 * 16
    assert preds.last["test"]["predictions"]["samples"] == 64
    assert sum(preds.last["test"]["predictions"]["counts"]["instant"][0]) == 64
    # monitors and hooks are gone
    assert all(m.monitor is None for m in model.modules() if isinstance(m, LIF))
    assert not model._forward_hooks
    # figures
    names = set(figs.written)
    assert {"val_firing_rate", "val_predictions", "val_logit_pca", "val_membrane_1", "val_membrane_3",
            "training_curves", "neuron_params", "test_firing_rate", "test_predictions", "test_membrane_1"} <= names
    for path in figs.written.values():
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "figs" / "data" / "test.json").is_file()


def test_figures_without_csv_logger_use_memory_history(tmp_path):
    model = TinySNN()
    stats = NeuronStatsCallback(every_n_steps=1, hist_layers=None, dirpath=str(tmp_path / "figs"))
    figs = FigureCallback(dirpath=str(tmp_path / "figs"))
    trainer = make_trainer(tmp_path, [stats, figs], False, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    train_dl, val_dl = loaders()
    trainer.fit(model, train_dl, val_dl)
    # no validation: the last recorded training step stands in
    assert set(figs.written) == {"neuron_params", "training_curves", "train_firing_rate"}


def test_find_neuron_layers_uses_backbone_names():
    from snn_lightning.models import create_model

    net = create_model("small_cnn", num_classes=10, in_channels=1, T=2, norm="tdbn", neuron={"backend": "torch"}, channels=4)
    holder = nn.Module()
    holder.net = net
    names = [n for n, _ in find_neuron_layers(holder)]
    assert names == [n for n, _ in net.neuron_layers()] and len(names) == 2
    assert [n for n, _ in find_neuron_layers(TinySNN())] == ["1", "3"]


def test_bad_options_fail_early():
    with pytest.raises(ValueError, match="every_n_steps"):
        NeuronStatsCallback(every_n_steps=0)
    with pytest.raises(ValueError, match="hist_range"):
        NeuronRecorder([("a", fixed_lif())], hist_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="pred_mode"):
        FigureCallback(pred_mode="x")
    stats = NeuronStatsCallback(hist_layers=["nope"])
    with pytest.raises(ValueError, match="unknown neuron layer 'nope'"):
        stats.setup(None, TinySNN(), "fit")


def test_default_callbacks_config_instantiates():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from snn_lightning.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["paths.output_dir=/tmp/x", "paths.data_dir=/tmp/x", "paths.log_dir=/tmp/x"])
    cbs = {k: instantiate(v) for k, v in cfg.callbacks.items() if v is not None}
    assert isinstance(cbs["neuron_stats"], NeuronStatsCallback) and cbs["neuron_stats"].every_n_steps == 50
    assert isinstance(cbs["timestep_predictions"], TimestepPredictionCallback)
    assert isinstance(cbs["figures"], FigureCallback) and cbs["figures"].dirpath == "/tmp/x/figures"
    assert {"model_checkpoint", "progress_bar", "lr_monitor"} <= set(cbs)
