"""snn-aggregate on fabricated job folders: grouping, mean ± std, failed jobs, paper numbers, plots."""
from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from snn_lightning.aggregate import aggregate, main, parse_override, same_value

# acc per (sg, v_threshold) and seed; acc_t1 = acc - 10 points
ACC = {
    ("as", 0.5): [0.80, 0.84, 0.82],
    ("as", 2.0): [0.40, 0.50, 0.45],
    ("trsg", 0.5): [0.90, 0.92, 0.91],
    ("trsg", 2.0): [0.88, 0.86],  # the third seed failed
}
PAPER_REF = [{"match": {"sg": "trsg", "neuron.v_threshold": 0.5}, "accuracy": 77.66, "std": 0.15, "dataset": "CIFAR100"}]


def make_job(root: Path, sg: str, vthr: float, seed: int, acc: float | None, status: str = "finished",
             drift: tuple[float, float] | None = None, paper=None) -> Path:
    overrides = [f"sg={sg}", f"neuron.v_threshold={vthr}", f"seed={seed}", "+sweep=fig9", "+scale=smoke"]
    job = root / ",".join(sorted(o.lstrip("+") for o in overrides[:3]))
    (job / ".hydra").mkdir(parents=True)
    config = {"T": 2, "seed": seed, "neuron": {"v_threshold": vthr, "sg_mode": sg, "reset": "soft"},
              "study": {"name": "fig9", "scale": "smoke", "paper_reference": PAPER_REF}, "paper": paper}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"sg": sg, "data": "digits"}}}}))
    if status == "finished":
        metrics = {"test/acc": acc, "test/acc_t1": acc - 0.10, "test/acc_t2": acc, "val/acc": acc, "epoch": 3}
        (job / "metrics.json").write_text(json.dumps({"metrics": metrics, "best_checkpoint": None}))
        (job / "status.json").write_text(json.dumps({"status": "finished", "seconds": 2.0, "test_acc": acc}))
    elif status == "failed":
        (job / "status.json").write_text(json.dumps({"status": "failed", "error": "ValueError: tau must be greater than 1"}))
    else:
        (job / "status.json").write_text(json.dumps({"status": status}))
    if drift is not None:  # test_neuron/<layer>/v_mean_t<t>: two layers, drift |v1 - vT| = drift[i]
        (job / "csv").mkdir()
        cols = {}
        for i, d in enumerate(drift):
            cols[f"test_neuron/l{i}/v_mean_t1"] = 0.1
            cols[f"test_neuron/l{i}/v_mean_t2"] = 0.1 + d
            cols[f"test_neuron/l{i}/v_mean_active_t1"] = 0.5
            cols[f"test_neuron/l{i}/v_mean_active_t2"] = 0.5 - d / 2
        with (job / "csv" / "metrics.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["epoch", "step", "val/acc", *cols])
            w.writeheader()
            w.writerow({"epoch": 0, "step": 10, "val/acc": 0.5})  # a training-time row without them
            w.writerow({"epoch": 3, "step": 60, **cols})
    return job


@pytest.fixture()
def sweep(tmp_path):
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    for (sg, v), accs in ACC.items():
        for seed, acc in enumerate(accs, start=1):
            make_job(root, sg, v, seed, acc, drift=(0.2 * seed, 0.4 * seed) if (sg, v) == ("as", 0.5) else None)
    make_job(root, "trsg", 2.0, 3, None, status="failed")
    make_job(root, "as", 2.0, 4, None, status="running")  # killed mid-run: not counted
    return root


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_summary_numbers(sweep, tmp_path):
    res = aggregate([sweep], out=tmp_path / "agg")
    assert res["keys"] == ["sg", "neuron.v_threshold"]
    rows = {(r["sg"], float(r["neuron.v_threshold"])): r for r in read_csv(tmp_path / "agg" / "summary.csv")}
    assert set(rows) == set(ACC)
    for key, accs in ACC.items():
        r = rows[key]
        pct = [100 * a for a in accs]
        assert int(r["n"]) == len(accs)
        assert float(r["acc_mean"]) == pytest.approx(statistics.mean(pct), abs=1e-4)
        assert float(r["acc_std"]) == pytest.approx(statistics.stdev(pct), abs=1e-4)  # sample std
        assert float(r["acc_t1_mean"]) == pytest.approx(statistics.mean(pct) - 10, abs=1e-4)
        assert float(r["acc_t2_mean"]) == pytest.approx(statistics.mean(pct), abs=1e-4)
    assert int(rows[("trsg", 2.0)]["n_failed"]) == 1 and int(rows[("as", 2.0)]["n_failed"]) == 1
    assert int(rows[("as", 0.5)]["n_failed"]) == 0
    # drift: mean over the two layers of |v[1] - v[T]| = 0.3 * seed; mean over seeds 1..3 = 0.6
    assert float(rows[("as", 0.5)]["drift_mean"]) == pytest.approx(0.6)
    assert float(rows[("as", 0.5)]["drift_std"]) == pytest.approx(statistics.stdev([0.3, 0.6, 0.9]))
    assert float(rows[("as", 0.5)]["drift_active_mean"]) == pytest.approx(0.3)
    assert rows[("as", 2.0)]["drift_mean"] == ""
    # the paper's number from the sweep's reference list, only where it matches
    assert float(rows[("trsg", 0.5)]["paper_accuracy"]) == 77.66
    assert rows[("as", 0.5)]["paper_accuracy"] == ""

    jobs = read_csv(tmp_path / "agg" / "jobs.csv")
    assert len(jobs) == 13
    assert sum(j["status"] == "finished" for j in jobs) == 11
    failed = [j for j in jobs if j["status"] == "failed"]
    assert len(failed) == 1 and "tau must be greater than 1" in failed[0]["error"]


def test_markdown_and_plots(sweep, tmp_path):
    res = aggregate([sweep], out=tmp_path / "agg")
    md = (tmp_path / "agg" / "summary.md").read_text()
    assert md == res["markdown"]
    assert "fig9 (smoke scale)" in md
    # as @ 0.5: 82.00 ± 2.00; trsg @ 2.0: 87.00 ± 1.41 (2 of 3 seeds)
    assert "| as | 0.5 | 3 | 82.00 ± 2.00 | 72.00 ± 2.00 | 82.00 ± 2.00 | 0.600 ± 0.300 | 0.300 ± 0.150 |" in md
    assert "| trsg | 2.0 | 2 (1 failed) | 87.00 ± 1.41 |" in md
    assert "77.66 ± 0.15 (CIFAR100)" in md
    assert "## Failed or unfinished jobs" in md
    assert "seed=3,sg=trsg`: failed — ValueError: tau must be greater than 1" in md
    assert "seed=4,sg=as`: running" in md
    # robustness across V_thr: as 82 and 45 -> spread 37; trsg 91 and 87 -> spread 4
    assert "## Robustness across neuron.v_threshold" in md
    assert "| as | 2 | 63.50 | 45.00 | 82.00 | 37.00 |" in md
    assert "| trsg | 2 | 89.00 | 87.00 | 91.00 | 4.00 |" in md
    for name in ("accuracy_vs_v_threshold.png", "accuracy_per_timestep.png"):
        p = tmp_path / "agg" / name
        assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG"


def test_paired_by_seed(sweep, tmp_path):
    res = aggregate([sweep], out=tmp_path / "agg", paired=["sg"], plots=False)
    md = res["markdown"]
    assert "## Paired by seed: sg" in md
    # trsg - as per seed: V_thr 0.5 -> 10, 8, 9 points; V_thr 2.0 -> 48, 36 (seed 3 failed for trsg)
    assert "| 0.5 | trsg − as | 3 | 9.00 ± 1.00 | 3/0/0 | 9.00 ± 1.00 | 3/0/0 |" in md
    assert "| 2.0 | trsg − as | 2 | 42.00 ± 8.49 | 2/0/0 |" in md
    with pytest.raises(ValueError, match="not one of the group keys"):
        aggregate([sweep], out=tmp_path / "agg2", paired=["norm"], plots=False)


def test_group_by_and_experiment_paper_key(tmp_path):
    root = tmp_path / "s"
    paper = {"accuracy": 76.09, "std": 0.04, "dataset": "CIFAR100", "table": "Table 1"}
    for seed, acc in [(1, 0.5), (2, 0.7)]:
        make_job(root, "as", 1.0, seed, acc, paper=paper)
    res = aggregate([root], out=tmp_path / "o", plots=False)
    assert res["keys"] == []  # nothing but the seed varies
    (g,) = res["groups"]
    assert g.stats["acc"][0] == pytest.approx(60.0) and g.stats["acc"][1] == pytest.approx(math.sqrt(200))
    assert g.paper["accuracy"] == 76.09 and "76.09 ± 0.04 (CIFAR100)" in res["markdown"]
    res = aggregate([root], out=tmp_path / "o2", group_by=["sg", "neuron.reset"], plots=False)
    assert [g.key for g in res["groups"]] == [("as", "soft")]


def test_helpers():
    assert parse_override("+sweep=fig9") == ("sweep", "fig9")
    assert parse_override("neuron.v_threshold=0.5") == ("neuron.v_threshold", "0.5")
    assert parse_override("~callbacks") is None
    assert same_value("1", 1.0) and same_value("on", True) and same_value("off", False) and not same_value("as", "rs")


def test_cli(sweep, tmp_path, capsys):
    main([str(sweep), "--out", str(tmp_path / "cli"), "--no-plots"])
    out = capsys.readouterr().out
    assert "82.00 ± 2.00" in out and (tmp_path / "cli" / "summary.md").is_file()
    assert not (tmp_path / "cli" / "accuracy_per_timestep.png").exists()
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "empty_missing")])
    assert e.value.code == 2
    r = subprocess.run([sys.executable, "-m", "snn_lightning.aggregate", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "snn-aggregate" in r.stdout and "--group-by" in r.stdout
