"""Whether a run is alive, the folder lock, and who may write into a run folder."""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .files import *  # noqa: F403 - the file names and status words
from .files import read_status


# -- liveness, locks and who may write into a run folder ---------------------------------------------
def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_is_held(run_dir: str | os.PathLike) -> bool:
    """Whether a live process holds the run folder's lock (False when there is no lock file)."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def is_live(run_dir: str | os.PathLike, status: Mapping | None = None) -> bool:
    """Whether the run recorded in the folder is still running (its lock held, or its pid alive here)."""
    status = read_status(run_dir) if status is None else status
    if not status or status.get("status") != RUNNING:
        return False
    if (Path(run_dir) / LOCK_FILE).exists():
        return lock_is_held(run_dir)
    host = status.get("host")
    if status.get("pid") is None or host not in (None, socket.gethostname()):
        return True  # nothing here can tell: a status written without a pid, or by another machine
    return pid_alive(status.get("pid"))


def effective_status(run_dir: str | os.PathLike) -> str | None:
    """The folder's status word, with ``running`` read as ``died`` when its process is gone."""
    status = read_status(run_dir)
    if not status:
        return None
    state = status.get("status")
    if state == RUNNING and not is_live(run_dir, status):
        return DIED
    return state


class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock`` for as long as the process lives (the OS drops it on any exit).

    A lock this process already holds on the same folder is reused (:meth:`acquire` returns True):
    ``snn-train`` takes it before Hydra writes into an explicit ``hydra.run.dir``, and the job keeps it.
    """

    _held: dict[str, int] = {}  # resolved run folder -> fd, for the locks this process holds

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    @property
    def _key(self) -> str:
        return str(self.path.resolve())

    def acquire(self) -> bool:
        import fcntl

        if self._key in RunLock._held:
            self.fd = RunLock._held[self._key]
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        RunLock._held[self._key] = fd
        return True

    def wait(self) -> None:
        """Block until the lock is free (used to wait for a job another sweep is running)."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.fd is not None:
            RunLock._held.pop(self._key, None)
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def refusal(run_dir: str | os.PathLike, *, resuming: bool, overwrite: bool, locked: bool = False) -> str | None:
    """Why a new run may not write into ``run_dir`` (None when it may).

    A live run always keeps the folder; a finished one unless the new run resumes it or
    ``overwrite=true``; an interrupted or died one with a ``last.ckpt`` likewise (a fresh start would
    overwrite the checkpoint it can resume from). A failed run may be re-run in place (a sweep retries it).
    ``locked``: the caller holds the folder's lock, so no other process runs there.
    """
    status = read_status(run_dir)
    if not locked and status and status.get("status") == RUNNING and is_live(run_dir, status):
        return (f"run folder {run_dir} is in use by a live run (pid {status.get('pid')}); "
                f"wait for it or choose another hydra.run.dir")
    if status and status.get("status") == FINISHED and not (resuming or overwrite):
        return (f"run folder {run_dir} holds a finished run; resume it with ckpt_path=auto, "
                f"choose another hydra.run.dir, or pass overwrite=true")
    if status and status.get("status") == RUNNING:
        # holding the lock ourselves, a "running" record of another process means that process died
        dead = status.get("pid") != os.getpid() if locked else not is_live(run_dir, status)
    else:
        dead = False
    stopped = status and (status.get("status") == INTERRUPTED or dead)
    if stopped and auto_checkpoint(run_dir) is not None and not (resuming or overwrite):
        # a fresh start would overwrite the last.ckpt that the stopped run can be resumed from
        word = "an interrupted" if status.get("status") == INTERRUPTED else "a died"
        return (f"run folder {run_dir} holds {word} run with {CKPT_DIR}/{LAST_CKPT}; resume it with "
                f"ckpt_path=auto, choose another hydra.run.dir, or pass overwrite=true")
    return None


def auto_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The folder's ``checkpoints/last.ckpt`` if it has one (what ``ckpt_path=auto`` resumes from)."""
    path = checkpoint_dir(run_dir) / LAST_CKPT
    return path if path.is_file() else None
