"""Sweeps: a Hydra multirun folder in, the paper-style tables (mean ± std over seeds) and figures out.

    read.py      job folders -> Job (config, overrides, status, final metrics, membrane drift),
                 every file through snn_lightning.runs, the drift through snn_lightning.monitor.drift
    summary.py   Job list -> Group per configuration (mean ± sample std), the Fig. 9 view, paired
                 differences, training curves; MEASURES lists the per-job numbers besides accuracy
    report.py    jobs.csv, summary.csv, summary.md
    figures.py   the three figures, through snn_lightning.plots' object API
    pipeline.py  aggregate(): read -> summarize -> report (what ``snn-aggregate`` runs)

Plain Python rather than pandas: a sweep holds tens to hundreds of jobs, the grouping needs the
sweep's run order of non-numeric values (tdbn, tebn, tab) and loose equality of config values
('1' == 1.0, 'on' == True), and the committed tables must come out to the last digit; a DataFrame
would replace a dozen lines of ``setdefault`` grouping and add a large dependency to the CLI.
"""
from __future__ import annotations

from .pipeline import aggregate
from .read import DEFAULT_METRIC, AggregateError, Job, parse_override, read_sweep
from .summary import MEASURES, Group, Measure, same_value, summarize

__all__ = ["DEFAULT_METRIC", "MEASURES", "AggregateError", "Group", "Job", "Measure", "aggregate", "parse_override",
           "read_sweep", "same_value", "summarize"]
