"""Where inductor keeps the compiled LIF kernels between runs: one persistent folder per torch version
and thread count, shared by every process on the machine, so only the first run on a machine pays
the 5–50 s of compiling (numbers: benchmarks/results.md, "Compiled kernels: the one-time cost").

* ``SNN_LIGHTNING_INDUCTOR_CACHE=<dir>``: the root (default ``~/.cache/snn_lightning/inductor``);
  ``SNN_LIGHTNING_INDUCTOR_CACHE=off`` leaves inductor's own default (a per-user temp folder,
  usually emptied at reboot) untouched;
* a ``TORCHINDUCTOR_CACHE_DIR`` the user set already is respected as it is.

The folder is ``<root>/torch-<version>/threads-<n>``: inductor writes a serial kernel when it
compiles under one thread, and its FX-graph cache does not key on the thread count, so a separate
folder per thread count is what makes that cache safe to use (``CompileCache._get``).
"""
from __future__ import annotations

import os
from typing import Optional

import torch

ENV = "SNN_LIGHTNING_INDUCTOR_CACHE"
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"

# the folder this process pointed inductor at, and the thread count it was chosen for (set once:
# inductor's caches hold paths under it, so moving it mid-process would strand compiled modules)
_chosen: dict = {}


def default_root() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "snn_lightning", "inductor")


def folder_for(threads: int, root: Optional[str] = None) -> str:
    """``<root>/torch-<version>/threads-<threads>``."""
    root = root if root is not None else (os.environ.get(ENV) or default_root())
    version = torch.__version__.replace("+", "_")
    return os.path.join(os.path.abspath(os.path.expanduser(root)), f"torch-{version}", f"threads-{threads}")


def ensure(threads: int) -> Optional[int]:
    """Point inductor at the persistent folder for ``threads`` (first call only); the thread count that
    folder holds kernels for, or None when the cache is the user's own / switched off (then its kernels'
    thread counts are unknown)."""
    if "threads" not in _chosen:
        setting = os.environ.get(ENV, "")
        if os.environ.get(INDUCTOR_ENV) or setting.lower() == "off":
            _chosen["threads"] = None
            _chosen["folder"] = os.environ.get(INDUCTOR_ENV)
        else:
            folder = folder_for(threads)
            os.makedirs(folder, exist_ok=True)
            os.environ[INDUCTOR_ENV] = folder
            _chosen["threads"] = threads
            _chosen["folder"] = folder
    return _chosen["threads"]


def chosen_folder() -> Optional[str]:
    """The folder this process uses (None before the first compile, or when inductor's default applies)."""
    return _chosen.get("folder")


def _forget() -> None:
    """For tests: choose again at the next compile."""
    _chosen.clear()


__all__ = ["ENV", "chosen_folder", "default_root", "ensure", "folder_for"]
