"""Fault injection: plant each failure a long run meets and check exit code, the one line, and that
nothing written before is lost.

Every case runs the real command line in a subprocess (``python -m snn_lightning.train``/``eval``):
bad config values, bad checkpoints, a diverging run, signals (SIGTERM, SIGINT, SIGKILL), two runs
into one folder, a failed job in a sweep, two sweeps into one folder, wandb without network.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snn_lightning import runs
from snn_lightning.experiment import PRECISIONS

TESTS = Path(__file__).resolve().parent
SMOKE = ["debug=smoke", "logger=csv"]


def cli(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                    PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    full_env.pop("SNN_DATA_ROOT", None)
    for k, v in (env or {}).items():  # None removes a variable
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def train_cli(run_dir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return cli("snn_lightning.train", *args, f"hydra.run.dir={run_dir}", cwd=run_dir.parent, **kw)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed command (asserted: exactly one, no traceback)."""
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return errors[0]


def snapshot(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != runs.LOCK_FILE}


def status_of(run_dir: Path) -> dict:
    return json.loads((run_dir / runs.STATUS_FILE).read_text())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished smoke run (T=2) whose folder the other cases must leave untouched."""
    run = tmp_path_factory.mktemp("finished") / "run"
    r = train_cli(run, *SMOKE, "T=2")
    assert r.returncode == 0, r.stderr[-3000:]
    return run


# --- bad input: one line, exit 2, before torch where possible -----------------------------------------
@pytest.mark.parametrize("args,expected", [
    (["+foo=1"], "unknown key 'foo' in +foo=1: nothing reads it"),
    (["neuron.v_thresold=1"], "did you mean 'v_threshold'"),
    (["trainer.max_epochs=-5"], "trainer.max_epochs must be an integer >= 0, got -5"),
    (["trainer.precision=bogus"], "unknown trainer.precision 'bogus'; allowed:"),
    (["trainer.devices=0"], "trainer.devices must be a positive integer, -1 (all), 'auto' or a list"),
    (["data.val_fraction=1.5"], "data.val_fraction must be in [0, 1.0), got 1.5"),
    (["trainer=gpu"], "no CUDA device; use trainer=cpu"),
    (["+trainer.no_such_arg=1"], "trainer: cannot build lightning.pytorch.Trainer: TypeError"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path /no/such.ckpt does not exist"),
])
def test_bad_config_is_one_line(args, expected, tmp_path):
    if args == ["trainer=gpu"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = train_cli(tmp_path / "run", "debug=fast", *args)
    assert r.returncode == 2
    assert expected in one_error_line(r)
    assert not (tmp_path / "run" / runs.CKPT_DIR).exists()


def test_precisions_match_lightning():
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    assert set(PRECISIONS) == set(get_args(_PRECISION_INPUT_STR)) | set(get_args(_PRECISION_INPUT_STR_ALIAS))


@pytest.fixture(scope="module")
def bad_checkpoints(finished_run, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpts")
    good = finished_run / runs.CKPT_DIR / runs.LAST_CKPT
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = folder / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    return {"good": good, "truncated": truncated, "text": text}


@pytest.mark.slow
@pytest.mark.parametrize("which,expected", [
    ("truncated", "cannot be read"), ("text", "cannot be read"),
    ("good", "is of another model (small_cnn, T=2, norm=tdbn"),  # resumed into a run with norm=none
])
def test_bad_checkpoint_is_one_line(which, expected, bad_checkpoints, finished_run, tmp_path):
    before = snapshot(finished_run)
    extra = ["norm=none"] if which == "good" else []
    r = train_cli(tmp_path / "run", *SMOKE, "T=2", f"ckpt_path={bad_checkpoints[which]}", *extra)
    assert r.returncode == 2
    line = one_error_line(r)
    assert expected in line and str(bad_checkpoints[which]) in line
    if which == "good":
        assert "missing keys" in line or "unexpected keys" in line
    assert snapshot(finished_run) == before


def test_eval_errors_are_one_line(bad_checkpoints, tmp_path):
    r = cli("snn_lightning.eval", f"hydra.run.dir={tmp_path}/e1", cwd=tmp_path)
    assert r.returncode == 2 and "snn-eval needs a checkpoint: snn-eval ckpt_path=" in one_error_line(r)
    r = cli("snn_lightning.eval", f"ckpt_path={bad_checkpoints['text']}", f"hydra.run.dir={tmp_path}/e2", cwd=tmp_path)
    assert r.returncode == 2 and "cannot be read" in one_error_line(r)


@pytest.mark.slow
def test_eval_names_the_checkpoint_it_uses(bad_checkpoints, tmp_path):
    r = cli("snn_lightning.eval", f"ckpt_path={bad_checkpoints['good']}", f"hydra.run.dir={tmp_path}/e", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"checkpoint: {bad_checkpoints['good']} (epoch 0, step 3, val/acc " in r.stdout


# --- run folders are never clobbered --------------------------------------------------------------------
def test_run_into_finished_folder_is_refused_before_writing(finished_run):
    before = snapshot(finished_run)
    for args in (["T=0"], ["seed=7"]):
        r = train_cli(finished_run, *SMOKE, *args)
        assert r.returncode == 2
        assert "holds a finished run; resume it with ckpt_path=auto" in one_error_line(r)
    assert snapshot(finished_run) == before  # status.json and .hydra/*.yaml included


def test_lock_keeps_a_second_run_out(tmp_path):
    run = tmp_path / "run"
    lock = runs.RunLock(run)
    assert lock.acquire()
    runs.write_status(run, runs.RUNNING, pid=os.getpid())
    try:
        assert runs.lock_is_held(run) and runs.effective_status(run) == runs.RUNNING
        r = train_cli(run, "debug=fast")
        assert r.returncode == 2 and "is in use by a live run" in one_error_line(r)
        assert status_of(run)["pid"] == os.getpid()
    finally:
        lock.release()
    assert runs.effective_status(run) == runs.DIED  # "running" with nobody holding the lock


def test_status_words_and_refusals(tmp_path):
    run = tmp_path / "run"
    assert runs.effective_status(run) is None and runs.refusal(run, resuming=False, overwrite=False) is None
    runs.write_status(run, runs.RUNNING, pid=2**22 + 12345)  # no such pid, and no lock file: died
    assert runs.effective_status(run) == runs.DIED and runs.refusal(run, resuming=False, overwrite=False) is None
    for state in (runs.INTERRUPTED, runs.FAILED):
        runs.write_status(run, state)
        assert runs.effective_status(run) == state and runs.refusal(run, resuming=False, overwrite=False) is None
    runs.write_status(run, runs.FINISHED)
    assert "holds a finished run" in runs.refusal(run, resuming=False, overwrite=False)
    assert runs.refusal(run, resuming=True, overwrite=False) is None
    assert runs.refusal(run, resuming=False, overwrite=True) is None
    # a stopped run with a last.ckpt keeps it: a fresh start would overwrite what it resumes from
    (run / runs.CKPT_DIR).mkdir()
    (run / runs.CKPT_DIR / runs.LAST_CKPT).write_bytes(b"ckpt")
    for fields, word in (({"status": runs.INTERRUPTED}, "an interrupted"), ({"status": runs.RUNNING, "pid": 2**22 + 12345}, "a died")):
        runs.write_json(run / runs.STATUS_FILE, fields)
        assert f"holds {word} run" in runs.refusal(run, resuming=False, overwrite=False)
        assert runs.refusal(run, resuming=True, overwrite=False) is None
        assert runs.refusal(run, resuming=False, overwrite=True) is None
    runs.write_status(run, runs.FAILED)
    assert runs.refusal(run, resuming=False, overwrite=False) is None  # a sweep retries failed jobs


def test_default_run_folders_are_unique_within_a_second():
    import yaml
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf

    from snn_lightning.config import CONF_DIR

    setup_globals()  # registers Hydra's ${now:...} resolver
    pattern = yaml.safe_load((CONF_DIR / "hydra" / "default.yaml").read_text())["run"]["dir"].split("/")[-1]
    names = {OmegaConf.create({"d": pattern}).d for _ in range(50)}
    assert len(names) == 50  # fifty launches within well under a second, fifty folders


@pytest.mark.slow
# --- non-finite training ---------------------------------------------------------------------------------
@pytest.mark.parametrize("callbacks", ["default", "none"])
def test_nan_stops_the_run_with_one_line(callbacks, tmp_path):
    run = tmp_path / "run"
    r = train_cli(run, "logger=csv", f"callbacks={callbacks}", "optimizer.lr=1e3", "trainer.max_epochs=2",
                  "callbacks.model_checkpoint.every_n_train_steps=2" if callbacks == "default" else "seed=1234")
    assert r.returncode == 2
    line = one_error_line(r)
    assert line.startswith("error: non-finite training at step ") and ", epoch 0:" in line and "net." in line
    assert status_of(run)["status"] == runs.FAILED
    assert "run failed: non-finite training" in (run / runs.TRAIN_LOG).read_text()  # train.log has the run's log
    if callbacks == "default":  # the last good step checkpoint stays, with finite weights
        ckpt = torch.load(run / runs.CKPT_DIR / runs.LAST_CKPT, weights_only=False)
        assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
# --- signals -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_saves_a_checkpoint_and_marks_interrupted(signum, code, tmp_path):
    run = tmp_path / "run"
    r = train_cli(run, "logger=csv", "callbacks=none", "trainer.max_epochs=3",
                  f"+callbacks.plant={{_target_:faultplant.SignalAt,at_step:7,signum:{signum}}}")
    assert r.returncode == code, r.stderr[-3000:]
    line = one_error_line(r)
    # the signal came during step 7's batch-end hooks: the run stops at the next batch end
    assert f"interrupted by {signum} at epoch 0, step 8; checkpoint saved to" in line and "ckpt_path=auto" in line
    status = status_of(run)
    assert status["status"] == runs.INTERRUPTED and status["step"] == 8 and status["epoch"] == 0
    assert torch.load(run / runs.CKPT_DIR / runs.LAST_CKPT, weights_only=False)["global_step"] == 8


@pytest.mark.slow
def test_sigkill_then_auto_resume_is_bit_identical(tmp_path):
    """SIGKILL at step 8 (after the step-6 checkpoint): status reads "died"; ckpt_path=auto resumes in
    place, and the final state equals an uninterrupted run's, bit for bit."""
    tiny = ["logger=csv", "callbacks=none", "test=false", "batch_size=32", "data.augment=true", "trainer.max_epochs=3",
            "+trainer.limit_train_batches=5", "+trainer.limit_val_batches=2",
            "+callbacks.model_checkpoint={_target_:snn_lightning.callbacks.RunCheckpoint,monitor:val/acc,mode:max,"
            "every_n_train_steps:3,dirpath:${paths.output_dir}/checkpoints}"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train_cli(straight, *tiny).returncode == 0
    r = train_cli(killed, *tiny, "+callbacks.plant={_target_:faultplant.SignalAt,at_step:8,signum:SIGKILL}")
    assert r.returncode == -signal.SIGKILL
    assert status_of(killed)["status"] == runs.RUNNING and runs.effective_status(killed) == runs.DIED
    assert torch.load(killed / runs.CKPT_DIR / runs.LAST_CKPT, weights_only=False)["global_step"] == 6
    r = train_cli(killed, *tiny)  # a fresh start would overwrite the checkpoint the died run resumes from
    assert r.returncode == 2 and "holds a died run" in one_error_line(r) and "ckpt_path=auto" in one_error_line(r)
    assert torch.load(killed / runs.CKPT_DIR / runs.LAST_CKPT, weights_only=False)["global_step"] == 6
    r = train_cli(killed, *tiny, "ckpt_path=auto")
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(straight / runs.CKPT_DIR / runs.LAST_CKPT, weights_only=False)
    b = torch.load(killed / runs.CKPT_DIR / runs.LAST_CKPT, weights_only=False)
    assert a["global_step"] == b["global_step"] == 15
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    from test_resume import max_abs_diff

    assert max_abs_diff(a["optimizer_states"], b["optimizer_states"]) == 0.0


# --- sweeps ----------------------------------------------------------------------------------------------
def test_sweep_with_a_failed_job_exits_nonzero(tmp_path):
    r = cli("snn_lightning.train", "-m", "debug=fast", "data.val_fraction=0.1,1.5", f"hydra.sweep.dir={tmp_path}/sw",
            cwd=tmp_path)
    assert r.returncode == 1
    assert "error: 1 job(s) of the sweep did not finish: data.val_fraction=1.5,debug=fast" in r.stderr
    states = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "sw").glob("*/status.json")}
    assert states == {"data.val_fraction=0.1,debug=fast": "finished", "data.val_fraction=1.5,debug=fast": "failed"}


@pytest.mark.slow
def test_two_identical_sweeps_into_one_folder_lose_nothing(tmp_path):
    args = ["snn_lightning.train", "-m", "debug=fast", "seed=1,2,3", f"hydra.sweep.dir={tmp_path}/sw"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    states = {p.parent.name: json.loads(p.read_text())["status"] for p in (tmp_path / "sw").glob("*/status.json")}
    assert states == {f"debug=fast,seed={s}": "finished" for s in (1, 2, 3)}


@pytest.mark.slow
# --- wandb without network ------------------------------------------------------------------------------
def test_online_wandb_without_network_falls_back_to_offline(tmp_path):
    env = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_MODE": None, "WANDB_DIR": None}
    r = train_cli(tmp_path / "run", "debug=smoke", "logger=wandb", "logger.wandb.offline=false", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: logger.wandb:")]
    assert len(warnings) == 1 and "not reachable" in warnings[0] and "offline" in warnings[0]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


# --- resume=auto and a requeued SLURM job ------------------------------------------------------------------
def test_auto_resume_and_slurm_requeue_pick_the_folders_last_ckpt(tmp_path, monkeypatch):
    from helpers import compose_cfg
    from snn_lightning.cli.train import resolve_ckpt_path

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    cfg = compose_cfg(tmp_path, [])
    assert resolve_ckpt_path(cfg) is None  # nothing asked, nothing resumed
    cfg.ckpt_path = "auto"
    assert resolve_ckpt_path(cfg) is None  # auto in a fresh folder: a fresh start
    last = runs.checkpoint_dir(tmp_path) / runs.LAST_CKPT
    last.parent.mkdir(parents=True)
    last.write_bytes(b"placeholder")
    assert resolve_ckpt_path(cfg) == str(last)
    cfg.ckpt_path = None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert resolve_ckpt_path(cfg) is None  # first SLURM attempt: as asked
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert resolve_ckpt_path(cfg) == str(last)  # requeued: resumes in its own folder
