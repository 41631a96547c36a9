"""A wandb workspace laid out for spiking-network runs, and the ``define_metric`` setup that makes its axes right.

Why explicit panels: wandb groups keys by their first path segment, which puts 17 layers × 4 timesteps
of firing rates into one undifferentiated "neuron" section. :func:`build_workspace` reads the keys a
run logs (its ``metrics.csv`` header, or the names the wandb API reports) and builds one section per
kind of quantity with one panel per layer, each panel holding that layer's timesteps. Building the
workspace object needs no network; only ``Workspace.save()`` talks to wandb.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

# epoch-level keys (logged once per evaluation or training epoch) are drawn against ``epoch``
EPOCH_PREFIXES = ("val/", "test/", "val_neuron/", "test_neuron/", "train/acc", "train/loss_epoch")

_PER_T = re.compile(r"^(?P<prefix>[a-z_]+)/(?P<layer>.+)/(?P<quantity>[a-z_]+)_t(?P<t>\d+)$")
_PER_LAYER = re.compile(r"^(?P<prefix>mp_init|v_threshold|tau)/(?P<layer>.+)$")
_GRAD_PARAM = re.compile(r"^grad/(?P<layer>.+)/(?P<quantity>v_threshold|tau)(?P<rel>_rel)?$")
_STAGE_T = re.compile(r"^(?P<stage>train|val|test)/(?P<quantity>acc|acc_inst|pred_entropy)_t(?P<t>\d+)$")
OPS_KEYS = ("ops_ac", "ops_mac", "energy_uj", "fr_mean")


def define_metrics(run) -> None:
    """Step axes and summaries for a wandb ``run`` (e.g. ``WandbLogger.experiment``).

    Epoch-level keys are plotted against ``epoch`` (Lightning logs it with every ``self.log`` call;
    ``step_sync`` fills in the last epoch for keys logged without it, e.g. ``val_neuron/…``); ``val/acc``
    is summarized by its maximum and ``val/loss`` by its minimum, so the runs table shows the best epoch.
    """
    run.define_metric("epoch")
    for prefix in EPOCH_PREFIXES:
        run.define_metric(f"{prefix}*", step_metric="epoch", step_sync=True)
    run.define_metric("val/acc", step_metric="epoch", step_sync=True, summary="max")
    run.define_metric("val/loss", step_metric="epoch", step_sync=True, summary="min")
    for key in OPS_KEYS:
        run.define_metric(f"val/{key}", step_metric="epoch", step_sync=True, summary="last")


def _x_axis(key: str) -> str:
    return "epoch" if key.startswith(EPOCH_PREFIXES) else "Step"


def group_keys(keys: Iterable[str]) -> dict:
    """``{"per_t": {(prefix, quantity): {layer: [keys by t]}}, "per_layer": {prefix: [keys]},
    "grad_param": {quantity(_rel): [keys]}, "stage_t": {(stage, quantity): [keys by t]}, "scalars": [...]}``."""
    per_t: dict = defaultdict(lambda: defaultdict(list))
    per_layer: dict = defaultdict(list)
    grad_param: dict = defaultdict(list)
    stage_t: dict = defaultdict(list)
    scalars: list[str] = []
    for key in keys:
        if (m := _STAGE_T.match(key)) is not None:
            stage_t[(m["stage"], m["quantity"])].append((int(m["t"]), key))
        elif (m := _PER_T.match(key)) is not None:
            per_t[(m["prefix"], m["quantity"])][m["layer"]].append((int(m["t"]), key))
        elif (m := _GRAD_PARAM.match(key)) is not None:
            grad_param[m["quantity"] + (m["rel"] or "")].append(key)
        elif (m := _PER_LAYER.match(key)) is not None:
            per_layer[m["prefix"]].append(key)
        else:
            scalars.append(key)

    def by_t(pairs):
        return [k for _, k in sorted(pairs)]

    return {
        "per_t": {fam: {layer: by_t(v) for layer, v in layers.items()} for fam, layers in per_t.items()},
        "per_layer": dict(per_layer),
        "grad_param": dict(grad_param),
        "stage_t": {fam: by_t(v) for fam, v in stage_t.items()},
        "scalars": scalars,
    }


# (section title, [(prefix, quantity)]) of the per-layer, per-timestep families, one panel per layer
_LAYER_SECTIONS = (
    ("Firing rate per layer (train)", [("neuron", "fr")]),
    ("Firing rate per layer (validation)", [("val_neuron", "fr")]),
    ("Membrane per layer (train)", [("neuron", "v_mean"), ("neuron", "v_mean_active")]),
    ("Membrane spread per layer (train)", [("neuron", "v_std"), ("neuron", "v_std_active")]),
    ("Gradient flow through time", [("grad", "u_norm"), ("grad", "m_norm")]),
    ("Surrogate-window occupancy", [("neuron", "window")]),
)


def build_workspace(entity: str, project: str, keys: Iterable[str], name: str = "snn-lightning"):
    """The workspace object (not saved) for runs that log ``keys``; sections with no key are left out."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    keys = sorted(set(keys))
    present = set(keys)
    g = group_keys(keys)
    sections = []

    def line(title, ys, x=None):
        return wr.LinePlot(title=title, x=x or _x_axis(ys[0]), y=list(ys))

    def section(title, panels, is_open=False):
        if panels:
            sections.append(ws.Section(name=title, panels=panels, is_open=is_open))

    acc = [line(t, ys) for t, ys in (
        ("accuracy", [k for k in ("train/acc", "val/acc") if k in present]),
        ("loss", [k for k in ("train/loss_epoch", "val/loss") if k in present]),
    ) if ys]
    acc += [wr.ScalarChart(title=k, metric=k) for k in ("test/acc",) if k in present]
    section("Accuracy", acc, is_open=True)

    per_t = []
    for (stage, quantity), ys in sorted(g["stage_t"].items()):
        per_t.append(line(f"{stage} {quantity} per timestep", ys))
        if stage == "test":
            per_t.append(wr.BarPlot(title=f"test {quantity} at each timestep", metrics=list(ys)))
    section("Accuracy per timestep", per_t, is_open=True)

    for title, families in _LAYER_SECTIONS:
        layers = sorted({layer for fam in families for layer in g["per_t"].get(fam, {})})
        panels = []
        for layer in layers:
            ys = [k for fam in families for k in g["per_t"].get(fam, {}).get(layer, [])]
            panels.append(line(f"{layer}", ys))
        section(title, panels)

    params = [line(f"{prefix} per layer", sorted(g["per_layer"][prefix])) for prefix in ("mp_init", "v_threshold", "tau") if prefix in g["per_layer"]]
    section("MP-Init, V_thr, tau", params)

    grads = [line(f"dL/d{q.replace('_rel', '')}{' relative to the parameter' if q.endswith('_rel') else ''}", sorted(ks))
             for q, ks in sorted(g["grad_param"].items())]
    section("Threshold and tau gradients", grads)

    ops = []
    for stage in ("val", "test"):
        ys = [f"{stage}/{k}" for k in OPS_KEYS if f"{stage}/{k}" in present]
        if stage == "val":
            ops += [line(f"{stage}/{k}", [f"{stage}/{k}"]) for k in OPS_KEYS if f"{stage}/{k}" in present]
        else:
            ops += [wr.ScalarChart(title=k, metric=k) for k in ys]
    section("Operations and energy", ops)
    return ws.Workspace(entity=entity, project=project, name=name, sections=sections)


def panel_keys(workspace) -> dict[str, list[str]]:
    """Section name → every metric key its panels draw (for tests and ``--dry-run``)."""
    out = {}
    for sec in workspace.sections:
        ks = []
        for p in sec.panels:
            ks += list(getattr(p, "y", None) or getattr(p, "metrics", None) or [getattr(p, "metric", "")])
        out[sec.name] = ks
    return out


__all__ = ["EPOCH_PREFIXES", "OPS_KEYS", "build_workspace", "define_metrics", "group_keys", "panel_keys"]
