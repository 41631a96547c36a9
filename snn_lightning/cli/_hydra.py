"""Hydra entry points with one-line errors: a config mistake is the user's, reported before any job.

Two checks, both with Hydra's own machinery rather than by hand:

* before Hydra runs, the command line's overrides are parsed with Hydra's override parser and every
  option named for a config group (each value of a ``choice``/``range``/``glob`` sweep too) is checked
  against the group's files, so a sweep with one bad value launches nothing;
* Hydra's composition errors (a key that is not in the config, a malformed override) are caught and
  printed as their first line. ``HYDRA_FULL_ERROR=1`` makes Hydra raise instead of printing its own
  multi-line report, so our policy applies and a bug in a job keeps its full traceback.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..config import CONF_DIR, group_options
from ..errors import UserError
from ._common import fail, guarded, one_line

# groups whose option may be null (nothing selected)
NULLABLE_GROUPS = ("experiment", "debug", "logger", "callbacks", "scheduler")


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


def composition_error_line(e: BaseException) -> str:
    """One line for a Hydra composition error: its first line, plus the cause's when it explains it."""
    from hydra.errors import MissingConfigException

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


def hydra_cli(task: Callable, config_name: str) -> Callable[[], None]:
    """A console-script ``main`` running ``task(cfg)`` under ``@hydra.main`` with our failure policy."""
    import hydra

    decorated = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)

    def main() -> None:
        from hydra._internal.utils import get_args_parser
        from hydra.errors import ConfigCompositionException, OverrideParseException

        args, _ = get_args_parser().parse_known_args(sys.argv[1:])
        guarded(check_group_overrides, list(args.overrides or []))
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            decorated()
        except (ConfigCompositionException, OverrideParseException) as e:
            fail(composition_error_line(e))

    return main
