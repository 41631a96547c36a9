"""``snn-dashboard ENTITY/PROJECT``: save a wandb workspace laid out for spiking-network runs.

The panels are built from the keys a run logs: a local run folder's ``metrics.csv`` header
(``--run``), or, by default, the summary keys of the project's newest run on wandb. ``--dry-run``
prints the sections and their keys and saves nothing (no network with ``--run``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ._common import guarded


def _parse(argv):
    p = argparse.ArgumentParser(prog="snn-dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("path", metavar="ENTITY/PROJECT", help="the wandb project to save the workspace in")
    p.add_argument("--run", type=Path, default=None, help="read the keys from this run folder's metrics.csv")
    p.add_argument("--name", default="snn-lightning", help="the workspace's name (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the sections and keys, save nothing")
    return p.parse_args(argv)


def _split_path(path: str) -> tuple[str, str]:
    parts = path.strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"expected ENTITY/PROJECT, got {path!r}")
    return parts[0], parts[1]


def keys_from_run_dir(run_dir: Path) -> list[str]:
    from ..runs import find_metrics_csv, read_metrics_csv

    if not run_dir.is_dir():
        raise UserError(f"--run {str(run_dir)!r} is not a folder")
    path = find_metrics_csv(run_dir)
    if path is None:
        raise UserError(f"no metrics.csv under {str(run_dir)!r} (a run with the CSV logger writes csv/metrics.csv)")
    return [k for k in read_metrics_csv(path).columns if k not in ("step", "epoch")]


def keys_from_wandb(entity: str, project: str) -> list[str]:
    import wandb

    runs = wandb.Api().runs(f"{entity}/{project}", order="-created_at", per_page=1)
    try:
        run = next(iter(runs))
    except StopIteration:
        raise UserError(f"{entity}/{project} has no runs to read metric keys from; pass --run RUN_DIR") from None
    return [k for k in run.summary.keys() if not k.startswith("_")]


def run(argv=None) -> int:
    from ..wandb_workspace import build_workspace, panel_keys

    args = _parse(argv)
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        raise UserError("snn-dashboard needs wandb-workspaces: pip install 'snn-lightning[dashboard]'") from None
    entity, project = _split_path(args.path)
    keys = keys_from_run_dir(args.run) if args.run is not None else keys_from_wandb(entity, project)
    workspace = build_workspace(entity, project, keys, name=args.name)
    if not workspace.sections:
        raise UserError("none of the run's keys belongs to a dashboard section")
    for section, ks in panel_keys(workspace).items():
        print(f"{section}: {len(ks)} keys")
    if not args.dry_run:
        workspace.save()
        print(f"saved: {workspace.url}")
    return 0


def main(argv=None) -> None:
    guarded(run, argv)


if __name__ == "__main__":
    main()
