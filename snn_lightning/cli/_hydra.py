"""Hydra entry points with one-line errors: a config mistake is the user's, reported before any job.

Two checks, both with Hydra's own machinery rather than by hand:

* before Hydra runs, the command line's overrides are parsed with Hydra's override parser and every
  option named for a config group (each value of a ``choice``/``range``/``glob`` sweep too) is checked
  against the group's files, so a sweep with one bad value launches nothing;
* an added top-level key (``+foo=1``) that nothing reads is refused (a typo would be ignored), and a
  run into an explicit ``hydra.run.dir`` holding a finished or live run is refused *before* Hydra
  writes that folder's ``.hydra/`` files (:func:`snn_lightning.runs.refusal`);
* Hydra's composition errors (a key that is not in the config, a malformed override) are caught and
  printed as their first line, with "did you mean" for a misspelt key. ``HYDRA_FULL_ERROR=1`` makes
  Hydra raise instead of printing its own multi-line report, so our policy applies and a bug in a job
  keeps its full traceback.
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .. import runs
from ..config import CONF_DIR, config_groups, group_options
from ..experiment import is_launch_rank_zero
from ..errors import UserError
from ._common import fail, guarded, one_line

# groups whose option may be null (nothing selected)
NULLABLE_GROUPS = ("experiment", "debug", "logger", "callbacks", "scheduler")


def primary_keys(config_name: str, conf_dir=CONF_DIR) -> list[str]:
    """The top-level keys a primary config (``train``, ``eval``) has: its own keys and its groups."""
    import yaml

    text = (Path(conf_dir) / f"{config_name}.yaml").read_text()
    own = [k for k in (yaml.safe_load(text) or {}) if k != "defaults"]
    return sorted(set(own) | set(config_groups(conf_dir)) | {"hydra"})


def check_added_keys(overrides: list[str], config_name: str, extra_dirs: tuple = (), conf_dir=CONF_DIR) -> None:
    """Refuse ``+foo=1`` / ``++foo=1`` for a top-level ``foo`` that no config group or key provides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = primary_keys(config_name, conf_dir)
    for o in OverridesParser.create().parse_overrides(overrides):
        if not (o.is_add() or o.is_force_add()):
            continue
        top = o.key_or_group.split("/")[0].split(".")[0]
        if top in known or any((Path(d) / top).is_dir() for d in extra_dirs):
            continue
        close = difflib.get_close_matches(top, known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UserError(f"unknown key {top!r} in {o.input_line}: nothing reads it; {hint}top-level keys: {', '.join(known)}")


def check_run_dir(overrides: list[str]) -> None:
    """Refuse, before Hydra writes into it, an explicit ``hydra.run.dir`` that holds a finished or live run.

    The folder's lock is taken here (the job, in this process, keeps it): two launches into one
    folder at the same moment cannot both get past this point and mix their ``.hydra/`` files.
    """
    values = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o and not o.startswith("~"))
    run_dir = values.get("hydra.run.dir")
    if not run_dir:
        return
    if not runs.RunLock(run_dir).acquire():
        raise UserError(f"run folder {run_dir} is in use by a live run; wait for it or choose another hydra.run.dir")
    ckpt = values.get("ckpt_path")
    resuming = ckpt == "auto" or bool(ckpt and Path(ckpt).resolve().is_relative_to(Path(run_dir).resolve()))
    overwrite = values.get("overwrite", "false").lower() in ("true", "1", "yes")
    why = runs.refusal(run_dir, resuming=resuming, overwrite=overwrite, locked=True)
    if why:
        raise UserError(why)


def check_group_overrides(overrides: list[str], conf_dir=CONF_DIR) -> None:
    """Raise UserError for a ``group=option`` override (or sweep value) naming an option that does not exist."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException, OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise UserError(one_line(str(e).splitlines()[0] if str(e) else e)) from None
    for o in parsed:
        group = o.key_or_group
        if o.is_delete() or group.split("/")[0] == "hydra":
            continue
        options = group_options(group, conf_dir)
        if options is None:
            continue
        if o.value_type in (ValueType.GLOB_CHOICE_SWEEP, ValueType.INTERVAL_SWEEP):
            continue  # a glob selects among existing files; an interval is never a group option
        try:
            if o.is_sweep_override():
                values = list(o.sweep_string_iterator())
            else:
                v = o.value()
                values = ["null" if v is None else str(v)]
        except HydraException:
            continue
        for option in values:
            if option in ("null", "") and group in NULLABLE_GROUPS:
                continue
            if option not in options:
                raise UserError(f"unknown {group} {option!r}; allowed: {', '.join(options)}")


def suggest_keys(full_key: str, config_name: str, overrides: list[str], conf_dir=CONF_DIR) -> list[str]:
    """Keys next to ``full_key`` in the config composed without it that look like it (for "did you mean")."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import DictConfig, OmegaConf

    rest = [o for o in overrides if not re.match(rf"^[+~]*{re.escape(full_key)}(=|$)", o)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=rest)
    except Exception:  # noqa: BLE001 - a suggestion is a nicety; the error line stands without it
        return []
    finally:
        GlobalHydra.instance().clear()
    parent, _, leaf = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    return difflib.get_close_matches(leaf, keys, n=3, cutoff=0.6)


def composition_error_line(e: BaseException, config_name: str | None = None, overrides: list[str] = ()) -> str:
    """One line for a Hydra composition error: its first line, plus the cause's when it explains it."""
    from hydra.errors import MissingConfigException

    m = re.search(r"Could not override '([^']+)'", str(e))
    if m and config_name and "not in struct" in f"{e} {e.__cause__}":
        key = m.group(1)
        close = suggest_keys(key, config_name, list(overrides))
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        return one_line(f"no key {key!r} in the config; {hint}(a new key would be +{key}=..., read only if something uses it)")

    if isinstance(e, MissingConfigException) and e.missing_cfg_file and e.options:
        group, _, option = str(e.missing_cfg_file).rpartition("/")
        if group:
            return f"unknown {group} {option!r}; allowed: {', '.join(sorted(e.options))}"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        first = f"{first.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    hint = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip().startswith("To append")), "")
    return one_line(f"{first} ({hint})" if hint else first)


def hydra_cli(task: Callable, config_name: str, after: Callable[[], int] | None = None,
              guard_run_dir: bool = False) -> Callable[[], None]:
    """A console-script ``main`` running ``task(cfg)`` under ``@hydra.main`` with our failure policy.

    ``after()`` runs once Hydra returned from a multirun and gives its exit code (a sweep with a failed
    job must not exit 0); ``guard_run_dir`` refuses an explicit ``hydra.run.dir`` holding a finished
    or live run before Hydra writes into it.
    """
    import hydra

    decorated = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)

    def main() -> None:
        from hydra._internal.utils import get_args_parser
        from hydra.errors import ConfigCompositionException, OverrideParseException

        args, _ = get_args_parser().parse_known_args(sys.argv[1:])
        overrides = list(args.overrides or [])
        guarded(check_group_overrides, overrides)
        extra = tuple(d for d in [args.config_dir] if d)
        guarded(check_added_keys, overrides, config_name, extra)
        if guard_run_dir and not args.multirun and is_launch_rank_zero():  # ddp children share rank 0's folder
            guarded(check_run_dir, overrides)
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            decorated()
        except (ConfigCompositionException, OverrideParseException) as e:
            fail(composition_error_line(e, config_name, overrides))
        if args.multirun and after is not None:
            code = after()
            if code:
                sys.exit(code)

    return main
