"""How many CPU threads a run uses, chosen from the cores it may really use (plain Python; torch lazily).

Why a policy: PyTorch starts one intra-op thread per *online* core and its OpenMP threads spin-wait
for work between operations. On a machine shared with other jobs (or confined by a container's CPU
quota) that is the worst choice: spinning threads burn the time slices the others need, a thread
that was descheduled stalls every parallel region, and the run can be 6-12x slower than with one
thread. The policy here:

* counts the CPUs this process may run on: the affinity mask (``os.sched_getaffinity``, which
  ``taskset``/cpusets narrow) and the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), the
  smaller of the two;
* gives small models one thread (their per-op work is too small for a fork/join to pay);
* sets ``OMP_WAIT_POLICY=PASSIVE`` so idle OpenMP threads sleep instead of spinning. OpenMP reads it
  once, when torch loads it, so :func:`apply_thread_policy` must run before ``import torch`` to have
  that effect; called later it says so in the line it prints;
* can be overridden (``threads=N`` in the train config; an explicit ``OMP_WAIT_POLICY`` is kept).
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from ._checks import positive_int

# models whose layers are too small for intra-op threads to pay (digits 8x8, 32-64 channels): with 2
# threads the default `make train` was no faster quiet and much slower on a busy machine
SMALL_MODELS = frozenset({"small_cnn"})
SMALL_PARAMS = 1_000_000  # an int hint below this counts as small

_CGROUP = Path("/sys/fs/cgroup")
_policy_before_torch = False  # whether a call set the wait policy before torch loaded


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _v2_quota(root: Path, rel: str) -> float | None:
    """The tightest ``cpu.max`` from this process's cgroup up to the root, in CPUs (None: unlimited)."""
    best = None
    path = root / rel.lstrip("/")
    while True:
        f = path / "cpu.max"
        if f.is_file():
            quota, _, period = f.read_text().strip().partition(" ")
            if quota != "max":
                cpus = int(quota) / int(period or 100000)
                best = cpus if best is None else min(best, cpus)
        if path == root or root not in path.parents:
            return best
        path = path.parent


def _v1_quota(root: Path) -> float | None:
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        q, p = root / sub / "cpu.cfs_quota_us", root / sub / "cpu.cfs_period_us"
        if q.is_file() and p.is_file():
            quota, period = int(q.read_text()), int(p.read_text())
            return quota / period if quota > 0 and period > 0 else None
    return None


def cgroup_quota_cpus(root: Path = _CGROUP, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 1.5), or None when there is none (or no cgroup filesystem)."""
    try:
        rel = next((line.split(":", 2)[2] for line in proc_cgroup.read_text().splitlines() if line.startswith("0::")), None)
        if rel is not None and (root / "cgroup.controllers").is_file():  # a unified (v2) hierarchy at root
            return _v2_quota(root, rel)
        return _v1_quota(root)
    except (OSError, ValueError):
        return None


def usable_cpus() -> tuple[int, str]:
    """(CPUs this process may keep busy, how that was found)."""
    aff = affinity_cpus()
    quota = cgroup_quota_cpus()
    n = aff if quota is None else max(1, min(aff, math.floor(quota)))
    return n, f"affinity {aff}, cgroup quota {'none' if quota is None else f'{quota:g}'}"


def is_small(model_size_hint) -> bool:
    """A model name from :data:`SMALL_MODELS`, or a parameter count below :data:`SMALL_PARAMS`."""
    if isinstance(model_size_hint, str):
        return model_size_hint in SMALL_MODELS
    if isinstance(model_size_hint, int) and not isinstance(model_size_hint, bool):
        return model_size_hint < SMALL_PARAMS
    return False


def choose_threads(cfg_threads=None, model_size_hint=None) -> tuple[int, str]:
    """(intra-op threads, why) — ``cfg_threads`` (a positive int) wins; None chooses."""
    n, how = usable_cpus()
    if cfg_threads is not None:
        return positive_int("threads", cfg_threads), f"threads={cfg_threads} asked; {how}"
    if is_small(model_size_hint):
        return 1, f"small model {model_size_hint!r}; {how}"
    return n, how


def apply_thread_policy(cfg_threads=None, model_size_hint=None, echo: bool = True) -> int:
    """Set OpenMP's wait policy (if torch is not loaded yet) and torch's intra-op threads; print one line.

    ``model_size_hint``: the model's name (``cfg.model.name``) or its parameter count. Returns the
    number of threads set.
    """
    global _policy_before_torch
    n, why = choose_threads(cfg_threads, model_size_hint)
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        _policy_before_torch = True
    late = not _policy_before_torch
    wait = os.environ.get("OMP_WAIT_POLICY", "library default")
    import torch

    torch.set_num_threads(n)
    if echo:
        note = " (torch was loaded before the policy: OpenMP keeps the wait policy it started with)" if late else ""
        print(f"threads: {n} intra-op ({why}); OpenMP wait policy {wait}{note}", flush=True)
    return n


__all__ = ["SMALL_MODELS", "apply_thread_policy", "choose_threads", "cgroup_quota_cpus", "usable_cpus"]
