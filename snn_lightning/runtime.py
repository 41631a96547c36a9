"""Helpers shared by the entry points: config checks, batch splitting, run status files."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"


class UserError(ValueError):
    """A mistake in what the user asked for; reported as one line, never with a traceback."""


def config_groups(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    groups = {}
    for d in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        groups[d.name] = sorted(f.stem for f in d.glob("*.yaml"))
    return groups


def check_group_overrides(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Reject ``group=option`` overrides naming an option that does not exist, in one line."""
    groups = config_groups(conf_dir)
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key not in groups or key == "hydra":
            continue
        for option in _sweep_values(value):
            if option in ("null", "") and key in ("experiment", "debug", "logger", "callbacks", "scheduler"):
                continue
            if option not in groups[key]:
                raise UserError(f"unknown {key} {option!r}; allowed: {', '.join(groups[key])}")


def checked_main(hydra_main) -> None:
    """Run a ``@hydra.main`` function after rejecting unknown group options in one line."""
    try:
        check_group_overrides(sys.argv[1:])
    except UserError as e:
        fail(str(e))
    hydra_main()


def _sweep_values(value: str) -> list[str]:
    value = value.strip()
    for prefix in ("choice(", "glob("):
        if value.startswith(prefix) and value.endswith(")"):
            if prefix == "glob(":
                return []
            value = value[len(prefix) : -1]
    return [v.strip().strip("'\"") for v in value.split(",")]


def per_device_batch_size(global_batch: int, world_size: int, devices: int | None = None, nodes: int | None = None) -> int:
    if not isinstance(global_batch, int) or global_batch <= 0:
        raise UserError(f"batch_size must be a positive integer, got {global_batch!r}")
    if global_batch % world_size:
        where = f"{world_size} processes" if devices is None else f"{world_size} processes ({devices} devices x {nodes} nodes)"
        raise UserError(
            f"batch_size {global_batch} does not divide across {where}; "
            f"use a multiple of {world_size} (e.g. {max(world_size, global_batch - global_batch % world_size)})"
        )
    return global_batch // world_size


def check_T(T: Any) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise UserError(f"T must be a positive integer number of timesteps, got {T!r}")
    return T


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)
