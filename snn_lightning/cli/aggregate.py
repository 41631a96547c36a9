"""`snn-aggregate`: turn a sweep folder into the paper-style table (mean ± std over seeds) and plots.

    snn-aggregate outputs/sweeps/fig9/smoke                  # writes outputs/sweeps/fig9/smoke/aggregate/
    snn-aggregate outputs/sweeps/table1/full --out docs/results/table1
    snn-aggregate SWEEP --group-by norm mp_init --metric val/acc

Every job folder below the sweep folder (one holding ``.hydra/config.yaml`` or ``status.json``) is
read: its configuration (``.hydra/config.yaml``, ``.hydra/overrides.yaml``, the group choices in
``.hydra/hydra.yaml``), its state (``status.json``: finished / failed / running) and its final
metrics (``metrics.json``; the membrane statistics of the test pass in ``csv/metrics.csv`` when the
run logged them). Jobs are grouped by the keys the sweep varied (every override whose value differs
between jobs, the seed excepted) and written to ``--out`` (default ``<sweep>/aggregate``):

* ``jobs.csv``: one row per job (folder, status, error, the group keys, seed, every metric);
* ``summary.csv`` / ``summary.md``: per group the number of finished and failed jobs, the mean and
  standard deviation (sample std, ddof=1) over seeds of the final accuracy, of the accuracy from
  timesteps 1..t (``acc_t<t>``) and of the temporal drift of the mean membrane potential
  (mean over layers of |E[M[1]] − E[M[T]]|, all neurons and active neurons), with the paper's number
  beside it when the sweep (``study.paper_reference``) or the experiment (``paper``) carries one;
  ``summary.md`` also lists the failed and unfinished jobs;
* ``accuracy_vs_<x>.png``: the Fig. 9-style plot, final accuracy against ``--x`` (default: the
  initial V_thr), one line per ``--line`` (default: the SG formulation), one panel per combination
  of ``--panels`` (default: the other keys, e.g. reset x surrogate shape), with a robustness table
  (mean, min, max, spread across x per line and panel) in ``summary.md``;
* ``accuracy_per_timestep.png``: accuracy from timesteps 1..t against t, one line per group.
* ``training_curves.png``: the Fig. 9 bottom row, at one initial V_thr (``--curves-at``, default 1.0):
  training loss (``train/loss_epoch``) and validation accuracy (``val/acc``) per epoch from each
  job's ``csv/metrics.csv``, one line per SG formulation (mean over seeds, band ±std), one column per
  panel of the Fig. 9-style plot; skipped when V_thr was not swept or no job logged per-epoch values.

Accuracies are reported in percent. The work is done by :mod:`snn_lightning.sweeps`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..sweeps import DEFAULT_METRIC, aggregate
from ._common import guarded


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snn-aggregate",
        description="Summarize a sweep folder (Hydra multirun output of snn-train): mean ± std over seeds "
        "per configuration as CSV and Markdown, the failed jobs, a Fig. 9-style plot and the per-timestep "
        "accuracy plot.",
        epilog="example: snn-aggregate outputs/sweeps/fig9/smoke --out docs/results/fig9_smoke",
    )
    p.add_argument("sweep", nargs="+", type=Path, help="sweep folder(s): every job folder below is read")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <sweep>/aggregate)")
    p.add_argument("--group-by", nargs="+", default=None, metavar="KEY",
                   help="group by these keys (override keys, group names such as sg, or dotted config keys); "
                   "default: every swept override except the seed")
    p.add_argument("--metric", default=DEFAULT_METRIC, help=f"final accuracy metric in metrics.json (default {DEFAULT_METRIC})")
    p.add_argument("--x", default=None, help="x axis of the Fig. 9-style plot (default: neuron.v_threshold if swept)")
    p.add_argument("--line", default=None, help="one line per value of this key (default: sg if swept)")
    p.add_argument("--panels", nargs="*", default=None, metavar="KEY", help="one panel per combination of these keys (default: the other swept keys)")
    p.add_argument("--title", default=None, help="title of the table and plots")
    p.add_argument("--paired", nargs="+", default=None, metavar="KEY",
                   help="also compare each value of KEY with its first value, paired by seed (e.g. --paired mp_init)")
    p.add_argument("--curves-at", type=float, default=1.0, metavar="V_THR",
                   help="initial V_thr of the training-curves plot (loss and val accuracy per epoch; default 1.0)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    res = guarded(aggregate, args.sweep, out=args.out, group_by=args.group_by, metric=args.metric, x=args.x,
                  line=args.line, panels=args.panels, plots=not args.no_plots, title=args.title,
                  paired=args.paired, curves_at=args.curves_at)
    print(res["markdown"])
    for name, path in res["written"].items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
