"""The operation-count and gradient-telemetry callbacks in a real (tiny) fit: keys, schedule, values."""
from __future__ import annotations

import functools
import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from snn_lightning.callbacks import GradientTelemetryCallback, NeuronStatsCallback, OperationCountCallback
from snn_lightning.energy import count_operations, energy_pj
from snn_lightning.models import create_model
from snn_lightning.module import SNNModule

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class MemoryLogger(Logger):
    name = "memory"
    version = "0"

    def __init__(self):
        super().__init__()
        self.rows = []

    def log_metrics(self, metrics, step=None):
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _setup(tmp_path, callbacks, **kw):
    torch.manual_seed(0)
    net = create_model("small_cnn", num_classes=3, in_channels=1, T=2, channels=4, neuron={"surrogate": "triangular"})
    module = SNNModule(net, num_classes=3, T=2, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(24, 1, 8, 8, generator=g) * 2, torch.randint(0, 3, (24,), generator=g))
    loader = DataLoader(data, batch_size=8)
    mem = MemoryLogger()
    kw.setdefault("max_epochs", 1)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=[mem], callbacks=callbacks, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)
    return module, loader, mem, trainer


def test_operation_counts_are_logged_per_evaluation_epoch(tmp_path):
    ops = OperationCountCallback()
    module, loader, mem, trainer = _setup(tmp_path, [ops])
    trainer.fit(module, loader, loader)
    res = trainer.test(module, loader, verbose=False)[0]
    # independent: count_operations over the same batches after the fit
    counts = [count_operations(module.net, x) for x, _ in loader]
    ac = sum(c.ac for c in counts) / len(counts)  # equal batch sizes: the mean of means is the mean
    mac = sum(c.mac for c in counts) / len(counts)
    assert res["test/ops_ac"] == pytest.approx(ac) and res["test/ops_mac"] == pytest.approx(mac)
    assert res["test/energy_uj"] == pytest.approx(energy_pj({"ac": ac, "mac": mac}) * 1e-6)
    assert res["test/fr_mean"] == pytest.approx(sum(c.mean_firing_rate for c in counts) / len(counts))
    logged = {k for _, m in mem.rows for k in m}
    assert {"val/ops_ac", "val/ops_mac", "val/energy_uj"} <= logged
    assert ops.last["test"].per_layer.keys() == counts[0].per_layer.keys()
    from snn_lightning import runs

    data = runs.read_stage_data(runs.stage_data_path(tmp_path / "figures", "test"))
    assert data["operations"]["ac"] == pytest.approx(ac) and set(data["operations"]["firing_rates"]) == {"stem.lif", "body.0.lif"}
    assert not module.net._forward_hooks and not module.net.stem.conv._forward_hooks  # detached after the epoch


def test_operation_count_max_batches(tmp_path):
    ops = OperationCountCallback(max_batches=1, on_validation=False)
    module, loader, mem, trainer = _setup(tmp_path, [ops])
    res = trainer.test(module, loader, verbose=False)[0]
    first = count_operations(module.net, next(iter(loader))[0])
    assert res["test/ops_ac"] == pytest.approx(first.ac)


def test_gradient_telemetry_on_schedule_with_neuron_stats(tmp_path):
    stats = NeuronStatsCallback(every_n_steps=2, on_validation=False, on_test=False, hist_layers=None)
    grad = GradientTelemetryCallback(every_n_steps=2, dirpath=str(tmp_path / "figures"))
    module, loader, mem, trainer = _setup(tmp_path, [stats, grad], max_epochs=2, limit_val_batches=0)
    trainer.fit(module, loader)
    steps = sorted({s for s, m in mem.rows if any(k.startswith("grad/") for k in m)})
    assert steps == [0, 2, 4]  # 6 optimizer steps, every 2nd recorded
    row = next(m for s, m in mem.rows if s == 2 and "grad/body.0.lif/m_norm_t1" in m)
    for layer in ("stem.lif", "body.0.lif"):
        assert {f"neuron/{layer}/window_t1", f"grad/{layer}/u_norm_t1", f"grad/{layer}/v_threshold", f"grad/{layer}/tau_rel"} <= set(row)
        assert 0.0 <= row[f"neuron/{layer}/window_t2"] <= 1.0
    assert any(f"neuron/stem.lif/fr_t1" in m for s, m in mem.rows if s == 2)  # the forward recorder still ran
    assert all(l.monitor is None for _, l in module.net.neuron_layers())
    assert (tmp_path / "figures" / "gradient_flow.png").is_file()
    assert [s for s, _ in grad.history] == [0, 2, 4]
    from snn_lightning import runs

    data = runs.read_stage_data(runs.stage_data_path(tmp_path / "figures", "train"))
    assert data["global_step"] == 4 and data["gradients"] == grad.history[-1][1]
