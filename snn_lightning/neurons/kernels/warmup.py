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
one this process looks up. One background compile runs at a time, at low priority. At exit the running
one finishes and the queued ones go to one detached process, so that a short first run still warms
the cache; each finished configuration leaves a marker file in the cache folder, by which a later run
loads it from the cache (after the same ``START_AFTER_CALLS`` eager calls), with no background process. A failed background compile
is reported once and leaves that configuration on the eager kernels.

Opt-out: ``SNN_LIGHTNING_AUTO_COMPILE=0`` (``auto`` then means the eager fused kernels on the CPU, as
before), or an explicit ``LIF(backend="fused")``.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
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
# neurons per call (the input's size over T) from which compiled kernels pay for their loading (about 3 s
# per configuration in-process, even from a warm cache): measured, the default small_cnn/digits run got
# 44 % slower with them (27.6 s -> 39.7 s: benchmarks/results.md), while a [32, 128, 16, 16] layer
# (1 M neurons) runs 3.6x faster
MIN_NEURONS = 1 << 18
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
                marker = _marker(key, inductor_cache.ensure(key[-1]))
                if marker is not None and os.path.exists(marker):
                    return True  # an earlier run compiled it into the persistent cache: load it now
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
            how = (f"{background:.1f} s of background compiling while the eager kernels ran" if background
                   else "compiled by an earlier run")
            print(f"snn_lightning: compiled LIF kernels in use from now on (one-time cost: {how}, "
                  f"{spent:.1f} s to load them here; cached in "
                  f"{inductor_cache.chosen_folder() or 'inductor default folder'}; "
                  f"{ENV}=0 turns this off)", file=sys.stderr, flush=True)

    def finish_detached(self) -> None:
        """At exit: let the running background compile finish and hand the queued ones to one more detached
        process, so that the next run finds them in the persistent cache (a short first run would otherwise
        never warm it)."""
        with self._lock:
            self._poll()
            left = [j for j in self._jobs.values() if j.state in ("queued", "running")]
            queued = [j for j in left if j.state == "queued"]
            if queued:
                env = self._child_env(queued[0].key[-1])
                subprocess.Popen([sys.executable, "-m", __name__, *[j.path for j in queued]], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=_low_priority if os.name == "posix" else None)
            if left:
                print(f"snn_lightning: {len(left)} LIF kernel compile(s) go on in the background after exit, for the "
                      f"next run ({ENV}=0 turns this off)", file=sys.stderr, flush=True)
            for job in self._jobs.values():
                job.proc = None  # not killed by stop(): they finish on their own
                # an open log stays writable once unlinked; the detached process removes its job files
                for path in ([job.log_path] if job in queued else [job.log_path, job.path]):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            self._jobs.clear()
            self._calls.clear()
            if self._dir is not None and not queued:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop(self) -> None:
        """Stop the background compiles and drop their files (for tests)."""
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
        env = self._child_env(job.key[-1])
        with open(job.log_path, "wb") as out:
            job.proc = subprocess.Popen([sys.executable, "-m", __name__, job.path], stdout=out, stderr=subprocess.STDOUT,
                                        env=env, preexec_fn=_low_priority if os.name == "posix" else None)
        job.started = time.perf_counter()
        job.state = "running"

    @staticmethod
    def _child_env(threads: int) -> dict:
        env = dict(os.environ)
        if inductor_cache.ensure(threads) is not None:  # let the child choose the same folder the same way
            env.pop(inductor_cache.INDUCTOR_ENV, None)
        env["OMP_NUM_THREADS"] = str(threads)
        env[ENV] = "0"
        return env

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


def _marker(key, folder_threads: Optional[int]) -> Optional[str]:
    """The file that says ``key``'s kernel is in the persistent folder (None: no persistent folder of that
    thread count, so nothing can be known about it)."""
    folder = inductor_cache.chosen_folder()
    if folder is None or folder_threads != key[-1]:
        return None
    digest = hashlib.sha1(repr(key).encode()).hexdigest()
    return os.path.join(folder, "snn_lightning_ready", digest)


WARMUP = Warmup()
atexit.register(WARMUP.finish_detached)


def _child(paths: list) -> int:
    """Compile configurations into the persistent cache (``python -m ...warmup JOB...``); marks each done."""
    from .compiled import CompileCache

    cache = CompileCache()
    rc = 0
    for path in paths:
        job = torch.load(path, weights_only=False)
        with contextlib.suppress(OSError):  # read once; a detached child is the last one to need it
            os.unlink(path)
        key, recipe, args = job["key"], job["recipe"], job["args"]
        torch.set_num_threads(key[-1])
        with torch.no_grad():
            cache.run(key[:-1], recipe, args, lambda: None)
        if key in cache.failures():
            rc = 1
            continue
        marker = _marker(key, inductor_cache.ensure(key[-1]))
        if marker is not None:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            with open(marker, "w") as f:
                f.write(repr(key))
    return rc


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses in the tests
    sys.exit(_child(sys.argv[1:]))

__all__ = ["ENV", "WARMUP", "Warmup", "auto_compile_enabled"]
