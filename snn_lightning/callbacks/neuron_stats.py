"""Per-layer, per-timestep neuron statistics during training, validation and test."""
from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl

from ._logging import log_histograms, log_scalars
from ..monitor import NeuronRecorder, find_neuron_layers, neuron_metrics, pick_layers

STAGE_PREFIX = {"train": "neuron", "val": "val_neuron", "test": "test_neuron"}


class NeuronStatsCallback(pl.Callback):
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

    The latest summaries stay in ``self.last[stage]`` / ``self.last_hist[stage]`` (plain numbers)
    for :class:`FigureCallback`; ``self.history`` keeps the neuron parameters per record step.
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
    ):
        super().__init__()
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or int(every_n_steps) < 1):
            raise ValueError(f"every_n_steps must be a positive integer or null, got {every_n_steps!r}")
        if eval_max_batches is not None and int(eval_max_batches) < 1:
            raise ValueError(f"eval_max_batches must be a positive integer or null, got {eval_max_batches!r}")
        self.every_n_steps = int(every_n_steps) if every_n_steps is not None else None
        self.on_validation = bool(on_validation)
        self.on_test = bool(on_test)
        self.layers_spec = layers
        self.hist_spec = hist_layers
        self.hist_bins = int(hist_bins)
        self.hist_range = tuple(float(v) for v in hist_range)
        self.hist_relative = bool(hist_relative)
        self.hist_max_samples = hist_max_samples
        self.log_histograms = bool(log_histograms)
        self.eval_max_batches = int(eval_max_batches) if eval_max_batches is not None else None
        self.recorder: NeuronRecorder | None = None
        self.last: dict[str, dict] = {}
        self.last_hist: dict[str, dict] = {}
        self.history: dict[str, tuple[list[float], list[float]]] = {}
        self._record_step: int | None = None
        self._last_recorded: int | None = None
        self._eval_stage: str | None = None
        self._eval_batches = 0

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

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.recorder is not None:
            self.recorder.detach()
            self.recorder.reset()
        self._record_step = None
        self._eval_stage = None

    # -- training ----------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.every_n_steps is None or self.recorder is None:
            return
        step = trainer.global_step
        if step % self.every_n_steps or step == self._last_recorded:
            return
        self._record_step = self._last_recorded = step
        self.recorder.reset()
        self.recorder.attach()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._record_step is None:
            return
        self.recorder.detach()
        self._publish("train", trainer, self._record_step)
        self._record_step = None

    # -- evaluation --------------------------------------------------------------------------
    def _eval_start(self, stage: str, trainer) -> None:
        if self.recorder is None or trainer.sanity_checking:
            return
        self.recorder.detach()  # a validation inside a recorded training step cannot happen, but be safe
        self.recorder.reset()
        self.recorder.attach()
        self._eval_stage = stage
        self._eval_batches = 0

    def _eval_batch_end(self) -> None:
        if self._eval_stage is None:
            return
        self._eval_batches += 1
        if self.eval_max_batches is not None and self._eval_batches >= self.eval_max_batches:
            self.recorder.detach()

    def _eval_end(self, stage: str, trainer) -> None:
        if self._eval_stage != stage:
            return
        self.recorder.detach()
        self._publish(stage, trainer, trainer.global_step)
        self._eval_stage = None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.on_validation:
            self._eval_start("val", trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch_end()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._eval_end("val", trainer)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        if self.on_test:
            self._eval_start("test", trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._eval_batch_end()

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._eval_end("test", trainer)

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
        if stage == "train":
            for layer, st in summary.items():
                for key in ("v_threshold", "tau", "mp_init"):
                    s = self.history.setdefault(f"{key}/{layer}", ([], []))
                    s[0].append(float(step))
                    s[1].append(float(st[key]))
