"""The default ``snn-train`` run on a quiet machine and beside four CPU-bound processes, back to back.

Run by ``benchmarks/run.sh`` (``make bench``). Two ways to run the same job:

* ``policy``: :func:`snn_lightning.threads.apply_thread_policy` before torch loads (usable cores,
  1 thread for the small default model, ``OMP_WAIT_POLICY=PASSIVE``);
* ``torch defaults``: what a run got before the policy — one intra-op thread per core
  (``threads=<cores>``) and OpenMP's default spin-then-sleep wait (``GOMP_SPINCOUNT=300000``, libgomp's
  value when no wait policy is set; set explicitly so the row stays comparable once the entry point
  applies the policy).

Each prints the wall time quiet and busy and the busy/quiet ratio. Goal (issue 15): ≤ 4× slower
when busy with the policy (a fair share of 2 cores beside 4 spinning processes alone is ~3×).
The busy load: ``BENCH_BUSY`` (default 4) processes each spinning ``while True: pass``.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

JOB_ARGS = ["logger=none", "callbacks=none", "test=false", "++trainer.enable_progress_bar=false",
            "++trainer.enable_model_summary=false"]


def job(mode: str, overrides: list[str]) -> None:
    """The training run itself (in its own process): the policy first, then the console script."""
    if mode == "policy":
        from snn_lightning.threads import apply_thread_policy

        apply_thread_policy(None, "small_cnn")
    from snn_lightning.cli.train import main

    sys.argv = ["snn-train", *overrides]
    main()


def timed_run(mode: str, overrides: list[str], workdir: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the job)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    extra = []
    if mode == "torch-defaults":
        env["GOMP_SPINCOUNT"] = "300000"
        extra = [f"threads={os.cpu_count()}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "job", mode, "--", *overrides, *extra], env=env, cwd=workdir,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def loadavg() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=int(os.environ.get("BENCH_TRAIN_EPOCHS", 15)),
                    help="trainer.max_epochs (the default run: 15; BENCH_TRAIN_EPOCHS)")
    ap.add_argument("--busy", type=int, default=int(os.environ.get("BENCH_BUSY", 4)))
    ap.add_argument("--modes", default="policy,torch-defaults")
    a = ap.parse_args(argv)
    import tempfile

    overrides = [*JOB_ARGS, f"trainer.max_epochs={a.epochs}"]
    print(f"default snn-train run (digits, small_cnn, {a.epochs} epochs) quiet and beside {a.busy} CPU-bound "
          f"processes, {os.cpu_count()} cores; load average before: {loadavg():.1f}")
    print("| threads | quiet s | busy s | busy / quiet | job CPU s quiet / busy |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as work:
        for mode in a.modes.split(","):
            quiet = timed_run(mode, overrides, work)
            procs = spinners(a.busy)
            try:
                busy = timed_run(mode, overrides, work)
            finally:
                for p in procs:
                    p.kill()
                for p in procs:
                    p.wait()
            # the job's CPU time shows whether the busy run lost time to sharing (same CPU s) or to
            # threads waiting on descheduled threads (more CPU s: spinning)
            print(f"| {mode} | {quiet[0]:.1f} | {busy[0]:.1f} | {busy[0] / quiet[0]:.2f} | {quiet[1]:.1f} / {busy[1]:.1f} |",
                  flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "job":
        job(sys.argv[2], sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:])
    else:
        main()
