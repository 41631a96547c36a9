"""`snn-analyze`: membrane drift, firing rates and per-timestep predictions of trained networks.

    snn-analyze outputs/train/runs/2026-11-26_10-00-00          # a run folder (its best checkpoint)
    snn-analyze run/checkpoints/last.ckpt --layer body.0.lif     # a checkpoint, histogram of one layer
    snn-analyze run_mp_init run_baseline --labels "MP-Init" "zero init"   # side by side

Rebuilds the network and the test data from the configuration stored in the checkpoint
(``experiment.load_trained``), runs the test set once with monitors on every neuron layer
(``monitor.run_analysis``), and writes into ``--out`` (default ``<run folder>/analysis``):

* ``summary.json``: per layer and timestep mean/std of the membrane (active neurons and all),
  firing rates, MP-Init mean, V_thr, τ, the temporal drift |E[M[1]] − E[M[T]]| per layer and its
  mean over layers (``monitor.drift``), accuracy per timestep (logits of t alone and mean of
  1..t), prediction counts;
* ``data.json``: the numbers behind the figures — a stage data file of the ``test`` stage, the
  format the observability callbacks write to ``figures/data/<stage>.json`` (``runs.write_stage_data``);
* figures, drawn from ``data.json`` by ``plots.draw_stage_data`` as the figure callback draws its
  own: ``test_membrane_<layer>.png``, ``test_firing_rate.png``, ``test_predictions.png``,
  ``test_logit_pca.png``, and, when the run folder holds a CSV log (or the callbacks' parameter
  history), ``training_curves.png`` and ``neuron_params.png``.

With two inputs each gets its own sub-folder and ``comparison.png`` / ``comparison.json`` compare
them (drift per layer, accuracy per timestep, firing rate per timestep, membrane per timestep).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from .. import experiment as ex
from .. import plots, runs
from .._checks import positive_int
from ..errors import UserError
from ..monitor import analysis_summary, run_analysis
from ..runs import resolve_checkpoint, write_json
from ._common import guarded

# run-config keys worth naming in an automatic label when two runs differ in them
LABEL_KEYS = (
    ("neuron.mp_init", "MP-Init"),
    ("norm.kind", "norm"),
    ("neuron.sg_mode", "sg"),
    ("neuron.reset", "reset"),
    ("model.name", "model"),
    ("T", "T"),
    ("neuron.v_threshold", "V_thr"),
    ("neuron.tau", "tau"),
    ("seed", "seed"),
)

__all__ = ["analyze", "analyze_one", "build_parser", "compare", "default_labels", "main", "resolve_checkpoint"]


# -- labels ----------------------------------------------------------------------------------------
def _config_facts(run_cfg) -> dict:
    from omegaconf import OmegaConf

    facts = {key: OmegaConf.select(run_cfg, key, default=None) for key, _ in LABEL_KEYS}
    facts["data"] = OmegaConf.select(run_cfg, "data._target_", default=None)
    return facts


def default_labels(facts: list[dict], run_dirs: list[Path], ckpts: list[Path] | None = None) -> list[str]:
    """Name runs by the config keys they differ in (e.g. ``MP-Init on`` / ``MP-Init off``), else by folder."""
    if len(facts) > 1:
        parts = [[] for _ in facts]
        for key, short in LABEL_KEYS:
            vals = [f.get(key) for f in facts]
            if len({repr(v) for v in vals}) > 1:
                for i, v in enumerate(vals):
                    if key == "neuron.mp_init":
                        parts[i].append(f"MP-Init {'on' if v else 'off'}")
                    else:
                        parts[i].append(f"{short}={v}")
        labels = [", ".join(p) for p in parts]
        if all(labels) and len(set(labels)) == len(labels):
            return labels
    labels = [d.resolve().name or str(d) for d in run_dirs]
    if len(set(labels)) < len(labels) and ckpts:
        labels = [f"{lab}/{c.stem}" for lab, c in zip(labels, ckpts)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} ({i + 1})" for i, lab in enumerate(labels)]
    return labels


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "run"


# -- one run, two runs -------------------------------------------------------------------------------
def training_history(run_dir: Path) -> dict:
    """The run's metrics over training: its CSV log, else the parameter history of its callbacks."""
    history = runs.read_run_metrics_csv(run_dir).history()
    return history or runs.read_history(runs.param_history_path(runs.figures_dir(run_dir)))


def analyze_one(ckpt: Path, run_dir: Path, out: Path, args, label: str | None = None, loaded=None) -> dict:
    """Analyze one checkpoint into ``out``; returns what ``summary.json`` holds."""
    from ..module import to_time_major

    run = loaded or ex.load_trained(ckpt, args.batch_size, args.data_root)
    run.datamodule.setup("test")
    result = run_analysis(
        run.net, run.datamodule.test_dataloader(), prepare=to_time_major, device=args.device,
        hist_layers=args.layer or "auto", limit_batches=args.limit_batches, pca_classes=args.pca_classes,
    )
    summary = {"checkpoint": str(ckpt), "run_dir": str(run_dir), "label": label, "config": _config_facts(run.cfg),
               **analysis_summary(result)}
    data_path = out / runs.ANALYSIS_DATA
    runs.write_stage_data(data_path, "test", run.checkpoint.get("global_step"), **result.stage_parts())
    write_json(out / runs.ANALYSIS_SUMMARY, summary)
    if args.summary_only:
        return summary
    written = plots.draw_stage_data(data_path, out, args.fr_layers, title=label or run_dir.name)
    written.update(plots.write_history_figures(out, training_history(run_dir)))
    summary["figures"] = {k: str(v) for k, v in written.items()}
    write_json(out / runs.ANALYSIS_SUMMARY, summary)
    return summary


def compare(summaries: list[dict], labels: list[str], out: Path, layer: str | None = None) -> dict:
    """``comparison.png`` and ``comparison.json`` of analyzed runs side by side."""
    fig = plots.plot_comparison(summaries, labels, layer=layer)
    path = plots.save_figure(fig, out / "comparison.png")
    result = {
        "labels": labels,
        "checkpoints": [s["checkpoint"] for s in summaries],
        "drift_mean_active": [s["drift"]["mean_active"] for s in summaries],
        "drift_mean_all": [s["drift"]["mean_all"] for s in summaries],
        "drift_per_layer": [s["drift"]["per_layer"] for s in summaries],
        "accuracy_instant": [s["accuracy"]["instant"] for s in summaries],
        "accuracy_cumulative": [s["accuracy"]["cumulative"] for s in summaries],
        "firing_rate": [s["firing_rate"] for s in summaries],
        "figure": str(path),
    }
    write_json(out / "comparison.json", result)
    return result


# -- command line ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snn-analyze",
        description="Analyze trained spiking networks on their test set: membrane statistics and drift per layer "
        "and timestep, firing rates, accuracy and class predictions per timestep, figures. "
        "Two inputs are compared side by side.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_OR_CKPT", help="a run folder (uses its best checkpoint) or a .ckpt file; one or two")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default: <first run folder>/{runs.ANALYSIS_DIR})")
    p.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="neuron layer for the membrane histograms (repeatable; 'all'; default: the middle layer)")
    p.add_argument("--limit-batches", type=int, default=None, metavar="N", help="only the first N test batches")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="test batch size (default: the run's)")
    p.add_argument("--last", action="store_true", help=f"in a run folder use {runs.CKPT_DIR}/{runs.LAST_CKPT} instead of the best")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL", help="names of the runs in figures (one per input)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, … (default: cuda when available)")
    p.add_argument("--data-root", default=None, help="override the dataset root stored in the run config")
    p.add_argument("--pca-classes", type=int, default=4, metavar="N", help="classes 0..N-1 in the logit PCA figure (0: none)")
    p.add_argument("--summary-only", action="store_true",
                   help="write only summary.json and data.json per run (with two inputs, still the comparison)")
    p.add_argument("--fr-layers", type=int, default=6, metavar="N", help="layers in the firing-rate figure")
    return p


def _check_args(args) -> None:
    if len(args.paths) > 2:
        raise UserError(f"give one or two runs or checkpoints, got {len(args.paths)}")
    if args.labels is not None and len(args.labels) != len(args.paths):
        raise UserError(f"--labels needs one label per input ({len(args.paths)}), got {len(args.labels)}")
    for name in ("limit_batches", "batch_size"):
        if getattr(args, name) is not None:
            positive_int(f"--{name.replace('_', '-')}", getattr(args, name))
    positive_int("--fr-layers", args.fr_layers)
    if args.layer and "all" in args.layer:
        args.layer = "all"
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"


def analyze(argv: list[str] | None = None) -> dict:
    """Run the command line ``argv``; returns the summary (or the comparison). Raises UserError."""
    args = build_parser().parse_args(argv)
    _check_args(args)
    resolved = [resolve_checkpoint(p, "last" if args.last else "best") for p in args.paths]
    out = args.out or (resolved[0][1] / runs.ANALYSIS_DIR)
    if len(resolved) == 1:
        ckpt, run_dir = resolved[0]
        summary = analyze_one(ckpt, run_dir, out, args, args.labels[0] if args.labels else None)
        _print_summary(summary, out)
        return summary
    loaded = [ex.load_trained(ckpt, args.batch_size, args.data_root) for ckpt, _ in resolved]
    labels = args.labels or default_labels(
        [_config_facts(run.cfg) for run in loaded], [r for _, r in resolved], [c for c, _ in resolved]
    )
    summaries = []
    for (ckpt, run_dir), lab, run in zip(resolved, labels, loaded):
        summaries.append(analyze_one(ckpt, run_dir, out / _slug(lab), args, lab, run))
        _print_summary(summaries[-1], out / _slug(lab))
    layer = args.layer[0] if isinstance(args.layer, list) else None
    result = compare(summaries, labels, out, layer)
    print(f"comparison written to {out / 'comparison.png'}")
    return result


def _print_summary(summary: dict, out: Path) -> None:
    label = summary.get("label") or summary["run_dir"]
    acc = ", ".join(f"{a:.3f}" for a in summary["accuracy"]["cumulative"])
    inst = ", ".join(f"{a:.3f}" for a in summary["accuracy"]["instant"])
    print(f"[{label}] {summary['checkpoint']}")
    print(f"  test accuracy (mean of logits 1..t): {acc}")
    print(f"  test accuracy (logits of step t):    {inst}")
    print(f"  membrane drift |E[M1]-E[MT]| mean over layers: active {summary['drift']['mean_active']:.4f}, "
          f"all {summary['drift']['mean_all']:.4f}")
    print(f"  written to {out}")


def main(argv: list[str] | None = None) -> None:
    guarded(analyze, argv)


if __name__ == "__main__":
    main()
