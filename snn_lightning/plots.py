"""Figures for the paper's analyses: pure functions, data in, ``matplotlib.figure.Figure`` out.

Why the object-oriented API (``Figure`` + Agg canvas) rather than pyplot: no global figure
registry to leak memory across a long training run or a sweep, no backend switch imposed on the
caller's notebook, and safe in worker threads. :func:`save_figure` writes a PNG.

Inputs are plain Python data (lists, dicts) as produced by ``snn_lightning.monitor`` and
stored in ``<run>/figures/data/*.json`` / ``snn-analyze``'s ``summary.json``, so sweeps can redraw
or combine them without a model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import runs

Series = tuple[list[float], list[float]]  # (steps, values)


# -- helpers -----------------------------------------------------------------------------------
def new_figure(n_axes: int, ncols: int | None = None, panel: tuple[float, float] = (3.2, 2.6)) -> tuple[Figure, list]:
    """A figure with exactly ``n_axes`` axes laid out in a grid (unused grid cells are removed)."""
    n_axes = max(1, int(n_axes))
    ncols = min(n_axes, ncols or n_axes)
    nrows = math.ceil(n_axes / ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[n_axes:]:
        ax.remove()
    return fig, axes[:n_axes]


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def spread(names: Sequence[str], n: int) -> list[str]:
    """``n`` evenly spaced entries of ``names`` (all of them when there are fewer)."""
    names = list(names)
    if len(names) <= n:
        return names
    if n <= 1:
        return [names[(len(names) - 1) // 2]]
    idx = sorted({round(i * (len(names) - 1) / (n - 1)) for i in range(n)})
    return [names[i] for i in idx]


def _colors(n: int, cmap: str = "viridis") -> list:
    from matplotlib import colormaps

    cm = colormaps[cmap]
    if cmap.startswith("tab"):  # qualitative: distinct entries
        return [cm(i % cm.N) for i in range(n)]
    return [cm(i / max(n - 1, 1) * 0.9) for i in range(n)]


def _steps(T: int) -> list[int]:
    return list(range(1, T + 1))


def _finite(values: Sequence[float]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


# -- Fig. 1: membrane distribution over time ---------------------------------------------------
def plot_membrane_distribution(
    counts: Sequence[Sequence[float]],
    edges: Sequence[float],
    layer: str,
    stats: Mapping | None = None,
    title: str | None = None,
) -> Figure:
    """Left: the distribution of the pre-fire membrane M[t] of active neurons, one curve per timestep
    (each normalized to a density). Right (when ``stats`` — one layer's summary — is given): mean ±
    std of M[t] over active neurons and the mean over all neurons, with V_thr and the MP-Init mean."""
    T = len(counts)
    fig, axes = new_figure(2 if stats else 1, panel=(4.2, 3.0))
    ax = axes[0]
    width = [edges[i + 1] - edges[i] for i in range(len(edges) - 1)]
    centers = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
    for t, (c, color) in enumerate(zip(counts, _colors(T))):
        total = float(sum(c))
        dens = [v / (total * w) if total > 0 else 0.0 for v, w in zip(c, width)]
        ax.plot(centers, dens, color=color, lw=1.3, label=f"t={t + 1}", drawstyle="steps-mid")
    if stats:
        ax.axvline(stats["v_threshold"], color="crimson", ls="--", lw=1, label="V_thr")
        if stats.get("mp_init"):
            ax.axvline(stats["mp_init"], color="gray", ls=":", lw=1, label="MP-Init mean")
    ax.set_xlabel("membrane potential M[t]")
    ax.set_ylabel("density (active neurons)")
    ax.set_title(f"membrane distribution: {layer}", fontsize=9)
    ax.legend(fontsize=7)
    if stats:
        ax2 = axes[1]
        ts = _steps(len(stats["v_mean_active"]))
        mean, std = _finite(stats["v_mean_active"]), _finite(stats["v_std_active"])
        ax2.errorbar(ts, mean, yerr=std, marker="o", capsize=3, label="active: mean ± std")
        ax2.plot(ts, _finite(stats["v_mean"]), marker="s", ls="--", label="all: mean")
        ax2.axhline(stats["v_threshold"], color="crimson", ls="--", lw=1, label="V_thr")
        ax2.set_xticks(ts)
        ax2.set_xlabel("timestep t")
        ax2.set_ylabel("M[t]")
        ax2.set_title("membrane mean per timestep", fontsize=9)
        ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# -- Fig. 6: firing rate over time -------------------------------------------------------------
def plot_firing_rates(firing_rates: Mapping[str, Sequence[float]], max_layers: int = 6, title: str | None = None) -> Figure:
    """Firing rate of all neurons at each timestep, one panel per layer (``max_layers`` evenly
    spaced layers when there are more)."""
    layers = spread(list(firing_rates), max_layers)
    fig, axes = new_figure(len(layers), ncols=3 if len(layers) > 3 else None)
    for ax, layer in zip(axes, layers):
        fr = _finite(firing_rates[layer])
        ts = _steps(len(fr))
        ax.bar(ts, fr, color="tab:blue", width=0.7)
        top = max((v for v in fr if v == v), default=0.0)
        ax.set_ylim(0.0, top * 1.15 if top > 0 else 1e-3)
        ax.set_xticks(ts)
        ax.set_xlabel("timestep t")
        ax.set_ylabel("firing rate")
        ax.set_title(layer, fontsize=9)
    if not layers:
        axes[0].set_title("no neuron layers recorded", fontsize=9)
    fig.suptitle(title or "firing rate per timestep", fontsize=10)
    return fig


# -- Fig. 7: class predictions over time -------------------------------------------------------
def plot_class_predictions(
    counts: Sequence[Sequence[float]], class_names: Sequence[str] | None = None, title: str | None = None
) -> Figure:
    """Distribution of the predicted class at each timestep, one panel per t (fraction of samples)."""
    T = len(counts)
    K = len(counts[0]) if T else 0
    names = list(class_names) if class_names else [str(k) for k in range(K)]
    fig, axes = new_figure(T, ncols=min(T, 4), panel=(3.0, 2.4))
    ymax = 0.0
    for t, ax in enumerate(axes):
        total = float(sum(counts[t])) or 1.0
        frac = [c / total for c in counts[t]]
        ymax = max(ymax, max(frac, default=0.0))
        ax.bar(range(K), frac, color="tab:orange", width=0.8)
        ax.axhline(1.0 / max(K, 1), color="gray", ls=":", lw=1)
        ax.set_title(f"t={t + 1}", fontsize=9)
        ax.set_xlabel("predicted class")
        if K <= 20:
            ax.set_xticks(range(K))
            ax.set_xticklabels(names, fontsize=7, rotation=90 if max(map(len, names), default=0) > 2 else 0)
    for ax in axes:
        ax.set_ylim(0, min(1.0, ymax * 1.1 + 1e-3))
    axes[0].set_ylabel("fraction of samples")
    fig.suptitle(title or "class predictions per timestep", fontsize=10)
    return fig


# -- Figs. 4-5: PCA of logits over time --------------------------------------------------------
def plot_logit_pca(
    points: Sequence[Sequence[Sequence[float]]],
    labels: Sequence[int],
    explained: Sequence[Sequence[float]] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Logits of a few classes projected on their first two principal components, one panel per t."""
    T = len(points)
    classes = sorted(set(int(y) for y in labels))
    colors = dict(zip(classes, _colors(len(classes), "tab10")))
    fig, axes = new_figure(T, ncols=min(T, 4), panel=(3.0, 2.8))
    for t, ax in enumerate(axes):
        for c in classes:
            xs = [p[0] for p, y in zip(points[t], labels) if int(y) == c]
            ys = [p[1] for p, y in zip(points[t], labels) if int(y) == c]
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            ax.scatter(xs, ys, s=6, color=colors[c], label=name, alpha=0.7)
        sub = ""
        if explained:
            sub = f" ({100 * sum(explained[t]):.0f}% var)"
        ax.set_title(f"t={t + 1}{sub}", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("PC2")
    axes[-1].legend(fontsize=7, markerscale=2)
    fig.suptitle(title or "PCA of logits per timestep", fontsize=10)
    return fig


# -- training curves and neuron parameters -----------------------------------------------------
def _plot_series(ax, history: Mapping[str, Series], keys: Sequence[str], **kw) -> int:
    n = 0
    for key in keys:
        if key in history and history[key][0]:
            steps, vals = history[key]
            ax.plot(steps, vals, label=key, marker="o" if len(steps) < 30 else None, ms=3, **kw)
            n += 1
    return n


def plot_training_curves(history: Mapping[str, Series], title: str | None = None) -> Figure:
    """Training and validation curves over steps: loss, accuracy and (when logged) validation
    accuracy of the early exit at each timestep ``val/acc_t<t>``."""
    acc_t = sorted((k for k in history if k.startswith("val/acc_t")), key=lambda k: int(k.rsplit("t", 1)[1]))
    fig, axes = new_figure(3 if acc_t else 2, panel=(3.8, 2.8))
    _plot_series(axes[0], history, ["train/loss_step", "train/loss_epoch", "train/loss", "val/loss"])
    axes[0].set_title("loss", fontsize=9)
    _plot_series(axes[1], history, ["train/acc", "train/acc_epoch", "val/acc"])
    axes[1].set_title("accuracy", fontsize=9)
    if acc_t:
        for key, color in zip(acc_t, _colors(len(acc_t))):
            steps, vals = history[key]
            axes[2].plot(steps, vals, label=key.split("/", 1)[1], color=color, marker="o" if len(steps) < 30 else None, ms=3)
        axes[2].set_title("validation accuracy per timestep", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title or "training curves", fontsize=10)
    return fig


PARAM_PANELS = (("v_threshold", "V_thr"), ("tau", "τ"), ("mp_init", "MP-Init running mean"))


def plot_neuron_params(history: Mapping[str, Series], title: str | None = None) -> Figure:
    """V_thr, τ and the MP-Init running mean of every layer over training (one line per layer),
    from series named ``v_threshold/<layer>``, ``tau/<layer>``, ``mp_init/<layer>``."""
    fig, axes = new_figure(3, panel=(3.8, 2.8))
    for ax, (key, label) in zip(axes, PARAM_PANELS):
        names = [k for k in history if k.startswith(key + "/")]
        for name, color in zip(names, _colors(len(names), "turbo")):
            steps, vals = history[name]
            ax.plot(steps, vals, label=name.split("/", 1)[1], color=color, lw=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
        if names and len(names) <= 20:
            ax.legend(fontsize=5, ncol=2)
    fig.suptitle(title or "neuron parameters over training", fontsize=10)
    return fig


# -- two (or more) models side by side ---------------------------------------------------------
def plot_comparison(summaries: Sequence[Mapping], labels: Sequence[str], layer: str | None = None, title: str | None = None) -> Figure:
    """Models side by side (``snn-analyze`` summaries): temporal drift |E[M[1]] − E[M[T]]| per layer
    (active neurons), accuracy per timestep (logits of t alone, solid; mean of 1..t, dashed),
    firing rate per timestep over all layers, and the mean membrane (active) per t of ``layer``."""
    fig, axes = new_figure(4, ncols=2, panel=(4.6, 3.0))
    colors = _colors(len(summaries), "tab10")
    # (a) drift per layer
    ax = axes[0]
    layer_names = list(summaries[0]["drift"]["per_layer"]) if summaries else []
    width = 0.8 / max(len(summaries), 1)
    for i, (s, lab, col) in enumerate(zip(summaries, labels, colors)):
        per = s["drift"]["per_layer"]
        ys = [per.get(n, {}).get("active", float("nan")) for n in layer_names]
        ax.bar([j + i * width for j in range(len(layer_names))], ys, width=width, color=col,
               label=f"{lab} (mean {s['drift']['mean_active']:.3g})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layer_names))])
    ax.set_xticklabels(layer_names, rotation=90, fontsize=6)
    ax.set_ylabel("|E[M[1]] − E[M[T]]|")
    ax.set_title("temporal drift of mean membrane (active)", fontsize=9)
    ax.legend(fontsize=7)
    # (b) accuracy per t
    ax = axes[1]
    for s, lab, col in zip(summaries, labels, colors):
        acc = s["accuracy"]
        ts = _steps(len(acc["instant"]))
        ax.plot(ts, acc["instant"], marker="o", color=col, label=f"{lab}: step t")
        ax.plot(ts, acc["cumulative"], marker="s", ls="--", color=col, label=f"{lab}: mean 1..t")
        ax.set_xticks(ts)
    ax.set_xlabel("timestep t")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy per timestep", fontsize=9)
    ax.legend(fontsize=7)
    # (c) firing rate per t
    ax = axes[2]
    for s, lab, col in zip(summaries, labels, colors):
        fr = s["firing_rate"]
        ts = _steps(len(fr))
        ax.plot(ts, fr, marker="o", color=col, label=lab)
        ax.set_xticks(ts)
    ax.set_xlabel("timestep t")
    ax.set_ylabel("firing rate (all layers)")
    ax.set_title("firing rate per timestep", fontsize=9)
    ax.legend(fontsize=7)
    # (d) mean membrane per t of one layer
    ax = axes[3]
    layer = layer or (layer_names[(len(layer_names) - 1) // 2] if layer_names else None)
    for s, lab, col in zip(summaries, labels, colors):
        st = s["layers"].get(layer) if layer else None
        if st:
            ts = _steps(len(st["v_mean_active"]))
            ax.errorbar(ts, _finite(st["v_mean_active"]), yerr=_finite(st["v_std_active"]), marker="o", capsize=3, color=col, label=lab)
            ax.set_xticks(ts)
    ax.set_xlabel("timestep t")
    ax.set_ylabel("M[t] (active): mean ± std")
    ax.set_title(f"membrane per timestep: {layer}", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(title or " vs ".join(labels), fontsize=10)
    return fig


# -- writing a set of figures ------------------------------------------------------------------
def write_stage_figures(
    outdir: str | Path,
    stage: str,
    neurons: Mapping[str, Mapping] | None = None,
    histograms: Mapping[str, Mapping] | None = None,
    predictions: Mapping | None = None,
    pca: Mapping | None = None,
    fr_layers: int = 6,
    class_names: Sequence[str] | None = None,
    pred_mode: str = "instant",
    title: str | None = None,
) -> dict[str, Path]:
    """Write the figures one evaluation pass supports; returns ``{name: path}`` with names
    ``<stage>_membrane_<layer>`` (Fig. 1, one per histogram layer), ``<stage>_firing_rate``
    (Fig. 6), ``<stage>_predictions`` (Fig. 7) and ``<stage>_logit_pca`` (Figs. 4-5)."""
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    head = f"{title}: " if title else ""

    def emit(name: str, fig: Figure) -> None:
        written[name] = save_figure(fig, outdir / f"{name}.png")

    for layer, h in (histograms or {}).items():
        stats = (neurons or {}).get(layer)
        emit(f"{stage}_membrane_{layer}", plot_membrane_distribution(h["counts"], h["edges"], layer, stats, title=f"{head}{stage}"))
    if neurons:
        frs = {layer: st["fr"] for layer, st in neurons.items()}
        emit(f"{stage}_firing_rate", plot_firing_rates(frs, fr_layers, title=f"{head}{stage}: firing rate per timestep"))
    if predictions and predictions.get("counts", {}).get(pred_mode):
        emit(
            f"{stage}_predictions",
            plot_class_predictions(predictions["counts"][pred_mode], class_names, title=f"{head}{stage}: class predictions per timestep ({pred_mode})"),
        )
    if pca and pca.get("points"):
        emit(
            f"{stage}_logit_pca",
            plot_logit_pca(pca["points"], pca["labels"], pca.get("explained"), class_names, title=f"{head}{stage}: PCA of logits per timestep"),
        )
    return written


def draw_stage_data(
    path: str | Path,
    outdir: str | Path,
    fr_layers: int = 6,
    class_names: Sequence[str] | None = None,
    pred_mode: str = "instant",
    title: str | None = None,
) -> dict[str, Path]:
    """The figures of one stage data file (``runs.write_stage_data``) into ``outdir``, by
    :func:`write_stage_figures`; ``{}`` when the file is missing or holds nothing. The one drawing
    path of the figure callback and ``snn-analyze``."""
    data = runs.read_stage_data(path)
    if data is None:
        return {}
    return write_stage_figures(
        outdir, data["stage"], data.get("neurons"), data.get("histograms"), data.get("predictions"), data.get("pca"),
        fr_layers, class_names, pred_mode=pred_mode, title=title,
    )


def write_history_figures(outdir: str | Path, history: Mapping[str, Series], title: str | None = None) -> dict[str, Path]:
    """``training_curves`` and ``neuron_params`` from a metrics history, ``{name: (steps, values)}``
    (e.g. ``runs.read_metrics_csv(path).history()``)."""
    outdir = Path(outdir)
    written: dict[str, Path] = {}
    if any(k.startswith(("train/", "val/")) for k in history):
        written["training_curves"] = save_figure(plot_training_curves(history, title), outdir / "training_curves.png")
    if any(k.startswith(tuple(p + "/" for p, _ in PARAM_PANELS)) for k in history):
        written["neuron_params"] = save_figure(plot_neuron_params(history, title), outdir / "neuron_params.png")
    return written
