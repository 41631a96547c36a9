"""read → summarize → report: one sweep folder in, its tables and figures out."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..plots import save_figure
from . import figures, report
from .read import DEFAULT_METRIC, read_epoch_metrics, read_sweep
from .summary import plot_spec, summarize, swept_keys, training_curves

DPI = 120


def aggregate(paths: Sequence[Path], out: Path | None = None, group_by: list[str] | None = None,
              metric: str = DEFAULT_METRIC, x: str | None = None, line: str | None = None,
              panels: list[str] | None = None, plots: bool = True, title: str | None = None,
              paired: list[str] | None = None, curves_at: float | None = 1.0) -> dict:
    """Read the sweep(s), write the CSVs, the Markdown table and the plots; return what was written:
    ``{"jobs", "groups", "keys", "markdown", "written": {name: path}, "curves"}``."""
    paths = [Path(p) for p in paths]
    jobs = read_sweep(paths)
    keys = list(group_by) if group_by else swept_keys(jobs)
    groups = summarize(jobs, keys, metric)
    study = next((j.study for j in jobs if j.study), {})
    title = title or (f"{study.get('name', paths[0].name)} ({study.get('scale', '?')} scale)" if study else paths[0].name)
    spec = plot_spec(jobs, keys, x, line, panels)
    sections = [report.robustness_markdown(groups, keys, spec)] if spec else []
    sections += [report.paired_markdown(jobs, keys, key, metric) for key in paired or []]  # checks keys
    out = Path(out) if out else paths[0] / "aggregate"
    out.mkdir(parents=True, exist_ok=True)
    written = {"jobs_csv": out / "jobs.csv", "summary_csv": out / "summary.csv", "summary_md": out / "summary.md"}
    report.write_jobs_csv(written["jobs_csv"], jobs, keys)
    report.write_summary_csv(written["summary_csv"], groups, keys)
    md = report.summary_markdown(groups, keys, jobs, metric, title, "\n".join(sections))
    written["summary_md"].write_text(md)
    curves = None
    if curves_at is not None:
        curves = training_curves(jobs, keys, lambda j, cols: read_epoch_metrics(j.path, cols), curves_at, line, panels)
    if plots:
        if spec:
            written["accuracy_vs"] = save_figure(figures.plot_accuracy_vs(groups, keys, spec, metric, title),
                                                 out / f"accuracy_vs_{spec[0].split('.')[-1]}.png", dpi=DPI)
        if any(g.T for g in groups):
            written["per_timestep"] = save_figure(figures.plot_per_timestep(groups, keys, title, panels=spec[2] if spec else None),
                                                  out / "accuracy_per_timestep.png", dpi=DPI)
        if curves:
            written["training_curves"] = save_figure(figures.plot_training_curves(curves, title),
                                                     out / "training_curves.png", dpi=DPI)
    return {"jobs": jobs, "groups": groups, "keys": keys, "markdown": md, "written": written, "curves": curves}
