"""Shared helpers for the framework tests: compose the real configs into a temporary run folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from snn_lightning.config import CONF_DIR

REPO = CONF_DIR.parent


def compose_cfg(out_dir: Path, overrides: list[str] = (), config_name: str = "train"):
    """The config `snn-train <overrides>` would run, writing into ``out_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir)
        cfg.paths.data_dir = str(out_dir / "data")
        del cfg["hydra"]
    return cfg


def run_cli(module: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    env.pop("SNN_DATA_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={cwd}/run", f"hydra.sweep.dir={cwd}/sweep"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
