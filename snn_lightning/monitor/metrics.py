"""What the recorders' summaries mean as numbers: flat metric keys, the temporal drift, firing rate.

A *summary* is ``{layer: stats}`` as :meth:`NeuronRecorder.summary` returns it; :func:`drift` and
:func:`overall_firing_rate` also accept one rebuilt from logged columns by :func:`summary_from_metrics`
(what ``snn-aggregate`` has: the CSV log of a finished job), so every consumer computes them the
same way.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

# the per-timestep statistics of a layer (each a list over t = 1..T)
TIME_STATS = ("fr", "v_mean", "v_std", "v_mean_active", "v_std_active")
PARAM_KEYS = ("mp_init", "v_threshold", "tau")
ACTIVE_FRAC = "active_frac"
# metric-name prefix of each stage's neuron statistics (``neuron/…``, ``val_neuron/…``, ``test_neuron/…``)
STAGE_PREFIX = {"train": "neuron", "val": "val_neuron", "test": "test_neuron"}


def time_stat_key(prefix: str, layer: str, stat: str, t: int) -> str:
    """The metric name of one per-timestep statistic: ``<prefix>/<layer>/<stat>_t<t>`` (t from 1)."""
    return f"{prefix}/{layer}/{stat}_t{t}"


def _time_stat_pattern(prefix: str) -> re.Pattern:
    stats = "|".join(sorted(TIME_STATS, key=len, reverse=True))
    return re.compile(rf"^{re.escape(prefix)}/(?P<layer>.+)/(?P<stat>{stats})_t(?P<t>\d+)$")


def neuron_metrics(summary: Mapping[str, Mapping], prefix: str = "neuron", params: bool = True) -> dict[str, float]:
    """Flat metric dict: ``<prefix>/<layer>/{fr,v_mean,v_std,v_mean_active,v_std_active}_t<t>``,
    ``<prefix>/<layer>/active_frac`` (share of (sample, neuron) pairs that fired at least once) and,
    with ``params``, ``mp_init/<layer>``, ``v_threshold/<layer>``, ``tau/<layer>``."""
    out: dict[str, float] = {}
    for layer, st in summary.items():
        for key in TIME_STATS:
            for t, v in enumerate(st[key], start=1):
                out[time_stat_key(prefix, layer, key, t)] = float(v)
        out[f"{prefix}/{layer}/{ACTIVE_FRAC}"] = float(st["active_fraction"])
        if params:
            for key in PARAM_KEYS:
                out[f"{key}/{layer}"] = float(st[key])
    return out


def summary_from_metrics(metrics: Mapping[str, float], prefix: str = "test_neuron") -> dict[str, dict[str, list[float]]]:
    """The per-timestep part of a summary rebuilt from flat metrics (the inverse of :func:`neuron_metrics`).

    ``{layer: {stat: [value at t=1, …, t=T_layer]}}`` for the statistics that were logged; ``T_layer``
    is the largest t logged for that layer and a timestep missing from ``metrics`` is NaN, so the
    NaN rules of :func:`drift` apply to incomplete logs too. Layers keep the order of first appearance.
    """
    pattern = _time_stat_pattern(prefix)
    found: dict[str, dict[str, dict[int, float]]] = {}
    for key, value in metrics.items():
        m = pattern.match(key)
        if m:
            found.setdefault(m["layer"], {}).setdefault(m["stat"], {})[int(m["t"])] = float(value)
    out: dict[str, dict[str, list[float]]] = {}
    for layer, stats in found.items():
        T = max(t for per_t in stats.values() for t in per_t)
        out[layer] = {stat: [per_t.get(t, math.nan) for t in range(1, T + 1)] for stat, per_t in stats.items()}
    return out


def layer_drift(series) -> float:
    """|E[M[1]] − E[M[T]]| of one layer from its per-timestep means (the paper's temporal drift).

    NaN when the series has fewer than two timesteps (no drift to speak of) or when either end is NaN
    (e.g. the active mean of a layer that never fired, or a timestep missing from a log).
    """
    if series is None or len(series) < 2:
        return math.nan
    first, last = float(series[0]), float(series[-1])
    return abs(first - last)  # NaN in, NaN out


def _mean_finite(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def drift(summary: Mapping[str, Mapping]) -> dict:
    """The temporal drift of the mean membrane, |E[M[1]] − E[M[T]]|, defined once for every consumer.

    The number MP-Init is meant to lower (paper Sec. 4.3, Fig. 1): with U[0] = 0 the membrane moves
    towards its stationary distribution over the first timesteps, so E[M[1]] differs from E[M[T]].

    Per layer (:func:`layer_drift`), over active (sample, neuron) pairs (``v_mean_active``) and over
    all of them (``v_mean``); a layer whose summary lacks a statistic counts as NaN for it. The means
    over layers (``mean_active``, ``mean_all``) leave out the layers whose drift is NaN (NaN at t=1 or
    t=T, or T < 2), and are NaN when no layer is left. Returns
    ``{"per_layer": {layer: {"active", "all"}}, "mean_active", "mean_all"}``.
    """
    per_layer = {
        layer: {"active": layer_drift(st.get("v_mean_active")), "all": layer_drift(st.get("v_mean"))}
        for layer, st in summary.items()
    }
    return {
        "per_layer": per_layer,
        "mean_active": _mean_finite(d["active"] for d in per_layer.values()),
        "mean_all": _mean_finite(d["all"] for d in per_layer.values()),
    }


def overall_firing_rate(summary: Mapping[str, Mapping]) -> list[float]:
    """Firing rate per t over every neuron of every layer (weighted by layer size)."""
    if not summary:
        return []
    T = len(next(iter(summary.values()))["fr"])
    total = sum(st["neurons"] for st in summary.values())
    return [sum(st["fr"][t] * st["neurons"] for st in summary.values()) / max(total, 1.0) for t in range(T)]
