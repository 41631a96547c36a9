"""Gradient telemetry on recording steps: surrogate-window occupancy, ∂L/∂M[t], ∂L/∂U[t], ∂L/∂V_thr, ∂L/∂τ."""
from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl

from ..monitor import find_neuron_layers, pick_layers
from ..telemetry import GradientRecorder, gradient_metrics
from ._base import RecordSchedule, clear_stale_stage_data, figures_dir
from ._logging import log_images, log_scalars


class GradientTelemetryCallback(pl.Callback):
    """Every ``every_n_steps`` optimizer steps, records one training step with a
    :class:`~snn_lightning.telemetry.GradientRecorder` and logs ``neuron/<layer>/window_t<t>``,
    ``grad/<layer>/{m_norm,u_norm}_t<t>`` and ``grad/<layer>/{v_threshold,tau}[_rel]``.

    Keeps ``(step, summary)`` of every recorded step in ``self.history`` (plain numbers), writes the
    latest to the train stage data file (part ``gradients``) and, at the end of fit, draws the
    "gradient flow through time" figure ``<dirpath>/gradient_flow.png`` (default dirpath
    ``<default_root_dir>/figures``). Put it after ``NeuronStatsCallback`` in the callback list: it
    chains onto the monitor that one installs.
    """

    def __init__(self, every_n_steps: int | None = 50, layers: str | int | Sequence[str] = "all",
                 dirpath: str | None = None, log_to_wandb: bool = True):
        super().__init__()
        self.schedule = RecordSchedule(every_n_steps)
        self.layers_spec = layers
        self.dirpath = None if dirpath is None else str(dirpath)
        self.log_to_wandb = bool(log_to_wandb)
        self.recorder: GradientRecorder | None = None
        self.history: list[tuple[int, dict]] = []
        self._record_step: int | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._stop()
        clear_stale_stage_data(trainer, self.dirpath, stage)
        layers = find_neuron_layers(pl_module)
        chosen = set(pick_layers([n for n, _ in layers], self.layers_spec, default_count=len(layers)))
        self.recorder = GradientRecorder([(n, m) for n, m in layers if n in chosen])

    def _stop(self) -> None:
        if self.recorder is not None:
            self.recorder.detach()
            self.recorder.reset()
        self._record_step = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record_step = self.schedule.start(self.recorder, trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._record_step is not None:
            self.recorder.record_parameters()  # after unscaling (mixed precision), before zero_grad

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._record_step is None:
            return
        step, self._record_step = self._record_step, None
        self.recorder.detach()
        summary = self.recorder.summary()
        self.recorder.reset()
        if summary:
            log_scalars(trainer, gradient_metrics(summary), step)
            self.history.append((step, summary))

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.history or not trainer.is_global_zero:
            return
        from .. import runs
        from ..plots import save_figure
        from ..telemetry_plots import plot_gradient_flow

        out = figures_dir(trainer, self.dirpath)
        step, latest = self.history[-1]
        runs.write_stage_data(runs.stage_data_path(out, "train"), "train", step, gradients=latest)
        path = save_figure(plot_gradient_flow(self.history), out / "gradient_flow.png")
        if self.log_to_wandb:
            log_images(trainer, {"gradient_flow": path})
