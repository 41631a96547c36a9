"""The wandb workspace (snn_lightning.dashboard, snn-dashboard), built offline from the keys a real run logs."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from snn_lightning.wandb_workspace import build_workspace, define_metrics, group_keys, panel_keys
from snn_lightning.neurons import LIF
from snn_lightning.telemetry import GradientRecorder, gradient_metrics

# the metrics.csv header of a real `snn-train` run (small_cnn on digits, 2 epochs of 3 batches, recording every
# step); regenerate if keys change with `snn-train logger=csv trainer.max_epochs=2 +trainer.limit_train_batches=3
# +trainer.limit_val_batches=2 +trainer.limit_test_batches=2 callbacks.neuron_stats.every_n_steps=1
# callbacks.gradient_telemetry.every_n_steps=1` (the header of its csv/metrics.csv, without step and epoch)
RUN_KEYS = (Path(__file__).parent / "fixtures" / "small_cnn_run_keys.txt").read_text().split()
LAYERS = ["stem.lif", "body.0.lif"]


def _telemetry_keys() -> list[str]:
    """The gradient keys the telemetry logs, produced by the recorder itself on a two-layer stack."""
    lifs = [LIF(backend="torch", surrogate="triangular") for _ in LAYERS]
    rec = GradientRecorder(list(zip(LAYERS, lifs)))
    rec.attach()
    x = torch.randn(4, 2, 3, requires_grad=True)
    lifs[1](lifs[0](x) * 2.0).sum().backward()
    rec.record_parameters()
    rec.detach()
    return list(gradient_metrics(rec.summary()))


def test_the_fixture_holds_what_the_recorders_log():
    assert set(_telemetry_keys()) <= set(RUN_KEYS)
    assert {"val/ops_ac", "val/ops_mac", "val/energy_uj", "val/fr_mean", "test/ops_ac", "test/energy_uj"} <= set(RUN_KEYS)


def test_workspace_sections_and_keys_match_a_real_run():
    keys = RUN_KEYS
    ws = build_workspace("ent", "proj", keys)
    drawn = panel_keys(ws)
    assert list(drawn) == [
        "Accuracy",
        "Accuracy per timestep",
        "Firing rate per layer (train)",
        "Firing rate per layer (validation)",
        "Membrane per layer (train)",
        "Membrane spread per layer (train)",
        "Gradient flow through time",
        "Surrogate-window occupancy",
        "MP-Init, V_thr, tau",
        "Threshold and tau gradients",
        "Operations and energy",
    ]
    every = [k for ks in drawn.values() for k in ks]
    assert set(every) <= set(keys)  # no panel draws a key the run does not log
    # one panel per layer, holding its T timesteps in order
    fr = ws.sections[2].panels
    assert [p.title for p in fr] == sorted(LAYERS)
    assert fr[1].y == [f"neuron/stem.lif/fr_t{t}" for t in range(1, 5)]
    assert drawn["MP-Init, V_thr, tau"] == [f"{p}/{layer}" for p in ("mp_init", "v_threshold", "tau") for layer in sorted(LAYERS)]
    assert {f"grad/{layer}/u_norm_t{t}" for layer in LAYERS for t in (1, 2, 3)} <= set(drawn["Gradient flow through time"])
    assert set(drawn["Operations and energy"]) == {f"{s}/{k}" for s in ("val", "test") for k in ("ops_ac", "ops_mac", "energy_uj", "fr_mean")}
    # every key of the families the workspace lays out is drawn (test_neuron/… and val_neuron/ membrane are not)
    families = [r"^neuron/.+/(fr|v_mean|v_mean_active|v_std|v_std_active|window)_t\d+$", r"^val_neuron/.+/fr_t\d+$",
                r"^grad/.+$", r"^(mp_init|v_threshold|tau)/.+$", r"^(val|test)/(acc|acc_inst|pred_entropy)_t\d+$",
                r"^(val|test)/(ops_ac|ops_mac|energy_uj|fr_mean)$"]
    missing = [k for k in keys if any(re.match(f, k) for f in families) and k not in every]
    assert not missing
    assert "test/acc_t4" in drawn["Accuracy per timestep"] and "val/acc_inst_t1" in drawn["Accuracy per timestep"]
    # epoch-level panels draw against the epoch, per-step ones against the step
    assert ws.sections[0].panels[0].x == "epoch" and fr[0].x == "Step"
    ws._to_model()  # serializes offline


def test_sections_without_keys_are_left_out():
    ws = build_workspace("e", "p", ["val/acc", "train/acc"])
    assert [s.name for s in ws.sections] == ["Accuracy"]


def test_group_keys_orders_timesteps_numerically():
    g = group_keys([f"neuron/a/fr_t{t}" for t in (10, 2, 1)])
    assert g["per_t"][("neuron", "fr")]["a"] == ["neuron/a/fr_t1", "neuron/a/fr_t2", "neuron/a/fr_t10"]


def test_define_metrics():
    calls = []

    class Run:
        def define_metric(self, name, **kw):
            calls.append((name, kw))

    define_metrics(Run())
    assert ("val/acc", {"step_metric": "epoch", "step_sync": True, "summary": "max"}) in calls
    assert ("val/loss", {"step_metric": "epoch", "step_sync": True, "summary": "min"}) in calls
    assert ("val/*", {"step_metric": "epoch", "step_sync": True}) in calls and ("epoch", {}) in calls


def test_define_metrics_on_an_offline_wandb_run(tmp_path):
    wandb = pytest.importorskip("wandb")
    run = wandb.init(mode="offline", dir=str(tmp_path), project="snn-test")
    try:
        define_metrics(run)
        run.log({"epoch": 0, "val/acc": 0.5})
        run.log({"epoch": 1, "val/acc": 0.25})
        assert run.summary["val/acc"]["max"] == 0.5
    finally:
        run.finish()


def _cli(args, capsys):
    from snn_lightning.cli import dashboard

    with pytest.raises(SystemExit) as e:
        dashboard.main(args)
    return e.value.code, capsys.readouterr()


def test_cli_dry_run_from_a_run_folder(tmp_path, capsys):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(",".join(["epoch", "step", *RUN_KEYS]) + "\n" + ",".join(["0"] * (len(RUN_KEYS) + 2)) + "\n")
    from snn_lightning.cli import dashboard

    assert dashboard.run(["ent/proj", "--run", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Firing rate per layer (train): 8 keys" in out and "saved" not in out


@pytest.mark.parametrize("args, message", [
    (["nope"], "expected ENTITY/PROJECT, got 'nope'"),
    (["e/p", "--run", "/no/such/dir", "--dry-run"], "is not a folder"),
])
def test_cli_bad_input_is_one_line(args, message, capsys):
    code, captured = _cli(args, capsys)
    assert code == 2 and captured.err.startswith("error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def test_wandb_metric_definitions_callback(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import WandbLogger

    from snn_lightning.callbacks import WandbMetricDefinitions

    logger = WandbLogger(project="snn-test", save_dir=str(tmp_path), offline=True)
    trainer = pl.Trainer(logger=[logger], accelerator="cpu", devices=1, enable_progress_bar=False, enable_checkpointing=False,
                         default_root_dir=tmp_path)
    try:
        WandbMetricDefinitions().setup(trainer, None, "fit")
        logger.experiment.log({"epoch": 0, "val/acc": 0.5})
        logger.experiment.log({"epoch": 1, "val/acc": 0.25})
        assert logger.experiment.summary["val/acc"]["max"] == 0.5
    finally:
        logger.experiment.finish()
