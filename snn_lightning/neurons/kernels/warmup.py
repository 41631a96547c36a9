"""Compiled LIF kernels for ``backend="auto"`` on the CPU, without waiting for the compiler.

The compiled kernels are 3–4× faster than the eager ones on the CPU (benchmarks/results.md), but a
first compile takes 5–50 s. So ``auto`` runs the fused eager kernels while a background *process*
compiles each configuration it meets (after ``START_AFTER_CALLS`` calls of it) into the persistent inductor cache (``inductor_cache.py``); once
that process is done, the next call compiles in this process from the warm cache (a few seconds,
once) and uses the compiled kernel from then on. Both kernels compute the same recurrence, and both are
tested against ``LIF.reference`` (tests/test_fused.py, tests/test_compile_cache.py).

Why a process and not a thread: ``torch.compile`` is not thread-safe (dynamo swaps the frame
evaluation hook and global state of the interpreter), so a compile beside a running training step in
the same process is unsound. The background process gets the very arguments of the first call (saved
to a private temp file) so it traces the same graph, and the same cache folder, so its entry is the
one this process looks up. One background compile runs at a time, at low priority; they are stopped
when this process exits. A failed background compile is reported once and leaves that configuration
on the eager kernels.

Opt-out: ``SNN_LIGHTNING_AUTO_COMPILE=0`` (``auto`` then means the eager fused kernels on the CPU, as
before), or an explicit ``LIF(backend="fused")``.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional

import torch

from . import inductor_cache

ENV = "SNN_LIGHTNING_AUTO_COMPILE"
# a configuration is worth compiling once it has run this often: a training run does hundreds of steps,
# while a one-off call (inference on a sample, a unit test) would only make the machine compile for nobody
START_AFTER_CALLS = 16
log = logging.getLogger(__name__)


def auto_compile_enabled() -> bool:
    """Whether ``backend="auto"`` may switch to compiled kernels on the CPU (``SNN_LIGHTNING_AUTO_COMPILE``)."""
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("0", "off", "false", "no"):
        return False
    if value in ("1", "on", "true", "yes", ""):
        return True
    from ...errors import InvalidValue

    raise InvalidValue(f"{ENV}={value!r}; allowed: 1/on/true/yes or 0/off/false/no")


class _Job:
    __slots__ = ("key", "path", "proc", "log_path", "submitted", "started", "state", "seconds")

    def __init__(self, key, path: str, log_path: str):
        self.key, self.path, self.log_path = key, path, log_path
        self.proc: Optional[subprocess.Popen] = None
        self.submitted = time.perf_counter()
        self.started = None
        self.state = "queued"  # queued | running | ready | failed
        self.seconds = 0.0  # the background compile's wall time


class Warmup:
    """The background compiles of this process, one configuration key each."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict = {}
        self._calls: dict = {}  # key -> calls before its background compile was submitted
        self._dir: Optional[str] = None
        self._reported = False
        self._warned = False

    # -- what CompileCache asks ---------------------------------------------------------------
    def ready(self, key, recipe: tuple, args) -> bool:
        """Whether ``key``'s kernel is in the persistent cache (submits its background compile if new)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                self._calls[key] = self._calls.get(key, 0) + 1
                if self._calls[key] < START_AFTER_CALLS:
                    return False
                job = self._submit(key, recipe, args)
            self._poll()
            return job.state == "ready"

    def states(self) -> dict:
        """``{key: "queued" | "running" | "ready" | "failed"}`` (for tests and reports)."""
        with self._lock:
            self._poll()
            return {k: j.state for k, j in self._jobs.items()}

    def wait(self, timeout: float = 600.0) -> dict:
        """Block until no background compile is queued or running (for tests and benchmarks)."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            states = self.states()
            if not any(s in ("queued", "running") for s in states.values()):
                return states
            time.sleep(0.05)
        raise TimeoutError(f"background LIF compiles still running after {timeout} s: {self.states()}")

    @contextlib.contextmanager
    def timing_switch(self):
        """Times the in-process compile from the warm cache; prints the one-time cost, once per process."""
        t0 = time.perf_counter()
        yield
        if not self._reported:
            self._reported = True
            spent = time.perf_counter() - t0
            with self._lock:
                background = sum(j.seconds for j in self._jobs.values() if j.state == "ready")
            print(f"snn_lightning: compiled LIF kernels in use from now on (one-time cost: {background:.1f} s of "
                  f"background compiling while the eager kernels ran, {spent:.1f} s to load them here; cached in "
                  f"{inductor_cache.chosen_folder() or 'inductor default folder'}; "
                  f"{ENV}=0 turns this off)", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop the background compiles and drop their files (at exit, and for tests)."""
        with self._lock:
            for job in self._jobs.values():
                if job.proc is not None and job.proc.poll() is None:
                    job.proc.kill()
                    job.proc.wait()
            self._jobs.clear()
            self._calls.clear()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
            self._reported = False
            self._warned = False

    # -- inside the lock ----------------------------------------------------------------------
    def _submit(self, key, recipe, args) -> _Job:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="snn_lightning_warmup_")
        name = f"job{len(self._jobs)}"
        path = os.path.join(self._dir, name + ".pt")
        torch.save({"key": key, "recipe": recipe, "args": args}, path)
        job = _Job(key, path, os.path.join(self._dir, name + ".log"))
        self._jobs[key] = job
        return job

    def _poll(self) -> None:
        running = False
        for job in self._jobs.values():
            if job.state == "running":
                rc = job.proc.poll()
                if rc is None:
                    running = True
                    continue
                job.seconds = time.perf_counter() - job.started
                job.state = "ready" if rc == 0 else "failed"
                if rc != 0:
                    self._note_failure(job, rc)
        if not running:
            for job in self._jobs.values():
                if job.state == "queued":
                    self._start(job)
                    break

    def _start(self, job: _Job) -> None:
        threads = job.key[-1]
        folder_threads = inductor_cache.ensure(threads)
        env = dict(os.environ)
        if folder_threads is not None:  # let the child choose the same folder the same way
            env.pop(inductor_cache.INDUCTOR_ENV, None)
        env["OMP_NUM_THREADS"] = str(threads)
        env[ENV] = "0"
        with open(job.log_path, "wb") as out:
            job.proc = subprocess.Popen([sys.executable, "-m", __name__, job.path], stdout=out, stderr=subprocess.STDOUT,
                                        env=env, preexec_fn=_low_priority if os.name == "posix" else None)
        job.started = time.perf_counter()
        job.state = "running"

    def _note_failure(self, job: _Job, rc: int) -> None:
        if not self._warned:
            self._warned = True
            try:
                with open(job.log_path, errors="replace") as f:
                    tail = f.read()[-2000:]
            except OSError:
                tail = ""
            log.warning("snn_lightning: the background compile of a LIF kernel failed (exit %s); that configuration "
                        "keeps the eager kernels (reported once). Its output:\n%s", rc, tail)


def _low_priority() -> None:  # pragma: no cover - runs in the child before exec
    os.nice(10)


WARMUP = Warmup()
atexit.register(WARMUP.stop)


def _child(path: str) -> int:
    """Compile one configuration into the persistent cache (``python -m ...warmup JOB``)."""
    from .compiled import CompileCache

    job = torch.load(path, weights_only=False)
    key, recipe, args = job["key"], job["recipe"], job["args"]
    torch.set_num_threads(key[-1])
    cache = CompileCache()

    def failed():
        raise SystemExit(1)

    with torch.no_grad():
        cache.run(key[:-1], recipe, args, failed)
    return 0 if not cache.failures() else 1


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses in the tests
    sys.exit(_child(sys.argv[1]))

__all__ = ["ENV", "WARMUP", "Warmup", "auto_compile_enabled"]
