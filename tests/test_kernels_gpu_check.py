"""``make gpu-check`` without CUDA: one line, exit 2, nothing written; its sections rehearsed on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT), **extra)
    env.pop("GPU_CHECK_SMOKE", None)
    env.update(extra)
    return env


@pytest.mark.parametrize("how", ["python", "make-script"])
def test_without_cuda_exits_2_with_one_line(tmp_path, how):
    out, work = tmp_path / "out", tmp_path / "work"
    args = ["--out-dir", str(out), "--work-dir", str(work)]
    if how == "python":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args]
    else:  # what `make gpu-check` runs (the Makefile passes ARGS through)
        cmd = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(PY=sys.executable), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gpu-check needs a CUDA GPU: "), proc.stderr
    assert "no CUDA device" in lines[0]
    assert proc.stdout == ""
    assert not out.exists() and not work.exists()


def test_gpu_check_needs_nothing_beyond_the_gpu_machines_packages():
    """The GPU machine has torch, triton, lightning, torchmetrics and numpy: the scripts import nothing else
    from outside the standard library and this repository (spikingjelly only in its own contenders)."""
    import ast

    allowed = {"torch", "triton", "lightning", "torchmetrics", "numpy", "snn_lightning", "bench"}
    for name in ("gpu_check.py", "gpu_sections.py"):
        tree = ast.parse((ROOT / "benchmarks" / name).read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            for mod in mods:
                top = mod.split(".")[0]
                assert top in allowed or top in sys.stdlib_module_names, f"{name} imports {mod}"


@pytest.mark.slow
def test_kernel_section_rehearses_on_the_cpu(tmp_path):
    """``GPU_CHECK_SMOKE=1``: the kernel-grid section with tiny shapes, Triton through its interpreter."""
    path = tmp_path / "kernels.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_sections.py"), "kernels", "--out", str(path)],
                          capture_output=True, text=True, env=_env(GPU_CHECK_SMOKE="1"), timeout=600)
    res = json.loads(path.read_text())
    assert proc.returncode == 0 and res["ok"], (res.get("failed"), proc.stderr[-2000:])
    backends = {r["backend"] for r in res["rows"]}
    assert {"fused", "triton", "compiled"} <= backends
    assert res["checks"] >= 10 and res["failed"] == []
