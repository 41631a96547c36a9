"""The persistent inductor cache and backend="auto"'s switch to compiled kernels on the CPU (warmup.py)."""
from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch

from snn_lightning.neurons import LIF
from snn_lightning.neurons.kernels import COMPILE_CACHE, dispatch, inductor_cache, warmup


@pytest.fixture
def fresh(monkeypatch):
    """No folder chosen yet, no background jobs, an empty compile cache; all put back afterwards."""
    saved = dict(inductor_cache._chosen)
    monkeypatch.delenv(inductor_cache.INDUCTOR_ENV, raising=False)
    monkeypatch.delenv(inductor_cache.ENV, raising=False)
    monkeypatch.delenv(warmup.ENV, raising=False)
    monkeypatch.setattr(warmup, "MIN_NEURONS", 1)  # the small test layers count as large
    inductor_cache._forget()
    warmup.WARMUP.stop()
    COMPILE_CACHE.clear()
    yield monkeypatch
    warmup.WARMUP.stop()
    COMPILE_CACHE.clear()
    inductor_cache._chosen.clear()
    inductor_cache._chosen.update(saved)


def test_cache_folder_per_torch_version_and_thread_count(fresh, tmp_path):
    fresh.setenv(inductor_cache.ENV, str(tmp_path / "root"))
    want = tmp_path / "root" / f"torch-{torch.__version__.replace('+', '_')}" / "threads-3"
    assert inductor_cache.folder_for(3) == str(want)
    assert inductor_cache.ensure(3) == 3
    assert os.environ[inductor_cache.INDUCTOR_ENV] == str(want) and want.is_dir()
    assert inductor_cache.chosen_folder() == str(want)
    # chosen once per process: a later thread count keeps the folder (and reports whose kernels it holds)
    assert inductor_cache.ensure(1) == 3
    assert os.environ[inductor_cache.INDUCTOR_ENV] == str(want)


def test_default_cache_root_is_under_the_home_folder(fresh, tmp_path):
    fresh.setenv("HOME", str(tmp_path))
    assert inductor_cache.folder_for(1).startswith(str(tmp_path / ".cache" / "snn_lightning" / "inductor"))


@pytest.mark.parametrize("how", ["user_dir", "off"])
def test_a_user_cache_dir_or_off_is_left_alone(fresh, tmp_path, how):
    if how == "user_dir":
        fresh.setenv(inductor_cache.INDUCTOR_ENV, str(tmp_path / "mine"))
    else:
        fresh.setenv(inductor_cache.ENV, "off")
    assert inductor_cache.ensure(1) is None
    assert os.environ.get(inductor_cache.INDUCTOR_ENV) == (str(tmp_path / "mine") if how == "user_dir" else None)


def test_auto_on_the_cpu_compiles_when_ready_unless_opted_out(fresh):
    x = torch.zeros(4, 2, 3)
    assert dispatch.compiles_when_ready(LIF(), x)
    fresh.setattr(warmup, "MIN_NEURONS", 7)
    assert not dispatch.compiles_when_ready(LIF(), x), "a layer of 6 neurons is below MIN_NEURONS=7"
    assert dispatch.compiles_when_ready(LIF(), torch.zeros(4, 7))
    fresh.setattr(warmup, "MIN_NEURONS", 1)
    assert not dispatch.compiles_when_ready(LIF(backend="fused"), x)
    assert not dispatch.compiles_when_ready(LIF(backend="compiled"), x)  # compiles at once instead
    fresh.setenv(warmup.ENV, "0")
    assert not dispatch.compiles_when_ready(LIF(), x)
    fresh.setenv(warmup.ENV, "maybe")
    with pytest.raises(ValueError, match="SNN_LIGHTNING_AUTO_COMPILE='maybe'.*allowed"):
        dispatch.compiles_when_ready(LIF(), x)


def _steps(lif, n, x, w):
    """n training steps; everything that must agree with the reference, per step."""
    res = []
    for _ in range(n):
        lif.reset()
        xx = x.clone().requires_grad_(True)
        out = lif(xx)
        grads = torch.autograd.grad((out * w).sum(), [xx, lif.raw_tau, lif.raw_threshold])
        res.append([out.detach(), lif.v.detach(), *grads])
    return res


def _check_against_reference(lif, x, w, n):
    """Each step of ``lif`` (default backend) equals a reference neuron's same step (MP-Init state included)."""
    ref = LIF(backend="torch").double()
    ref.load_state_dict(lif.state_dict())
    got, want = _steps(lif, n, x, w), _steps(ref, n, x, w)
    for g, r in zip(got, want):
        for a, b in zip(g, r):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(lif.mp_init_mean, ref.mp_init_mean, atol=1e-12, rtol=0)


def test_background_compile_waits_for_enough_calls_and_a_failure_keeps_eager(fresh, tmp_path, caplog):
    """Before START_AFTER_CALLS calls nothing starts; a failing background compile is reported once and the
    neuron keeps the reference's values on the eager kernels."""
    fresh.setenv(inductor_cache.ENV, str(tmp_path))
    fresh.setattr(warmup, "START_AFTER_CALLS", 3)
    fresh.setattr(warmup.sys, "executable", shutil.which("false"))  # every background compile fails at once
    x = torch.randn(4, 2, 5, dtype=torch.float64) + 0.5
    w = torch.randn_like(x)
    lif = LIF().double()
    _check_against_reference(lif, x, w, 2)
    assert warmup.WARMUP.states() == {}
    with caplog.at_level(logging.WARNING, logger="snn_lightning.neurons.kernels.warmup"):
        _check_against_reference(lif, x, w, 1)
        assert set(warmup.WARMUP.states().values()) <= {"running", "queued", "failed"}
        warmup.WARMUP.wait(timeout=60)
        _check_against_reference(lif, x, w, 2)
    assert set(warmup.WARMUP.states().values()) == {"failed"}
    assert sum("background compile of a LIF kernel failed" in r.message for r in caplog.records) == 1
    assert not COMPILE_CACHE._fns  # nothing was compiled in this process


@pytest.mark.slow
def test_cold_start_switches_to_compiled_kernels_with_the_same_values(fresh, tmp_path, capfd):
    """From an empty cache: eager steps while the background process compiles, then compiled steps — every
    step equal to the reference; the one-time cost printed once; the kernels left in the persistent folder."""
    fresh.setenv(inductor_cache.ENV, str(tmp_path))
    fresh.setattr(warmup, "START_AFTER_CALLS", 1)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 7, dtype=torch.float64) + 0.5
    w = torch.randn_like(x)
    lif = LIF().double()
    _check_against_reference(lif, x, w, 1)  # eager: submits the forward and backward compiles
    assert not COMPILE_CACHE._fns
    states = warmup.WARMUP.wait(timeout=300)
    assert set(states.values()) == {"ready"} and len(states) == 2
    _check_against_reference(lif, x, w, 3)  # switches at the first of these
    assert len(COMPILE_CACHE._fns) == 2 and COMPILE_CACHE.failures() == []
    assert capfd.readouterr().err.count("one-time cost") == 1
    folder = tmp_path / f"torch-{torch.__version__.replace('+', '_')}" / f"threads-{torch.get_num_threads()}"
    assert any((folder / "fxgraph").rglob("*")), "the FX-graph cache entries belong in the persistent folder"
    assert len(list((folder / "snn_lightning_ready").iterdir())) == 2
    # a warm start (what a later process sees): the marked kernels load once START_AFTER_CALLS (here 1) calls
    # have run, with no background job
    warmup.WARMUP.stop()
    COMPILE_CACHE.clear()
    _check_against_reference(lif, x, w, 1)
    assert warmup.WARMUP.states() == {} and len(COMPILE_CACHE._fns) == 2
    assert "compiled by an earlier run" in capfd.readouterr().err
