"""`snn-analyze`: membrane drift, firing rates and per-timestep predictions of trained networks.

    snn-analyze outputs/train/runs/2026-11-26_10-00-00          # a run folder (its best checkpoint)
    snn-analyze run/checkpoints/last.ckpt --layer body.0.lif     # a checkpoint, histogram of one layer
    snn-analyze run_mp_init run_baseline --labels "MP-Init" "zero init"   # side by side

Rebuilds the network and the test data from the configuration stored in the checkpoint, runs the
test set once with monitors on every neuron layer, and writes into ``--out`` (default
``<run folder>/analysis``):

* ``summary.json``: per layer and timestep mean/std of the membrane (active neurons and all),
  firing rates, MP-Init mean, V_thr, τ, the temporal drift |E[M[1]] − E[M[T]]| per layer and its
  mean over layers, accuracy per timestep (logits of t alone and mean of 1..t), prediction counts;
* ``data.json``: the histograms and PCA points behind the figures;
* figures: ``test_membrane_<layer>.png``, ``test_firing_rate.png``, ``test_predictions.png``,
  ``test_logit_pca.png``, and, when the run folder holds a CSV log, ``training_curves.png`` and
  ``neuron_params.png``.

With two inputs each gets its own sub-folder and ``comparison.png`` / ``comparison.json`` compare
them (drift per layer, accuracy per timestep, firing rate per timestep, membrane per timestep).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .cli._common import fail
from .errors import UserError
from .runs import METRICS_FILE, write_json

CKPT_DIR = "checkpoints"
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


# -- finding checkpoints -----------------------------------------------------------------------
def _val_acc(path: Path) -> float:
    m = re.search(r"val_acc(\d+(?:\.\d+)?)", path.name)
    return float(m.group(1)) if m else float("-inf")


def resolve_checkpoint(path: str | Path, which: str = "best") -> tuple[Path, Path]:
    """(checkpoint file, run folder) for a checkpoint or a run folder.

    In a folder, ``which="best"`` takes ``metrics.json``'s ``best_checkpoint``, else the checkpoint
    with the highest ``val_acc`` in its name, else ``last.ckpt``; ``which="last"`` takes ``last.ckpt``.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path} does not exist")
    if p.is_file():
        run_dir = p.parent.parent if p.parent.name == CKPT_DIR else p.parent
        return p, run_dir
    ckpt_dir = p / CKPT_DIR if (p / CKPT_DIR).is_dir() else p
    ckpts = sorted(ckpt_dir.glob("*.ckpt"))
    if not ckpts:
        raise UserError(f"no checkpoint in {path} (looked for {ckpt_dir}/*.ckpt)")
    last = ckpt_dir / "last.ckpt"
    if which == "last":
        if not last.is_file():
            raise UserError(f"no last.ckpt in {ckpt_dir}")
        return last, p
    try:
        import json

        best = json.loads((p / METRICS_FILE).read_text()).get("best_checkpoint")
        if best and Path(best).is_file():
            return Path(best), p
        if best and (ckpt_dir / Path(best).name).is_file():  # the run folder was moved
            return ckpt_dir / Path(best).name, p
    except (OSError, ValueError, AttributeError):
        pass
    scored = [c for c in ckpts if c.name != "last.ckpt" and _val_acc(c) > float("-inf")]
    if scored:
        return max(scored, key=_val_acc), p
    return (last if last.is_file() else ckpts[-1]), p


# -- rebuilding and running a model ------------------------------------------------------------
def load_model(ckpt_path: Path, batch_size: int | None = None, data_root: str | None = None):
    """(run config, data module, SNNModule with the checkpoint's weights, in eval mode)."""
    from .experiment import load_trained

    run = load_trained(ckpt_path, batch_size, data_root)
    return run.cfg, run.datamodule, run.module


def run_analysis(module, loader, *, device="cpu", hist_layers="auto", limit_batches=None, pca_classes=4,
                 pca_max_samples=256, hist_bins=64, hist_range=(-2.0, 2.0)) -> tuple[dict, dict]:
    """One pass over ``loader`` with monitors on every neuron layer.

    Returns (summary, data): ``summary`` as written to ``summary.json`` (without file metadata),
    ``data`` the histograms and PCA points.
    """
    import torch

    from .monitor import NeuronRecorder, PredictionRecorder, drift, find_neuron_layers, overall_firing_rate, pick_layers
    from .module import to_time_major

    layers = find_neuron_layers(module)
    names = [n for n, _ in layers]
    rec = NeuronRecorder(layers, pick_layers(names, hist_layers, 1), hist_bins, hist_range)
    preds = PredictionRecorder(pca_classes=pca_classes, pca_max_samples=pca_max_samples)
    module.to(device).eval()
    batches = 0
    rec.attach()
    try:
        with torch.no_grad():
            for x, y in loader:
                if limit_batches is not None and batches >= limit_batches:
                    break
                x, y = x.to(device), y.to(device)
                logits = module.net(to_time_major(x)) if hasattr(module, "net") else module(x)
                preds.update(logits, y)
                batches += 1
    finally:
        rec.detach()
    if batches == 0:
        raise UserError("the test set is empty (or --limit-batches is 0): nothing to analyze")
    neurons = rec.summary()
    p = preds.summary()
    dr = drift(neurons)
    for layer, st in neurons.items():
        st["drift_active"] = dr["per_layer"][layer]["active"]
        st["drift_all"] = dr["per_layer"][layer]["all"]
    summary = {
        "samples": preds.total,
        "batches": batches,
        "T": len(p["accuracy"]["instant"]),
        "accuracy": {
            "final": p["accuracy"]["cumulative"][-1],
            "instant": p["accuracy"]["instant"],
            "cumulative": p["accuracy"]["cumulative"],
        },
        "firing_rate": overall_firing_rate(neurons),
        "drift": dr,
        "mp_init": {n: st["mp_init"] for n, st in neurons.items()},
        "v_threshold": {n: st["v_threshold"] for n, st in neurons.items()},
        "tau": {n: st["tau"] for n, st in neurons.items()},
        "layers": neurons,
        "predictions": {"counts": p["counts"], "entropy": p["entropy"]},
    }
    return summary, {"histograms": rec.histograms(), "pca": preds.pca()}


def _config_facts(run_cfg) -> dict:
    from omegaconf import OmegaConf

    facts = {}
    for key, _ in LABEL_KEYS:
        facts[key] = OmegaConf.select(run_cfg, key, default=None)
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


def _history(run_dir: Path, out: Path) -> dict:
    from .plots import load_metrics_csv

    for csv_path in sorted(run_dir.rglob("metrics.csv")):
        if out in csv_path.parents:
            continue
        try:
            return load_metrics_csv(csv_path)
        except (OSError, ValueError):
            continue
    return {}


def analyze_one(ckpt: Path, run_dir: Path, out: Path, args, label: str | None = None, loaded=None) -> dict:
    from . import plots

    run_cfg, dm, module = loaded or load_model(ckpt, args.batch_size, args.data_root)
    dm.setup("test")
    summary, data = run_analysis(
        module, dm.test_dataloader(), device=args.device, hist_layers=args.layer or "auto",
        limit_batches=args.limit_batches, pca_classes=args.pca_classes,
    )
    summary = {"checkpoint": str(ckpt), "run_dir": str(run_dir), "label": label, "config": _config_facts(run_cfg), **summary}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    write_json(out / "data.json", data)
    if args.summary_only:
        return summary
    title = label or run_dir.name
    written = plots.write_stage_figures(
        out, "test", summary["layers"], data["histograms"], summary["predictions"], data["pca"],
        fr_layers=args.fr_layers, title=title,
    )
    written.update(plots.write_history_figures(out, _history(run_dir, out)))
    summary["figures"] = {k: str(v) for k, v in written.items()}
    write_json(out / "summary.json", summary)
    return summary


def compare(summaries: list[dict], labels: list[str], out: Path, layer: str | None = None) -> dict:
    from . import plots

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


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="snn-analyze",
        description="Analyze trained spiking networks on their test set: membrane statistics and drift per layer "
        "and timestep, firing rates, accuracy and class predictions per timestep, figures. "
        "Two inputs are compared side by side.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_OR_CKPT", help="a run folder (uses its best checkpoint) or a .ckpt file; one or two")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <first run folder>/analysis)")
    p.add_argument("--layer", action="append", default=None, metavar="NAME",
                   help="neuron layer for the membrane histograms (repeatable; 'all'; default: the middle layer)")
    p.add_argument("--limit-batches", type=int, default=None, metavar="N", help="only the first N test batches")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="test batch size (default: the run's)")
    p.add_argument("--last", action="store_true", help="in a run folder use checkpoints/last.ckpt instead of the best")
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
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
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
    out = args.out or (resolved[0][1] / "analysis")
    if len(resolved) == 1:
        ckpt, run_dir = resolved[0]
        label = args.labels[0] if args.labels else None
        summary = analyze_one(ckpt, run_dir, out, args, label)
        _print_summary(summary, out)
        return summary
    loaded = [load_model(ckpt, args.batch_size, args.data_root) for ckpt, _ in resolved]
    labels = args.labels or default_labels(
        [_config_facts(cfg) for cfg, _, _ in loaded], [r for _, r in resolved], [c for c, _ in resolved]
    )
    summaries = []
    for (ckpt, run_dir), lab, ld in zip(resolved, labels, loaded):
        summaries.append(analyze_one(ckpt, run_dir, out / _slug(lab), args, lab, ld))
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
    try:
        analyze(argv)
    except UserError as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


if __name__ == "__main__":
    main(sys.argv[1:])
