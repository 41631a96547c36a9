"""multirun_sweeps end to end through the real CLI: a 2x2 smoke sweep with a failing job, a re-run that
skips the finished jobs, then snn-aggregate on the result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snn_lightning.config import CONF_DIR
from snn_lightning.sweeps import aggregate

RUN_SH = CONF_DIR.parent / "multirun_sweeps" / "run.sh"


def run_sweep(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0", SNN_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    env.pop("SNN_DATA_ROOT", None)
    return subprocess.run(["bash", str(RUN_SH), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def statuses(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/status.json")}


def test_run_sh_rejects_unknown_names(tmp_path):
    r = run_sweep(tmp_path, "nope")
    assert r.returncode == 2 and "unknown sweep 'nope'" in r.stderr and "fig9" in r.stderr
    r = run_sweep(tmp_path, "fig9", "--scale=huge")
    assert r.returncode == 2 and "unknown scale 'huge'" in r.stderr
    r = run_sweep(tmp_path, "--help")
    assert r.returncode == 0 and "--smoke" in r.stdout


@pytest.mark.slow
def test_smoke_sweep_survives_a_failure_and_skips_finished_jobs(tmp_path):
    sweep_dir = tmp_path / "sweeps" / "table2"
    # the table2 grid (MP-Init on/off x TrSG on/off = 2x2) at smoke scale, one seed, a few batches;
    # neuron.tau=0.5 is invalid (tau must be > 1): those jobs fail, the sweep goes on
    args = ["table2", "--smoke", "debug=smoke", "trainer.max_epochs=1", "seed=1", "neuron.tau=2.0,0.5",
            f"hydra.sweep.dir={sweep_dir}"]
    r = run_sweep(tmp_path, *args)
    assert r.returncode == 1, r.stderr[-3000:]  # a sweep with failed jobs exits non-zero
    st = statuses(sweep_dir)
    assert len(st) == 8, sorted(st)
    finished = {k for k, v in st.items() if v["status"] == "finished"}
    failed = {k for k, v in st.items() if v["status"] == "failed"}
    assert len(finished) == 4 and all("neuron.tau=2.0" in k for k in finished)
    assert len(failed) == 4 and all("tau" in st[k]["error"] for k in failed)
    # job folders are named by the overrides, +sweep/+scale excepted (stable across re-runs)
    assert "debug=smoke,mp_init=off,neuron.tau=2.0,seed=1,sg=as,trainer.max_epochs=1" in finished
    assert not any("sweep" in k or "scale" in k for k in st)
    stamps = {k: (sweep_dir / k / "metrics.json").stat().st_mtime_ns for k in finished}

    # a re-run skips the finished jobs and retries the failed ones
    r = run_sweep(tmp_path, *args)
    assert r.returncode == 1, r.stderr[-3000:]  # the retried jobs fail again
    assert r.stdout.count("skipping finished job") == 4
    assert {k: (sweep_dir / k / "metrics.json").stat().st_mtime_ns for k in finished} == stamps
    st2 = statuses(sweep_dir)
    assert {k for k, v in st2.items() if v["status"] == "failed"} == failed

    # the aggregator reads the real job folders
    res = aggregate([sweep_dir], out=tmp_path / "agg")
    assert res["keys"] == ["mp_init", "sg", "neuron.tau"]
    ok = [g for g in res["groups"] if g.jobs]
    assert len(ok) == 4 and all(len(g.jobs) == 1 and 0 <= g.stats["acc"][0] <= 100 for g in ok)
    assert all("drift" in g.stats for g in ok)  # the smoke scale logs the test-set membrane statistics
    md = res["markdown"]
    assert "table2 (smoke scale)" in md and "## Failed or unfinished jobs" in md
    assert md.count("tau must be") == 4
    # the paper's Table 2 numbers sit beside the matching groups
    assert "77.66 ± 0.15 (CIFAR100)" in md and "75.55 ± 0.06 (CIFAR100)" in md
