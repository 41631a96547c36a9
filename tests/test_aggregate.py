"""snn-aggregate on fabricated job folders: grouping, mean ± std, failed jobs, paper numbers, plots."""
from __future__ import annotations

import csv
import json
import os
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    from tests import sweep_rebuild
except ImportError:  # tests/ is on sys.path (pytest rootdir-less import)
    import sweep_rebuild

from snn_lightning.cli.aggregate import main
from snn_lightning.sweeps import aggregate, parse_override, same_value

# acc per (sg, v_threshold) and seed; acc_t1 = acc - 10 points
ACC = {
    ("as", 0.5): [0.80, 0.84, 0.82],
    ("as", 2.0): [0.40, 0.50, 0.45],
    ("trsg", 0.5): [0.90, 0.92, 0.91],
    ("trsg", 2.0): [0.88, 0.86],  # the third seed failed
}
PAPER_REF = [{"match": {"sg": "trsg", "neuron.v_threshold": 0.5}, "accuracy": 77.66, "std": 0.15, "dataset": "CIFAR100"}]


def make_job(root: Path, sg: str, vthr: float, seed: int, acc: float | None, status: str = "finished",
             drift: tuple[float, float] | None = None, paper=None, reset: str | None = None,
             curves: list[tuple[float, float]] | None = None) -> Path:
    """One fabricated job folder; ``reset`` adds a ``neuron.reset`` override, ``curves`` writes per-epoch
    (train/loss_epoch, val/acc) pairs to csv/metrics.csv the way Lightning's CSVLogger does."""
    overrides = [f"sg={sg}", f"neuron.v_threshold={vthr}", f"seed={seed}", *([f"neuron.reset={reset}"] if reset else []),
                 "+sweep=fig9", "+scale=smoke"]
    job = root / ",".join(sorted(o.lstrip("+") for o in overrides if not o.startswith("+")))
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
    rows: list[dict] = []
    if curves is not None:  # per epoch: a step row, a stale val/acc, the real val row, then the epoch's train row
        for e, (loss, vacc) in enumerate(curves):
            rows += [{"epoch": e, "step": 10 * e + 4, "train/loss_step": 9.0},
                     {"epoch": e, "step": 10 * e + 5, "val/acc": 0.01},
                     {"epoch": e, "step": 10 * e + 9, "val/acc": vacc},
                     {"epoch": e, "step": 10 * e + 9, "train/loss_epoch": loss}]
        rows.append({"epoch": len(curves), "step": 10 * len(curves), "test/acc": acc})
    if drift is not None:  # test_neuron/<layer>/v_mean_t<t>: two layers, drift |v1 - vT| = drift[i]
        cols = {}
        for i, d in enumerate(drift):
            cols[f"test_neuron/l{i}/v_mean_t1"] = 0.1
            cols[f"test_neuron/l{i}/v_mean_t2"] = 0.1 + d
            cols[f"test_neuron/l{i}/v_mean_active_t1"] = 0.5
            cols[f"test_neuron/l{i}/v_mean_active_t2"] = 0.5 - d / 2
        rows += [{"epoch": 0, "step": 10, "val/acc": 0.5},  # a training-time row without them
                 {"epoch": 3, "step": 60, **cols}]
    if rows:
        (job / "csv").mkdir()
        with (job / "csv" / "metrics.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            w.writeheader()
            w.writerows(rows)
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
    # no per-epoch data in this sweep (and no job at V_thr = 1.0): no training curves, silently
    assert res["curves"] is None and not (tmp_path / "agg" / "training_curves.png").exists()


def fake_curve(sg: str, reset: str, seed: int) -> list[tuple[float, float]]:
    """(train loss, val acc) for epochs 0..2."""
    off = (0.5 if sg == "as" else 0.0) + (0.2 if reset == "hard" else 0.0)
    return [(2.0 / (e + 1) + off + 0.1 * seed, 0.5 + 0.1 * e + 0.01 * seed - off / 10) for e in range(3)]


def test_training_curves(tmp_path):
    import matplotlib.image

    root = tmp_path / "curves"
    for sg in ("as", "trsg"):
        for reset in ("soft", "hard"):
            for vthr in (1.0, 2.0):
                for seed in (1, 2, 3):
                    curve = fake_curve(sg, reset, seed) if vthr == 1.0 else [(99.0, 0.0)] * 3
                    make_job(root, sg, vthr, seed, 0.8, reset=reset, curves=None if (sg, reset, seed) == ("trsg", "hard", 3) else curve)
    make_job(root, "as", 1.0, 4, None, status="failed", reset="soft")  # no CSV: ignored
    res = aggregate([root], out=tmp_path / "agg")
    data = res["curves"]
    assert data["panels"] == ["neuron.reset"] and data["line"] == "sg"
    assert list(data["curves"]) == [("hard",), ("soft",)]  # the panel order of the other plots
    assert list(data["curves"][("soft",)]) == ["as", "trsg"]
    # as, soft, epoch 1: loss 2/2 + 0.5 + 0.1*seed -> 1.6, 1.7, 1.8; val acc (last value of the epoch)
    # 0.5 + 0.1 + 0.01*seed - 0.05 -> 56, 57, 58 %
    loss = data["curves"][("soft",)]["as"]["train/loss_epoch"]
    assert [e for e, *_ in loss] == [0, 1, 2]
    e, m, sd, n = loss[1]
    assert (e, n) == (1, 3) and m == pytest.approx(1.7) and sd == pytest.approx(statistics.stdev([1.6, 1.7, 1.8]))
    e, m, sd, n = data["curves"][("soft",)]["as"]["val/acc"][1]
    assert m == pytest.approx(57.0) and sd == pytest.approx(1.0) and n == 3
    # trsg, hard: seed 3 wrote no CSV -> mean over seeds 1 and 2 only; epoch 0 loss 2 + 0.2 + 0.1*seed
    e, m, sd, n = data["curves"][("hard",)]["trsg"]["train/loss_epoch"][0]
    assert n == 2 and m == pytest.approx(2.35)
    p = tmp_path / "agg" / "training_curves.png"
    assert res["written"]["training_curves"] == p and p.read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.image.imread(p).shape[1] > matplotlib.image.imread(p).shape[0]  # one column per panel

    from snn_lightning.plots import save_figure
    from snn_lightning.sweeps.figures import plot_training_curves
    fig = plot_training_curves(data, "t")
    save_figure(fig, tmp_path / "again.png")
    axes = fig.axes
    assert len(axes) == 4  # 2 panels (reset) x 2 rows (loss, val acc)
    assert [ax.get_title() for ax in axes[:2]] == ["neuron.reset=hard", "neuron.reset=soft"]
    ys = axes[1].lines[0].get_ydata()  # soft panel, loss row, first line (as)
    assert list(ys) == pytest.approx([2.0 + 0.5 + 0.2, 1.7, 2.0 / 3 + 0.5 + 0.2])

    # another V_thr through the CLI; a sweep without V_thr: skipped
    main([str(root), "--out", str(tmp_path / "cli"), "--curves-at", "2.0"])
    res2 = aggregate([root], out=tmp_path / "agg2", curves_at=2.0, plots=False)
    assert res2["curves"]["curves"][("soft",)]["as"]["train/loss_epoch"][0][1] == pytest.approx(99.0)
    assert (tmp_path / "cli" / "training_curves.png").is_file()
    res3 = aggregate([root], out=tmp_path / "agg3", group_by=["sg", "neuron.reset"])
    assert res3["curves"] is None and "training_curves" not in res3["written"]


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
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "empty_missing is not a folder" in err
    r = subprocess.run([sys.executable, "-m", "snn_lightning.aggregate", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "snn-aggregate" in r.stdout and "--group-by" in r.stdout


# -- the outputs of the aggregator before it became a package ---------------------------------------
GOLDEN = Path(__file__).parent / "data" / "aggregate_golden"
# membrane columns with gaps: NaN ends (a layer where no neuron fired at t = 1 or T), a layer logged at
# one timestep only, a layer without active statistics, unparsable cells, and a job with no active value
NAN_LAYERS = [
    {"l0": ([0.1, 0.2, 0.4], [0.5, 0.3, 0.2]), "l1": ([0.0, "nan", -0.2], ["nan", 0.1, 0.3]), "l2": ([0.7], [0.9]),
     "l3": ([0.3, 0.1, 0.6], None)},
    {"l0": ([0.2, 0.1, 0.0], ["nan", "nan", "nan"]), "l1": (["x", 0.4, 0.1], ["nan", "nan", "nan"])},
    {"l0": (["nan", 0.2, "nan"], [0.4, "", 0.1]), "l1": ([0.25, 0.5, 1.0], [0.5, 0.5, 0.5])},
]


def write_membrane_csv(job: Path, layers: dict) -> None:
    """``test_neuron/<layer>/v_mean[_active]_t<t>`` in a final CSV row after a training row."""
    cols = {}
    for layer, (v_all, v_active) in layers.items():
        for stat, vals in (("v_mean", v_all), ("v_mean_active", v_active)):
            for t, v in enumerate(vals or [], start=1):
                cols[f"test_neuron/{layer}/{stat}_t{t}"] = v
    (job / "csv" / "version_0").mkdir(parents=True)
    with (job / "csv" / "version_0" / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "step", "val/acc", *cols])
        w.writeheader()
        w.writerow({"epoch": 0, "step": 10, "val/acc": 0.5, **{k: 9.0 for k in cols}})  # stale where the last row's cell is empty or text
        w.writerow({"epoch": 3, "step": 60, **cols})


def golden_sweeps(base: Path) -> dict[str, tuple[Path, dict]]:
    """The fabricated sweeps of this file, with the aggregate() arguments each is read with."""
    fig9 = base / "fig9"
    for (sg, v), accs in ACC.items():
        for seed, acc in enumerate(accs, start=1):
            make_job(fig9, sg, v, seed, acc, drift=(0.2 * seed, 0.4 * seed) if (sg, v) == ("as", 0.5) else None)
    make_job(fig9, "trsg", 2.0, 3, None, status="failed")
    make_job(fig9, "as", 2.0, 4, None, status="running")
    curves = base / "curves"
    for sg in ("as", "trsg"):
        for reset in ("soft", "hard"):
            for vthr in (1.0, 2.0):
                for seed in (1, 2, 3):
                    curve = fake_curve(sg, reset, seed) if vthr == 1.0 else [(99.0, 0.0)] * 3
                    make_job(curves, sg, vthr, seed, 0.8 + 0.01 * seed, reset=reset,
                             curves=None if (sg, reset, seed) == ("trsg", "hard", 3) else curve)
    paper = base / "paper"
    for seed, acc in [(1, 0.5), (2, 0.7)]:
        make_job(paper, "as", 1.0, seed, acc, paper={"accuracy": 76.09, "std": 0.04, "dataset": "CIFAR100", "table": "Table 1"})
    nan = base / "nan"
    for seed, layers in enumerate(NAN_LAYERS, start=1):
        for sg in ("as", "trsg"):
            write_membrane_csv(make_job(nan, sg, 1.0, seed, 0.6 + 0.1 * seed + (0.05 if sg == "trsg" else 0.0)), layers)
    return {"fig9": (fig9, {"paired": ["sg"]}), "curves": (curves, {}), "paper": (paper, {}),
            "nan": (nan, {"paired": ["sg"]})}


GOLDEN_FILES = ("jobs.csv", "summary.csv", "summary.md")


def golden_outputs(res: dict) -> dict[str, str]:
    """What aggregate() wrote (the tables) and the numbers behind the training-curves figure."""
    out = {name: Path(res["written"][key]).read_text() for name, key in
           zip(GOLDEN_FILES, ("jobs_csv", "summary_csv", "summary_md"))}
    curves = res["curves"]
    if curves is not None:
        curves = {**curves, "curves": [[list(combo), [[lv, cols] for lv, cols in lines.items()]]
                                       for combo, lines in curves["curves"].items()]}
    out["curves.json"] = json.dumps(curves, indent=1, sort_keys=True) + "\n"
    return out


def test_outputs_match_the_old_aggregate(tmp_path):
    """The package writes, byte for byte, what snn_lightning/aggregate.py wrote before it became one
    (tests/data/aggregate_golden, made with that module at commit 2fb2da3 from these same sweeps)."""
    for case, (root, kwargs) in golden_sweeps(tmp_path / "sweeps").items():
        res = aggregate([root], out=tmp_path / "out" / case, plots=False, **kwargs)
        for name, text in golden_outputs(res).items():
            assert text == (GOLDEN / case / name).read_text(), f"{case}/{name}"


@pytest.mark.parametrize("result", sorted(sweep_rebuild.COMMANDS))
def test_committed_results_regenerate(result, tmp_path):
    """docs/results/<result>: job folders rebuilt from its jobs.csv and aggregated with the README's
    command give its jobs.csv and summary.md byte for byte, and its summary.csv up to the run time
    (seconds_mean/std: jobs.csv keeps the seconds to 2 decimals)."""
    root, options = sweep_rebuild.rebuild(result, tmp_path / "sweep")
    main([str(root), "--out", str(tmp_path / "out"), "--no-plots", *options])
    committed = sweep_rebuild.RESULTS / result
    for name in ("jobs.csv", "summary.md"):
        assert (tmp_path / "out" / name).read_text() == (committed / name).read_text(), name
    new, old = read_csv(tmp_path / "out" / "summary.csv"), read_csv(committed / "summary.csv")
    assert (tmp_path / "out" / "summary.csv").read_text().splitlines()[0] == (committed / "summary.csv").read_text().splitlines()[0]
    assert len(new) == len(old) > 0
    for a, b in zip(new, old):
        for col in ("seconds_mean", "seconds_std"):
            x, y = a.pop(col), b.pop(col)
            assert (x == "") == (y == "") and (x == "" or abs(float(x) - float(y)) <= 0.01), (col, x, y)
        assert a == b


@pytest.mark.slow  # a fresh interpreter (torch, matplotlib): ~5 s
def test_figures_keep_to_the_object_api(sweep, tmp_path):
    """The sweep figures never load pyplot (no global figure registry, no backend switch)."""
    code = ("import sys; from snn_lightning.sweeps import aggregate; "
            f"res = aggregate([{str(sweep)!r}], out={str(tmp_path / 'agg')!r}); "
            "assert {'accuracy_vs', 'per_timestep'} <= set(res['written']), res['written']; "
            "assert 'matplotlib.pyplot' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_neuron_drift_nan_rules(tmp_path):
    """The drift is monitor.drift over the layers whose first and last logged value are numbers; a
    statistic logged at one timestep only has none; v_mean_t<t> averages the layers that are not NaN at t."""
    from snn_lightning.sweeps.read import read_neuron_drift

    jobs = []
    for i, layers in enumerate(NAN_LAYERS):
        jobs.append(tmp_path / f"j{i}")
        jobs[-1].mkdir()
        write_membrane_csv(jobs[-1], layers)
    d = read_neuron_drift(jobs[0])
    assert d["drift"] == pytest.approx((0.3 + 0.2 + 0.3) / 3)  # l0, l1 (NaN inside only), l3; not l2
    assert d["drift_active"] == pytest.approx(0.3)  # l0 only: l1 starts with NaN, l3 has none
    assert d["v_mean_t2"] == pytest.approx((0.2 + 0.1) / 2)  # l1 is NaN at t = 2
    d = read_neuron_drift(jobs[1])
    assert "drift_active" not in d  # no layer fired
    assert d["drift"] == pytest.approx((0.2 + (9.0 - 0.1)) / 2)  # l1's t = 1 cell is text: the earlier row's 9.0
    d = read_neuron_drift(jobs[2])
    assert d["drift"] == pytest.approx(0.75) and d["drift_active"] == pytest.approx((0.3 + 0.0) / 2)
    (tmp_path / "empty").mkdir()
    assert read_neuron_drift(tmp_path / "empty") == {}  # no CSV log


def test_a_running_job_whose_process_is_gone_reads_as_died(tmp_path):
    from snn_lightning.sweeps.read import read_sweep

    alive = make_job(tmp_path, "as", 0.5, 1, None, status="other")
    dead = make_job(tmp_path, "as", 0.5, 2, None, status="other")
    (alive / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    (dead / "status.json").write_text(json.dumps({"status": "running", "pid": 2**22 + 12345}))  # above pid_max
    states = {j.path.name: j.status for j in read_sweep([tmp_path])}
    assert states[alive.name] == "running" and states[dead.name] == "died"
