"""The CPU thread policy: usable cores from affinity and cgroup quota, 1 for small models, overridable."""
import os
import subprocess
import sys

import pytest

from conftest import assert_one_line
from snn_lightning import threads
from snn_lightning.errors import InvalidValue


def _v2(tmp_path, rel, quotas):
    """A fake unified cgroup tree: ``quotas`` maps a relative cgroup path to its cpu.max content."""
    root = tmp_path / "cg"
    (root).mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for path, content in quotas.items():
        d = root / path
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(content)
    (root / rel).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::/{rel}\n")
    return root, proc


def test_v2_quota_takes_the_tightest_ancestor(tmp_path):
    root, proc = _v2(tmp_path, "a/b/c", {"a": "150000 100000\n", "a/b": "max 100000\n", "a/b/c": "300000 100000\n"})
    assert threads.cgroup_quota_cpus(root, proc) == pytest.approx(1.5)


def test_v2_without_quota_is_none(tmp_path):
    root, proc = _v2(tmp_path, "x", {"x": "max 100000\n"})
    assert threads.cgroup_quota_cpus(root, proc) is None


def test_v1_quota(tmp_path):
    root = tmp_path / "cg"
    (root / "cpu").mkdir(parents=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("1:cpu:/\n0::/\n")
    assert threads.cgroup_quota_cpus(root, proc) == pytest.approx(2.5)
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_quota_cpus(root, proc) is None


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_quota_cpus", lambda: 2.5)
    assert threads.usable_cpus()[0] == 2
    monkeypatch.setattr(threads, "cgroup_quota_cpus", lambda: 0.5)
    assert threads.usable_cpus()[0] == 1  # a fractional quota still runs one thread
    monkeypatch.setattr(threads, "cgroup_quota_cpus", lambda: None)
    assert threads.usable_cpus()[0] == 8


def test_choose(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: (4, "affinity 4, cgroup quota none"))
    assert threads.choose_threads(None, "small_cnn")[0] == 1
    assert threads.choose_threads(None, 20_000)[0] == 1
    assert threads.choose_threads(None, "resnet19")[0] == 4
    assert threads.choose_threads(None, 12_000_000)[0] == 4
    assert threads.choose_threads(3, "small_cnn")[0] == 3  # the override wins
    with pytest.raises(InvalidValue) as err:
        threads.choose_threads(0)
    assert "threads" in assert_one_line(err.value)


def test_applied_before_torch_sets_passive_wait_and_prints(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    code = ("import sys; from snn_lightning.threads import apply_thread_policy; "
            "assert 'torch' not in sys.modules; n = apply_thread_policy(None, 'small_cnn'); "
            "import os, torch; print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads(), n)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("threads: 1 intra-op (small model 'small_cnn'") and "PASSIVE" in lines[0]
    assert "loaded before" not in lines[0]
    assert lines[-1] == "PASSIVE 1 1"


def test_applied_after_torch_says_so(capsys):
    import torch  # noqa: F401  (loaded by the test session anyway)

    old, before = torch.get_num_threads(), threads._policy_before_torch
    try:
        threads._policy_before_torch = False
        assert threads.apply_thread_policy(1) == 1 and torch.get_num_threads() == 1
        assert "torch was loaded before the policy" in capsys.readouterr().out
    finally:
        torch.set_num_threads(old)
        threads._policy_before_torch = before
