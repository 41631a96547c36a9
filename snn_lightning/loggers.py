"""Loggers of snn-lightning."""
from __future__ import annotations

import csv
import os
import socket
import sys
import threading
from urllib.parse import urlparse

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

WANDB_DEFAULT_URL = "https://api.wandb.ai"
REACH_TIMEOUT_S = 5.0


def reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` seconds (DNS included)."""
    parsed = urlparse(url if "://" in url else f"https://{url}")
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def offline_unless_reachable(node, name: str = "logger.wandb") -> None:
    """Switch an online wandb logger config to offline, with one warning line, when wandb cannot be reached.

    Why fall back rather than fail: a long run should not be lost to a network outage at its start,
    and an offline run is uploaded later with ``wandb sync``; the warning says so. (wandb itself would
    retry for minutes, or raise a traceback after ~20 s.)
    """
    if node.get("offline", False) or os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return
    url = os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_URL)
    if reachable(url):
        return
    node.offline = True
    print(f"warning: {name}: {url} is not reachable within {REACH_TIMEOUT_S:g} s; logging to wandb offline "
          f"instead (upload later with `wandb sync <run>/wandb/offline-run-*`)", file=sys.stderr)


class _ContinuingWriter(ExperimentWriter):
    """Continues an existing ``metrics.csv`` (keeps its rows and header) instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ContinuingCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a writer created on an existing ``metrics.csv`` appends to it.

    Why: under ``strategy=ddp_spawn`` (``trainer=ddp_cpu``) ``trainer.fit`` and ``trainer.test`` each run
    in freshly spawned processes holding a pickled copy of the logger; the test stage's copy creates a
    new writer, and Lightning's writer deletes the ``metrics.csv`` the fit stage wrote, so the training
    rows were lost. A run resumed (``ckpt_path``) into its own folder appends too.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment
