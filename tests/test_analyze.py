"""`snn-analyze` on checkpoints written by short `snn_lightning.train.train` runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snn_lightning import runs as run_folder
from snn_lightning.cli import analyze
from snn_lightning.config import CONF_DIR


def short_run(root: Path, name: str, *overrides: str) -> Path:
    from hydra import compose, initialize_config_dir

    from snn_lightning.cli.train import train

    out = root / name
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "debug=smoke",
                f"paths.output_dir={out}",
                f"paths.data_dir={root / 'data'}",
                f"paths.log_dir={root}",
                "callbacks.progress_bar=null",
                "callbacks.neuron_stats.every_n_steps=1",
                "+model.channels=8",
                *overrides,
            ],
        )
    train(cfg)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    on = short_run(root, "mp_on", "logger=default")  # CSV + offline wandb
    off = short_run(root, "mp_off", "logger=csv", "mp_init=off", "~callbacks.figures")
    return on, off


def test_training_run_writes_figures_and_logs(runs):
    on, _ = runs
    figs = on / "figures"
    names = {p.stem for p in figs.glob("*.png")}
    assert {"val_membrane_stem.lif", "val_firing_rate", "val_predictions", "val_logit_pca", "training_curves",
            "neuron_params", "test_membrane_stem.lif", "test_firing_rate", "test_predictions", "test_logit_pca"} <= names
    header = (on / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("neuron/stem.lif/fr_t1", "neuron/body.0.lif/v_std_active_t4", "val_neuron/stem.lif/v_mean_t1",
                "test_neuron/body.0.lif/fr_t4", "mp_init/stem.lif", "v_threshold/body.0.lif", "tau/stem.lif",
                "val/acc_inst_t1", "test/pred_entropy_t4"):
        assert key in header
    # the run summary (metrics.json) is not flooded with per-layer numbers
    metrics = json.loads((on / "metrics.json").read_text())["metrics"]
    assert not any(k.startswith(("neuron/", "val_neuron/", "mp_init/")) for k in metrics)
    # wandb (offline) got the figures as images
    media = list(on.glob("wandb/offline-run-*/files/media/images/figures/*.png"))
    assert {p.name.split("_")[0] for p in media} >= {"val", "test", "training", "neuron"}


def test_analyze_run_folder(runs):
    on, _ = runs
    summary = analyze.analyze([str(on), "--limit-batches", "2"])
    out = on / "analysis"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["accuracy"] == summary["accuracy"]
    best = json.loads((on / "metrics.json").read_text())
    assert saved["checkpoint"] == best["best_checkpoint"]
    # the same 2 test batches as snn-train's test (limit_test_batches=2): the same accuracy
    assert saved["samples"] == 32
    assert saved["accuracy"]["final"] == pytest.approx(best["metrics"]["test/acc"])
    assert saved["accuracy"]["cumulative"][-1] == pytest.approx(best["metrics"]["test/acc_t4"])
    T = saved["T"]
    assert T == 4 and len(saved["accuracy"]["instant"]) == T and len(saved["firing_rate"]) == T
    assert list(saved["layers"]) == ["stem.lif", "body.0.lif"]
    for layer, st in saved["layers"].items():
        for key in ("v_mean", "v_std", "v_mean_active", "v_std_active", "fr"):
            assert len(st[key]) == T
        assert st["drift_all"] == pytest.approx(abs(st["v_mean"][0] - st["v_mean"][-1]))
        assert saved["mp_init"][layer] == st["mp_init"] and saved["v_threshold"][layer] > 0 and saved["tau"][layer] > 1
    per = saved["drift"]["per_layer"]
    assert saved["drift"]["mean_all"] == pytest.approx(sum(d["all"] for d in per.values()) / len(per))
    assert saved["config"]["neuron.mp_init"] is True
    for name in ("test_membrane_stem.lif", "test_firing_rate", "test_predictions", "test_logit_pca", "training_curves", "neuron_params"):
        assert (out / f"{name}.png").stat().st_size > 2000
    data = json.loads((out / "data.json").read_text())
    assert len(data["histograms"]["stem.lif"]["counts"]) == T and data["pca"]["points"]


def test_analyze_checkpoint_file_all_layers(runs, tmp_path):
    on, _ = runs
    out = tmp_path / "a"
    argv = [str(on / "checkpoints" / "last.ckpt"), "--out", str(out), "--layer", "all", "--limit-batches", "1",
            "--pca-classes", "0", "--summary-only"]
    s = analyze.analyze(argv)
    assert s["samples"] == 16 and s["checkpoint"].endswith("last.ckpt")
    data = json.loads((out / "data.json").read_text())
    assert set(data["histograms"]) == {"stem.lif", "body.0.lif"} and data["pca"] is None
    assert sorted(p.name for p in out.iterdir()) == ["data.json", "summary.json"]


def test_two_checkpoints_side_by_side(runs, tmp_path):
    on, off = runs
    out = tmp_path / "cmp"
    res = analyze.analyze([str(on), str(off), "--out", str(out), "--limit-batches", "2", "--summary-only"])
    assert res["labels"] == ["MP-Init on", "MP-Init off"]
    assert (out / "comparison.png").stat().st_size > 5000
    saved = json.loads((out / "comparison.json").read_text())
    assert len(saved["drift_mean_active"]) == 2 and len(saved["accuracy_instant"][1]) == 4
    for sub in ("MP-Init_on", "MP-Init_off"):
        assert (out / sub / "summary.json").is_file()
    off_summary = json.loads((out / "MP-Init_off" / "summary.json").read_text())
    assert all(v == 0.0 for v in off_summary["mp_init"].values())


def test_resolve_checkpoint_choices(runs, tmp_path):
    on, _ = runs
    best = json.loads((on / "metrics.json").read_text())["best_checkpoint"]
    assert run_folder.resolve_checkpoint(on) == (Path(best), on)
    assert run_folder.resolve_checkpoint(on, "last") == (on / "checkpoints" / "last.ckpt", on)
    ckpt = on / "checkpoints" / "last.ckpt"
    assert run_folder.resolve_checkpoint(ckpt) == (ckpt, on)
    # without metrics.json: the highest val_acc in the file name
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    for name in ("epoch000-val_acc0.5000.ckpt", "epoch001-val_acc0.7500.ckpt", "last.ckpt"):
        (tmp_path / "r" / "checkpoints" / name).write_bytes(b"x")
    assert run_folder.resolve_checkpoint(tmp_path / "r")[0].name == "epoch001-val_acc0.7500.ckpt"


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as e:
        analyze.main(argv)
    return e.value.code, capsys.readouterr()


def test_clear_errors(tmp_path, capsys, runs):
    code, cap = run_main([str(tmp_path / "missing")], capsys)
    assert code == 2 and cap.err.strip() == f"error: {tmp_path / 'missing'} does not exist"
    (tmp_path / "empty").mkdir()
    code, cap = run_main([str(tmp_path / "empty")], capsys)
    assert code == 2 and cap.err.startswith(f"error: no checkpoint in {tmp_path / 'empty'}") and cap.err.count("\n") == 1
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    code, cap = run_main([str(tmp_path / "bad.ckpt")], capsys)
    assert code == 2 and "cannot be read" in cap.err and cap.err.count("\n") == 1
    code, cap = run_main([str(runs[0]), "--labels", "a", "b"], capsys)
    assert code == 2 and "--labels needs one label per input" in cap.err
    code, cap = run_main([str(runs[0]), "--layer", "nope", "--limit-batches", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown neuron layer 'nope'" in cap.err and cap.err.count("\n") == 1


def test_help_as_module():
    r = subprocess.run([sys.executable, "-m", "snn_lightning.analyze", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "RUN_OR_CKPT" in r.stdout and "--limit-batches" in r.stdout and "--layer" in r.stdout and "--out" in r.stdout


def test_analyze_and_figure_callback_share_the_stage_file_format(runs, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from snn_lightning import plots
    from snn_lightning.callbacks import FigureCallback

    on, _ = runs
    writes, draws = [], []
    write, draw = run_folder.write_stage_data, plots.draw_stage_data
    monkeypatch.setattr(run_folder, "write_stage_data", lambda *a, **k: writes.append(a[0]) or write(*a, **k))
    monkeypatch.setattr(plots, "draw_stage_data", lambda *a, **k: draws.append(a[0]) or draw(*a, **k))
    out = tmp_path / "a"
    analyze.analyze([str(on), "--out", str(out), "--limit-batches", "1"])
    assert writes == [out / "data.json"] and draws == [out / "data.json"]
    analysis_pngs = {p.stem for p in out.glob("test_*.png")}
    assert {"test_membrane_stem.lif", "test_firing_rate", "test_predictions", "test_logit_pca"} <= analysis_pngs
    # the file snn-train's callbacks wrote is one snn-analyze's drawer reads, and the other way round
    callback_file = on / "figures" / "data" / "test.json"
    cb_data, an_data = json.loads(callback_file.read_text()), json.loads((out / "data.json").read_text())
    assert set(cb_data) == set(an_data) and cb_data["stage"] == an_data["stage"] == "test"
    assert set(cb_data["neurons"]) == set(an_data["neurons"]) and set(cb_data["histograms"]) == set(an_data["histograms"])
    redrawn = plots.draw_stage_data(callback_file, tmp_path / "redrawn")
    assert set(redrawn) == {p.stem for p in (on / "figures").glob("test_*.png")}
    figs = tmp_path / "figs"
    (figs / "data").mkdir(parents=True)
    (figs / "data" / "test.json").write_text((out / "data.json").read_text())
    cb = FigureCallback(dirpath=str(figs))
    cb.on_test_end(SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path), global_step=0, loggers=[]), None)
    assert set(cb.written) == analysis_pngs


def test_training_run_logs_operations_and_gradient_telemetry(runs):
    on, _ = runs
    header = (on / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("val/ops_ac", "val/ops_mac", "val/energy_uj", "val/fr_mean", "test/ops_ac", "test/energy_uj",
                "neuron/stem.lif/window_t1", "grad/body.0.lif/m_norm_t4", "grad/stem.lif/u_norm_t3",
                "grad/body.0.lif/v_threshold", "grad/stem.lif/tau_rel"):
        assert key in header, key
    metrics = json.loads((on / "metrics.json").read_text())["metrics"]
    assert metrics["test/ops_mac"] > 0 and metrics["test/energy_uj"] > 0 and 0 < metrics["test/fr_mean"] < 1
    assert (on / "figures" / "gradient_flow.png").stat().st_size > 2000
    media = {p.name.split("_")[0] for p in on.glob("wandb/offline-run-*/files/media/images/figures/*.png")}
    assert "gradient" in media
    # the offline wandb run got the same keys (its record file holds the key names as strings)
    (record,) = on.glob("wandb/offline-run-*/run-*.wandb")
    data = record.read_bytes()
    for key in ("val/ops_ac", "test/energy_uj", "grad/body.0.lif/m_norm_t1", "neuron/stem.lif/window_t2"):
        assert key.encode() in data, key


def test_analyze_operations_gradients_and_raster(runs, tmp_path):
    on, _ = runs
    out = tmp_path / "a"
    s = analyze.analyze([str(on), "--out", str(out), "--limit-batches", "2", "--raster", "body.0.lif", "--raster-samples", "2"])
    best = json.loads((on / "metrics.json").read_text())["metrics"]
    ops = s["operations"]
    # the same 2 test batches and checkpoint as snn-train's test pass: the same counts
    assert ops["ac"] == pytest.approx(best["test/ops_ac"]) and ops["mac"] == pytest.approx(best["test/ops_mac"])
    assert ops["energy_uj"] == pytest.approx(best["test/energy_uj"])
    assert set(ops["firing_rate"]) == {"stem.lif", "body.0.lif"} and "stem.conv" in ops["per_layer"]
    assert ops["per_layer"]["stem.conv"]["ac"] == 0 and ops["per_layer"]["body.0.conv.0"]["mac"] == 0
    md = (out / "summary.md").read_text()
    assert "| stem.lif |" in md and "| body.0.conv.0 |" in md and "energy share" in md
    g = s["gradients"]
    assert set(g) == {"stem.lif", "body.0.lif"} and len(g["stem.lif"]["m_norm"]) == 4 and len(g["stem.lif"]["u_norm"]) == 3
    assert (out / "gradient_flow.png").stat().st_size > 2000
    rec = json.loads((out / "test_raster_body.0.lif.json").read_text())
    assert len(rec["spikes"]) == 2 and len(rec["spikes"][0][0]) == 4
    assert (out / "test_raster_body.0.lif.png").stat().st_size > 2000


def test_two_runs_compare_gradient_telemetry(runs, tmp_path):
    on, off = runs
    out = tmp_path / "cmp"
    res = analyze.analyze([str(on), str(off), "--out", str(out), "--limit-batches", "1", "--summary-only", "--grad-batches", "1"])
    assert (out / "gradient_comparison.png").stat().st_size > 5000
    assert len(res["gradients"]) == 2 and res["operations"][0]["ac"] > 0


def test_raster_of_an_unknown_layer_is_one_line(runs, tmp_path, capsys):
    code, cap = run_main([str(runs[0]), "--raster", "nope", "--limit-batches", "1", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown neuron layer 'nope'" in cap.err and cap.err.count("\n") == 1
