"""The shared val/test hook base and the stage data files the callbacks write and the figures are drawn from."""
from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snn_lightning import plots, runs
from snn_lightning.callbacks import FigureCallback, NeuronStatsCallback, RecordSchedule, StageCallback, TimestepPredictionCallback
from snn_lightning.monitor import run_analysis
from snn_lightning.neurons import LIF

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*log_every_n_steps.*")

SIX_HOOKS = [f"on_{s}_{h}" for s in ("validation", "test") for h in ("epoch_start", "batch_end", "epoch_end")]


class Tiny(pl.LightningModule):
    """[B, 6] repeated over T=3 → Linear → LIF → Linear: logits [T, B, 4]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), LIF(backend="torch"), nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x.unsqueeze(0).expand(3, *x.shape))

    def _loss(self, batch):
        return nn.functional.cross_entropy(self(batch[0]).mean(0), batch[1])

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self._loss(batch)

    def test_step(self, batch, batch_idx):
        self._loss(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(n=32, bs=8):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 6, generator=g) * 2, torch.randint(0, 4, (n,), generator=g)), batch_size=bs)


def trainer(tmp_path, callbacks, **kw):
    opts = dict(max_epochs=1, accelerator="cpu", devices=1, logger=False, callbacks=callbacks, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    opts.update(kw)
    return pl.Trainer(**opts)


class Calls(StageCallback):
    def __init__(self, decline=(), **kw):
        super().__init__(**kw)
        self.calls, self.decline = [], set(decline)

    def eval_start(self, stage, trainer, pl_module):
        self.calls.append(("start", stage, trainer.sanity_checking))
        return stage not in self.decline

    def eval_batch_end(self, stage, trainer, pl_module, outputs, batch):
        self.calls.append(("batch", stage, len(batch[1])))

    def eval_end(self, stage, trainer, pl_module):
        self.calls.append(("end", stage))

    def eval_stop(self):
        self.calls.append(("stop",))


def test_stage_callback_maps_the_six_hooks_once(tmp_path):
    cb = Calls()
    t = trainer(tmp_path, [cb], num_sanity_val_steps=1, limit_train_batches=2, limit_val_batches=2, limit_test_batches=1)
    t.fit(Tiny(), loader(), loader())
    # no call during the sanity check; one start, a batch_end per batch, one end per epoch
    assert cb.calls == [("start", "val", False), ("batch", "val", 8), ("batch", "val", 8), ("end", "val"), ("stop",)]
    cb.calls.clear()
    t.test(Tiny(), loader())
    assert cb.calls == [("start", "test", False), ("batch", "test", 8), ("end", "test"), ("stop",)]
    # a disabled stage (read when the epoch starts) and a declined one see no hook
    cb.calls.clear()
    cb.on_test = False
    t.test(Tiny(), loader())
    assert cb.calls == [("stop",)]
    declining = Calls(decline={"val"})
    trainer(tmp_path, [declining], limit_val_batches=2).validate(Tiny(), loader())
    assert declining.calls == [("start", "val", False), ("stop",)]


def test_observability_callbacks_inherit_the_mapping():
    for cls in (NeuronStatsCallback, TimestepPredictionCallback):
        assert issubclass(cls, StageCallback)
        assert not [h for h in SIX_HOOKS if h in vars(cls)], f"{cls.__name__} spells out val/test hooks again"
    assert not hasattr(FigureCallback, "_find")  # draws from files, never looks for its siblings


def test_record_schedule():
    s = RecordSchedule(3)
    assert [step for step in range(8) if s.due(step)] == [0, 3, 6]
    s = RecordSchedule(2)
    assert [s.due(0), s.due(0), s.due(1), s.due(2)] == [True, False, False, True]  # one record per optimizer step
    assert not RecordSchedule(None).due(0)
    with pytest.raises(ValueError, match="every_n_steps"):
        RecordSchedule(0)


def test_stage_data_file_parts_merge_per_stage(tmp_path):
    path = runs.stage_data_path(tmp_path, "val")
    assert runs.read_stage_data(path) is None
    runs.write_stage_data(path, "val", 4, neurons={"a": {"fr": [0.1]}})
    runs.write_stage_data(path, "val", 4, predictions={"counts": {}}, pca=None)
    data = runs.read_stage_data(path)
    assert data == {"stage": "val", "global_step": 4, "neurons": {"a": {"fr": [0.1]}}, "histograms": None,
                    "predictions": {"counts": {}}, "pca": None}
    runs.write_stage_data(path, "test", None, pca={"points": [1]})  # another stage replaces, never mixes
    assert runs.read_stage_data(path)["neurons"] is None
    with pytest.raises(ValueError, match="unknown stage data part 'logits'"):
        runs.write_stage_data(path, "val", 0, logits=[1])
    runs.write_stage_data(runs.stage_data_path(tmp_path, "test"), "test", 0, neurons={"a": {}})
    runs.clear_stage_data(tmp_path, ["val", "test"])
    assert not list((tmp_path / "data").glob("*.json"))


def test_param_history_appends_and_survives_a_cut_line(tmp_path):
    path = runs.param_history_path(tmp_path)
    assert runs.read_history(path) == {}
    runs.append_history(path, 0, {"tau/a": 2.0, "v_threshold/a": 1.0})
    runs.append_history(path, 5, {"tau/a": 2.5, "v_threshold/a": 0.9})
    with open(path, "a") as f:
        f.write('{"step": 9, "tau/a"')  # a crash mid-line
    assert runs.read_history(path) == {"tau/a": ([0.0, 5.0], [2.0, 2.5]), "v_threshold/a": ([0.0, 5.0], [1.0, 0.9])}


def fake_trainer(root):
    """What FigureCallback may touch: no ``callbacks`` attribute, so looking for siblings would fail."""
    return SimpleNamespace(is_global_zero=True, default_root_dir=str(root), global_step=7, loggers=[])


def test_figure_callback_draws_a_stage_file_written_by_the_analysis_path(tmp_path):
    net = nn.Sequential(nn.Linear(6, 16), LIF(backend="torch"), nn.Linear(16, 4))
    result = run_analysis(net, loader(), prepare=lambda x: x.unsqueeze(0).expand(3, *x.shape), hist_layers="all")
    figs = tmp_path / "figures"
    runs.write_stage_data(runs.stage_data_path(figs, "test"), "test", 0, **result.stage_parts())
    cb = FigureCallback()
    cb.on_test_end(fake_trainer(tmp_path), None)
    assert set(cb.written) == {"test_membrane_1", "test_firing_rate", "test_predictions", "test_logit_pca"}
    assert all(p.parent == figs and p.read_bytes()[:4] == b"\x89PNG" for p in cb.written.values())
    # fit end without a val file: the train stage; without any file: only what the history supports
    cb = FigureCallback()
    cb.on_fit_end(fake_trainer(tmp_path / "empty"), None)
    assert cb.written == {}


def spy(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_callbacks_write_and_figures_draw_through_the_shared_functions(tmp_path, monkeypatch):
    writes = spy(monkeypatch, runs, "write_stage_data")
    draws = spy(monkeypatch, plots, "draw_stage_data")
    stats, preds, figs = NeuronStatsCallback(every_n_steps=None), TimestepPredictionCallback(pca_classes=2), FigureCallback()
    trainer(tmp_path, [stats, preds, figs], limit_test_batches=2).test(Tiny(), loader())
    path = runs.stage_data_path(tmp_path / "figures", "test")
    assert [(a[0], a[1], sorted(k)) for a, k in writes] == [
        (path, "test", ["histograms", "neurons"]), (path, "test", ["pca", "predictions"])]
    assert [a[0] for a, _ in draws] == [path]
    data = json.loads(path.read_text())
    assert data["neurons"]["1"]["neurons"] == 16 * 16 and data["predictions"]["samples"] == 16
    assert {"test_firing_rate", "test_predictions", "test_logit_pca", "test_membrane_1"} == set(figs.written)


def test_training_records_are_stamped_with_their_step(tmp_path):
    stats = NeuronStatsCallback(every_n_steps=2, on_validation=False, hist_layers=None)
    trainer(tmp_path, [stats], limit_train_batches=3, limit_val_batches=0).fit(Tiny(), loader())
    figs = tmp_path / "figures"
    assert runs.read_stage_data(runs.stage_data_path(figs, "train"))["global_step"] == 2  # the last record step
    history = runs.read_history(runs.param_history_path(figs))
    assert history["tau/1"][0] == [0.0, 2.0] and history["tau/1"] == stats.history["tau/1"]
    # a new fit in the same folder starts a new history (no resume)
    trainer(tmp_path, [NeuronStatsCallback(every_n_steps=2, on_validation=False)], limit_train_batches=1,
            limit_val_batches=0).fit(Tiny(), loader())
    assert runs.read_history(runs.param_history_path(figs))["tau/1"][0] == [0.0]
