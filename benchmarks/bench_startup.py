"""Cold vs warm start of a default ``snn-train`` run with the CPU auto-compile of the LIF kernels.

Three runs of the same default training (``snn-train`` with ARGS), back to back, one thread each:
``off`` (``SNN_LIGHTNING_AUTO_COMPILE=0``: the eager kernels throughout), ``cold`` (an empty
persistent inductor cache) and ``warm`` (the cache the cold run left). For each: the wall time of the
whole run, and when the compiled kernels took over (the one line ``warmup.py`` prints, timestamped as
it arrives). The first steps run the eager kernels in every mode, so the time to the first step does
not depend on the cache; what the cache changes is how soon the compiled kernels take over.

    python benchmarks/bench_startup.py [--keep-cache DIR] [-- snn-train overrides...]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / ".bench_venv" / "results"


def one_run(mode: str, cache: str, out_dir: str, overrides: list) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", SNN_LIGHTNING_INDUCTOR_CACHE=cache)
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    env["SNN_LIGHTNING_AUTO_COMPILE"] = "0" if mode == "off" else "1"
    exe = Path(sys.executable).with_name("snn-train")
    cmd = [str(exe), f"hydra.run.dir={out_dir}/{mode}", "logger=none", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    switch = {}
    lines = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "one-time cost" in line and "at_s" not in switch:
                switch["at_s"] = time.perf_counter() - t0
                m = re.search(r"([\d.]+) s of background compiling", line)
                switch["background_s"] = float(m.group(1)) if m else 0.0
                m = re.search(r"([\d.]+) s to load", line)
                if m:
                    switch["load_s"] = float(m.group(1))

    reader = threading.Thread(target=read)
    reader.start()
    rc = proc.wait()
    reader.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.stderr.write("".join(lines[-30:]))
        raise SystemExit(f"snn-train ({mode}) exited {rc}")
    acc = [ln.strip() for ln in lines if "test" in ln.lower() and "acc" in ln.lower()]
    return {"mode": mode, "wall_s": wall, "switch": switch, "last_acc_line": acc[-1] if acc else None}


def wait_for_markers(cache: str, quiet_s: float = 20.0, limit_s: float = 600.0) -> None:
    """Until no new ready-marker has appeared for ``quiet_s`` (the detached compiles are done)."""
    t0 = last = time.perf_counter()
    seen = -1
    while time.perf_counter() - t0 < limit_s:
        n = len(list(Path(cache).rglob("snn_lightning_ready/*")))
        if n != seen:
            seen, last = n, time.perf_counter()
        elif time.perf_counter() - last > quiet_s:
            return
        time.sleep(1.0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-cache", default="", help="use (and keep) this cache root instead of a temporary one")
    ap.add_argument("overrides", nargs="*", help="snn-train overrides (after --)")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="snn_startup_")
    cache = a.keep_cache or os.path.join(tmp, "cache")
    if os.path.exists(cache):
        shutil.rmtree(cache)
    rows = []
    for mode in ("off", "cold", "warm"):
        rows.append(one_run(mode, cache, tmp, a.overrides))
        if mode == "cold":  # the cold run's compiles that outlive it (warmup.py) finish before the warm run
            wait_for_markers(cache)
    shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps({"overrides": a.overrides, "rows": rows}))
    print("| run | wall s | compiled kernels from (s after start) | background compile s | load in-process s |")
    print("|---|---|---|---|---|")
    for r in rows:
        s = r["switch"]
        cells = [f"{s[k]:.1f}" if k in s else "— (no switch)" for k in ("at_s", "background_s", "load_s")]
        print(f"| {r['mode']} | {r['wall_s']:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
