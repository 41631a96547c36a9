"""Where the Hydra configs live and which options each config group offers (plain file reads).

Why no Hydra import: the entry points check a command line against these facts before Hydra and
torch are loaded, so a typo costs milliseconds.
"""
from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def config_groups(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """``{group: [option, ...]}`` for every top-level config group (a folder of ``*.yaml``)."""
    groups = {}
    for d in sorted(p for p in Path(conf_dir).iterdir() if p.is_dir()):
        groups[d.name] = sorted(f.stem for f in d.glob("*.yaml"))
    return groups


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str] | None:
    """The options of a (possibly nested, ``hydra/launcher``) group; None when there is no such group."""
    d = Path(conf_dir) / group
    if not d.is_dir():
        return None
    return sorted(f.stem for f in d.glob("*.yaml"))
