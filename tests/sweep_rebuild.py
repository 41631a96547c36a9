"""Rebuild the job folders behind a committed ``docs/results/<name>/`` from its ``jobs.csv``.

The sweeps' own job folders are not committed (see docs/results/README.md for how they were made),
but ``jobs.csv`` holds everything ``snn-aggregate`` read from them except the run order and the raw
membrane columns of ``csv/metrics.csv``. This module writes, per row, a folder that the aggregator
reads back to the same numbers:

* ``.hydra/overrides.yaml`` from the folder name (Hydra's ``override_dirname``), the swept keys first
  in the order of the ``jobs.csv`` header (the order Hydra wrote them);
* ``.hydra/config.yaml`` with the sweep's ``study`` block (``multirun_sweeps/sweep/<sweep>.yaml``,
  with its paper numbers and plot axes) at the given scale;
* ``status.json`` (status, error, seconds, and a ``started`` stamp that replays the run order: the
  group order of the committed ``summary.csv``, which is how the aggregator ordered the values);
* ``metrics.json`` from the metric columns;
* ``csv/metrics.csv`` with ``test_neuron/<layer>/v_mean[_active]_t<t>`` columns laid out so that
  the drift (mean over layers of |v[1] − v[T]|) and the per-timestep means come out as the very
  same floats: the one layer with both ends holds 0 and D (|0 − D| = D exactly), and layers with a
  NaN at one end (left out of the drift, kept in the per-timestep mean) balance the sums so that each
  mean is an exact power-of-two division.

Not rebuilt: the per-epoch training curves (only their PNG is committed) and the exact ``seconds``
(``jobs.csv`` keeps two decimals, so ``summary.csv``'s ``seconds_mean/std`` differ).
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "results"
SWEEPS = REPO / "multirun_sweeps" / "sweep"
V_MEAN_T = re.compile(r"^v_mean_t(\d+)$")
NAN = float("nan")

# docs/results/README.md "Commands": result folder -> (sweep, scale, snn-aggregate options)
COMMANDS = {
    "fig9_smoke": ("fig9", "smoke", ["--paired", "sg"]),
    "fig9_digits": ("fig9", "digits", ["--paired", "sg"]),
    "table1_smoke": ("table1", "smoke", ["--paired", "mp_init"]),
    "table1_smoke_10seeds": ("table1", "smoke", ["--paired", "mp_init", "--title", "table1 (smoke scale, 10 seeds)"]),
    "table1_digits": ("table1", "digits", ["--paired", "mp_init"]),
    "table2_smoke": ("table2", "smoke", ["--paired", "mp_init", "sg"]),
    "timesteps_smoke": ("timesteps", "smoke", []),
}


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _num(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def membrane_rows(drift: float | None, drift_active: float | None, v_mean: dict[int, float]) -> dict[str, float]:
    """``test_neuron/...`` columns that give back ``drift``, ``drift_active`` and ``v_mean_t<t>`` exactly."""
    cols: dict[str, float] = {}
    ts = sorted(v_mean)
    if drift is not None and ts:
        t1, tT = ts[0], ts[-1]
        mid = ts[1:-1]
        # layer a: both ends (the only one in the drift); NaN in between
        cols.update({f"test_neuron/a/v_mean_t{t}": NAN for t in ts})
        cols[f"test_neuron/a/v_mean_t{t1}"], cols[f"test_neuron/a/v_mean_t{tT}"] = 0.0, drift
        # layer b: first step and the middle; NaN at the end -> (0 + 2 m1) / 2 = m1, middle m_t / 1
        cols.update({f"test_neuron/b/v_mean_t{t}": v_mean[t] for t in mid})
        cols[f"test_neuron/b/v_mean_t{t1}"], cols[f"test_neuron/b/v_mean_t{tT}"] = 2 * v_mean[t1], NAN
        # layers c, e, f: the last step only -> (D - D + 2 mT + 2 mT) / 4 = mT
        for name, v in (("c", -drift), ("e", 2 * v_mean[tT]), ("f", 2 * v_mean[tT])):
            cols.update({f"test_neuron/{name}/v_mean_t{t}": NAN for t in ts})
            cols[f"test_neuron/{name}/v_mean_t{tT}"] = v
    if drift_active is not None:
        cols["test_neuron/a/v_mean_active_t1"], cols["test_neuron/a/v_mean_active_t2"] = 0.0, drift_active
    return cols


def rebuild(result: str, root: Path) -> tuple[Path, list[str]]:
    """Write the job folders of ``docs/results/<result>`` under ``root``; return (root, aggregate args)."""
    sweep, scale, options = COMMANDS[result]
    header, rows = read_rows(RESULTS / result / "jobs.csv")
    _, groups = read_rows(RESULTS / result / "summary.csv")
    keys = header[header.index("error") + 1:header.index("seed")]
    first = header.index("seconds") + 1
    derived = [c for c in header[first:] if c in ("drift", "drift_active") or V_MEAN_T.match(c)]
    metric_cols = [c for c in header[first:] if c not in derived]
    study = dict(yaml.safe_load((SWEEPS / f"{sweep}.yaml").read_text())["study"], scale=scale)
    group_rank = {tuple(g[k] for k in keys): i for i, g in enumerate(groups)}
    order = sorted(rows, key=lambda r: (group_rank[tuple(r[k] for k in keys)], r["job"]))
    started = {r["job"]: 1e9 + i for i, r in enumerate(order)}
    for r in rows:
        job = root / r["job"]
        (job / ".hydra").mkdir(parents=True)
        named = dict(kv.split("=", 1) for kv in r["job"].split(","))
        overrides = [f"{k}={named[k]}" for k in keys] + [f"{k}={v}" for k, v in named.items() if k not in keys]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"+sweep={sweep}", f"+scale={scale}"]))
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": int(r["seed"]), "study": study, "paper": None}))
        status = {"status": r["status"], "started": started[r["job"]]}
        if r["error"]:
            status["error"] = r["error"]
        if r["seconds"]:
            status["seconds"] = float(r["seconds"])
        (job / "status.json").write_text(json.dumps(status))
        if r["status"] != "finished":
            continue
        metrics = {c: float(r[c]) for c in metric_cols if r[c] != ""}
        (job / "metrics.json").write_text(json.dumps({"metrics": metrics}))
        v_mean = {int(m[1]): float(r[c]) for c in derived if (m := V_MEAN_T.match(c)) and r[c] != ""}
        cols = membrane_rows(_num(r.get("drift", "")), _num(r.get("drift_active", "")), v_mean)
        if cols:
            (job / "csv" / "version_0").mkdir(parents=True)
            with (job / "csv" / "version_0" / "metrics.csv").open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["epoch", "step", *cols])
                w.writeheader()
                w.writerow({"epoch": 3, "step": 60, **{k: ("nan" if math.isnan(v) else repr(v)) for k, v in cols.items()}})
    return root, options
