"""Class predictions, accuracy and logit PCA at every timestep of validation and test epochs."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..monitor import PredictionRecorder
from ._base import StageCallback
from ._logging import log_scalars


class TimestepPredictionCallback(StageCallback):
    """Collects, over each validation/test epoch, what the network predicts at every timestep.

    The per-timestep logits ``[T, B, K]`` are taken from the module's forward through a forward
    hook that exists only during evaluation epochs, and reduced at once (per-t class counts and
    correct counts on the device). Logged at the epoch end, to every logger:

    * ``<stage>/acc_inst_t<t>``: accuracy of the logits of step t alone (the module's
      ``<stage>/acc_t<t>`` is the early exit, the mean of logits 1..t);
    * ``<stage>/pred_entropy_t<t>``: entropy of the distribution of predicted classes at t divided
      by log K (1 = balanced; near 0 = collapsed onto one class, the paper's Fig. 7 symptom).

    With ``pca_classes`` (a count n → classes 0..n-1, or a list) the logits of up to
    ``pca_max_samples`` samples of those classes are kept for a per-timestep PCA (Figs. 4-5).
    Both go to the stage data file ``<dirpath>/data/<stage>.json`` (see :class:`StageCallback`) for
    :class:`FigureCallback`; ``self.last[stage]`` keeps ``{"predictions": …, "pca": …}`` too.
    """

    def __init__(
        self,
        on_validation: bool = True,
        on_test: bool = True,
        pca_classes: int | Sequence[int] | None = 4,
        pca_max_samples: int = 256,
        dirpath: str | None = None,
    ):
        super().__init__(on_validation, on_test, dirpath)
        self.pca_classes = list(pca_classes) if isinstance(pca_classes, Sequence) and not isinstance(pca_classes, str) else pca_classes
        self.recorder = PredictionRecorder(pca_classes=self.pca_classes, pca_max_samples=pca_max_samples)
        self.pca_max_samples = self.recorder.pca_max_samples
        self.last: dict[str, dict] = {}
        self._handle = None
        self._pending: torch.Tensor | None = None

    def _hook(self, module, args, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 3:
            self._pending = output.detach()

    def eval_start(self, stage: str, trainer, pl_module) -> None:
        self.eval_stop()
        self.recorder.reset()
        self._handle = pl_module.register_forward_hook(self._hook)

    def eval_batch_end(self, stage: str, trainer, pl_module, outputs, batch) -> None:
        logits, self._pending = self._pending, None
        if logits is None:
            return
        y = batch[1] if isinstance(batch, (tuple, list)) else batch["y"]
        self.recorder.update(logits, y.to(logits.device))

    def eval_end(self, stage: str, trainer, pl_module) -> None:
        self.eval_stop()
        rec = self.recorder
        rec.all_reduce()
        if rec.total == 0:
            return
        summary = rec.summary()
        pca = rec.pca()
        rec.reset()
        metrics = {}
        for t, v in enumerate(summary["accuracy"]["instant"], start=1):
            metrics[f"{stage}/acc_inst_t{t}"] = v
        for t, v in enumerate(summary["entropy"]["instant"], start=1):
            metrics[f"{stage}/pred_entropy_t{t}"] = v
        log_scalars(trainer, metrics, trainer.global_step)
        self.last[stage] = {"predictions": summary, "pca": pca}
        self.write_stage(trainer, stage, predictions=summary, pca=pca)

    def eval_stop(self) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
        self._pending = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self.recorder.reset()
