"""The one reader of Lightning's sparse ``metrics.csv``."""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .files import CSV_DIR, METRICS_CSV, Series, as_float


# -- the CSV metrics log ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricsLog:
    """Lightning's ``metrics.csv``: sparse rows (each logging call fills only its own columns).

    ``rows`` keeps, per CSV row, the numeric cells that are present (``step`` and ``epoch`` too).
    """

    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def series(self, key: str, x: str = "step") -> Series:
        """``(x values, values)`` of the rows that have ``key`` (x is NaN where a row lacks it)."""
        xs, vs = [], []
        for row in self.rows:
            if key in row:
                xs.append(row.get(x, math.nan))
                vs.append(row[key])
        return xs, vs

    def history(self) -> dict[str, Series]:
        """Every column but ``step``/``epoch`` against the step: ``{name: (steps, values)}``."""
        return {k: self.series(k) for k in self.columns if k not in ("step", "epoch")}

    def last(self, key: str) -> float | None:
        """The last value logged under ``key``."""
        for row in reversed(self.rows):
            if key in row:
                return row[key]
        return None

    def last_values(self, keys: Iterable[str]) -> dict[str, float]:
        """``{key: last value}`` for the keys that were logged."""
        out = {}
        for k in keys:
            v = self.last(k)
            if v is not None:
                out[k] = v
        return out

    def per_epoch(self, key: str) -> dict[int, float]:
        """The last value of ``key`` in each epoch, ``{epoch: value}``."""
        out: dict[int, float] = {}
        for row in self.rows:
            if key in row and "epoch" in row and math.isfinite(row["epoch"]):
                out[int(row["epoch"])] = row[key]
        return out


def read_metrics_csv(path: str | os.PathLike) -> MetricsLog:
    """Parse one ``metrics.csv`` (raises OSError when it cannot be read)."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row = {}
            for k, v in raw.items():
                fv = as_float(v)
                if k and fv is not None:
                    row[k] = fv
            rows.append(row)
    return MetricsLog(rows)


def find_metrics_csv(run_dir: str | os.PathLike) -> Path | None:
    """The run's CSV log: the newest ``csv/**/metrics.csv``, else any ``metrics.csv`` outside
    ``analysis``/``aggregate`` folders; None when there is none."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob(f"{CSV_DIR}/**/{METRICS_CSV}"))
    if not files:
        files = [p for p in sorted(run_dir.rglob(METRICS_CSV))
                 if not ({"analysis", "aggregate"} & set(p.relative_to(run_dir).parts[:-1]))]
    return files[-1] if files else None


def read_run_metrics_csv(run_dir: str | os.PathLike) -> MetricsLog:
    """The run's CSV log, or an empty one when there is none (or it cannot be read)."""
    path = find_metrics_csv(run_dir)
    if path is None:
        return MetricsLog()
    try:
        return read_metrics_csv(path)
    except OSError:
        return MetricsLog()

