"""The run folder's contract, written once: file names, JSON files, status, the CSV metrics log.

Every writer (the entry points, the callbacks) and every reader (``snn-analyze``, ``snn-aggregate``,
the figures) goes through this module, so a file name or a status word lives in one place. Layout of
a run folder (``snn-train`` makes one per run, a multirun one per job)::

    <run>/
      .hydra/{config,overrides,hydra}.yaml   the composed config, the overrides, Hydra's own config
      status.json      {"status": running|finished|failed|interrupted, "started": ..., "pid": ..., ...}
      .lock            held (flock) by the live process that runs in the folder
      metrics.json     {"metrics": {...final scalars...}, "best_checkpoint": ...}
      error.log        traceback of a failed run
      train.log        the run's log
      checkpoints/     best-k *.ckpt and last.ckpt
      csv/             Lightning's CSVLogger: csv/version_*/metrics.csv (sparse rows)
      figures/         PNGs; figures/data/<stage>.json the numbers behind them
      wandb/           offline wandb run
"""

from .files import *  # noqa: F403
from .files import Series, as_float, read_hydra_file, read_json, write_json  # noqa: F401
from .liveness import *  # noqa: F403
from .metrics_csv import *  # noqa: F403
from .stage import *  # noqa: F403
from .stage import _val_acc  # noqa: F401
