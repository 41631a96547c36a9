"""Per-layer, per-timestep neuron statistics during training, validation and test."""
from __future__ import annotations

from collections.abc import Sequence

from .. import runs
from .._checks import positive_int
from ..monitor import STAGE_PREFIX, NeuronRecorder, find_neuron_layers, neuron_metrics, pick_layers
from ..monitor.metrics import PARAM_KEYS
from ._base import RecordSchedule, StageCallback
from ._logging import log_histograms, log_scalars


class NeuronStatsCallback(StageCallback):
    """Membrane statistics, firing rates and neuron parameters of every LIF layer.

    Every ``every_n_steps`` optimizer steps (at the first micro-batch of that step) the monitors are
    installed for one training forward and removed right after it; other steps run with no monitor
    at all. Logged, to every logger, at ``step = trainer.global_step`` before the update:

    * ``neuron/<layer>/{fr,v_mean,v_std,v_mean_active,v_std_active}_t<t>`` (t = 1..T) and
      ``neuron/<layer>/active_frac`` (share of (sample, neuron) pairs that fired at least once);
    * ``mp_init/<layer>``, ``v_threshold/<layer>``, ``tau/<layer>``.

    With ``on_validation``/``on_test`` the same statistics are accumulated over the whole evaluation
    epoch (or its first ``eval_max_batches`` batches) and logged as ``val_neuron/…``/``test_neuron/…``
    at its end. For ``hist_layers`` (``"auto"``: the middle layer) fixed-bin histograms of M[t] over
    active neurons are kept too (from the first ``hist_max_samples`` samples of each batch) and sent
    to wandb as ``<prefix>/<layer>/v_hist_t<t>``.

    Each stage's summary and histograms go to its stage data file ``<dirpath>/data/<stage>.json``
    (default dirpath ``<default_root_dir>/figures``), where :class:`FigureCallback` draws them from;
    the neuron parameters of every record step are appended to ``<dirpath>/data/params.jsonl`` (the
    figures' history when no CSV logger is attached). The latest summaries also stay in
    ``self.last[stage]`` / ``self.last_hist[stage]`` and the parameters in ``self.history``.
    """

    def __init__(
        self,
        every_n_steps: int | None = 50,
        on_validation: bool = True,
        on_test: bool = True,
        layers: str | int | Sequence[str] = "all",
        hist_layers: str | int | Sequence[str] | None = "auto",
        hist_bins: int = 64,
        hist_range: Sequence[float] = (-2.0, 2.0),
        hist_relative: bool = True,
        hist_max_samples: int | None = 16,
        log_histograms: bool = True,
        eval_max_batches: int | None = None,
        dirpath: str | None = None,
    ):
        super().__init__(on_validation, on_test, dirpath)
        self.schedule = RecordSchedule(every_n_steps)
        self.layers_spec = layers
        self.hist_spec = hist_layers
        self.hist_bins = positive_int("hist_bins", hist_bins)
        self.hist_range = tuple(float(v) for v in hist_range)
        self.hist_relative = bool(hist_relative)
        self.hist_max_samples = hist_max_samples
        self.log_histograms = bool(log_histograms)
        self.eval_max_batches = None if eval_max_batches is None else positive_int("eval_max_batches", eval_max_batches)
        self.recorder: NeuronRecorder | None = None
        self.last: dict[str, dict] = {}
        self.last_hist: dict[str, dict] = {}
        self.history: dict[str, tuple[list[float], list[float]]] = {}
        self._record_step: int | None = None
        self._eval_batches = 0

    @property
    def every_n_steps(self) -> int | None:
        return self.schedule.every_n_steps

    # -- setup --------------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        # rebuilt for every fit/validate/test: the module (and its neurons) may be a different one
        if self.recorder is not None:
            self.recorder.detach()
        layers = find_neuron_layers(pl_module)
        names = [n for n, _ in layers]
        chosen = set(pick_layers(names, self.layers_spec, default_count=len(names)))
        layers = [(n, m) for n, m in layers if n in chosen]
        hist = pick_layers([n for n, _ in layers], self.hist_spec, default_count=1)
        self.recorder = NeuronRecorder(layers, hist, self.hist_bins, self.hist_range, self.hist_relative, self.hist_max_samples)
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and trainer.is_global_zero and trainer.ckpt_path is None:
            runs.param_history_path(self.figures_dir(trainer)).unlink(missing_ok=True)  # a fresh run, a fresh history

    def eval_stop(self) -> None:
        if self.recorder is not None:
            self.recorder.detach()
            self.recorder.reset()
        self._record_step = None

    # -- training ----------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record_step = self.schedule.start(self.recorder, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._record_step is None:
            return
        self.recorder.detach()
        self._publish("train", trainer, self._record_step)
        self._record_step = None

    # -- evaluation --------------------------------------------------------------------------
    def eval_start(self, stage: str, trainer, pl_module) -> bool:
        if self.recorder is None:
            return False
        self.recorder.detach()  # a validation inside a recorded training step cannot happen, but be safe
        self.recorder.reset()
        self.recorder.attach()
        self._eval_batches = 0
        return True

    def eval_batch_end(self, stage: str, trainer, pl_module, outputs, batch) -> None:
        self._eval_batches += 1
        if self.eval_max_batches is not None and self._eval_batches >= self.eval_max_batches:
            self.recorder.detach()

    def eval_end(self, stage: str, trainer, pl_module) -> None:
        self.recorder.detach()
        self._publish(stage, trainer, trainer.global_step)

    # -- publishing --------------------------------------------------------------------------
    def _publish(self, stage: str, trainer, step: int) -> None:
        rec = self.recorder
        rec.all_reduce()
        summary = rec.summary()
        hists = rec.histograms()
        rec.reset()
        if not summary:
            return
        prefix = STAGE_PREFIX[stage]
        log_scalars(trainer, neuron_metrics(summary, prefix, params=(stage == "train")), step)
        if self.log_histograms and hists:
            log_histograms(trainer, hists, prefix, step)
        self.last[stage] = summary
        if hists:
            self.last_hist[stage] = hists
        self.write_stage(trainer, stage, step, neurons=summary, histograms=hists or None)
        if stage == "train":
            params = {f"{key}/{layer}": float(st[key]) for layer, st in summary.items() for key in PARAM_KEYS}
            for name, value in params.items():
                s = self.history.setdefault(name, ([], []))
                s[0].append(float(step))
                s[1].append(value)
            if trainer.is_global_zero:
                runs.append_history(runs.param_history_path(self.figures_dir(trainer)), step, params)
