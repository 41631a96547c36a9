"""The LightningModule: wraps any backbone from ``snn_lightning.models``."""
from __future__ import annotations

from typing import Any, Callable

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from .losses import MeanCrossEntropy
from .neurons import LIF


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """Static images ``[B, C, H, W]`` pass through; event frames ``[B, T, C, H, W]`` become ``[T, B, ...]``."""
    return x.transpose(0, 1) if x.dim() == 5 else x


def _drop_compiled_keys(state_dict, prefix, *_args) -> None:
    """Checkpoints of compile=true runs written before the wrapper was unregistered held every weight
    twice (``_compiled._orig_mod.*``); the copy is dropped on load."""
    for key in [k for k in state_dict if k.startswith(prefix + "_compiled.")]:
        del state_dict[key]


def cumulative_mean(logits: torch.Tensor) -> torch.Tensor:
    """``out[t]`` = mean of logits 1..t: the prediction an early exit at t would make."""
    steps = torch.arange(1, logits.shape[0] + 1, device=logits.device, dtype=logits.dtype)
    return logits.cumsum(0) / steps.view(-1, *([1] * (logits.dim() - 1)))


class SNNModule(pl.LightningModule):
    """Trains a spiking network that returns per-timestep logits ``[T, B, K]``.

    ``optimizer`` is a factory ``f(param_groups) -> Optimizer`` (a Hydra partial without weight
    decay): the module gives each parameter group its own ``weight_decay``, the neurons' τ/V_thr
    only when ``neuron_weight_decay`` (the paper's code decays them too, hence the default).

    Logs ``train/loss``, ``train/acc``, ``{val,test}/loss``, ``{val,test}/acc`` and the accuracy of
    the prediction from the mean of logits 1..t as ``{val,test}/acc_t<t>``.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        T: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        loss: nn.Module | None = None,
        weight_decay: float = 0.0,
        neuron_weight_decay: bool = True,
        compile: bool = False,
        config: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "loss"])
        self.net = net
        self.T = int(T)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.criterion = loss if loss is not None else MeanCrossEntropy()
        self.weight_decay = float(weight_decay)
        self.neuron_weight_decay = neuron_weight_decay
        # not registered as a submodule: it wraps self.net, whose parameters are already the module's,
        # and a registered wrapper would put every weight in the checkpoint twice (`_compiled._orig_mod.*`)
        object.__setattr__(self, "_compiled", torch.compile(net) if compile else None)
        self._lifs = [m for m in net.modules() if isinstance(m, LIF)]
        self._register_load_state_dict_pre_hook(_drop_compiled_keys)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_t = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in range(self.T))
        self.test_acc_t = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in range(self.T))
        self._fr_terms: list[torch.Tensor] = []
        self.last_train_loss: torch.Tensor | None = None
        if getattr(self.criterion, "fr_weight", 0.0):
            for m in self.net.modules():
                if isinstance(m, LIF):
                    m.register_forward_hook(self._collect_firing_rate)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a recording step (a monitor installed by the observability callbacks) runs eagerly, so the
        # hooks never enter the compiled graph and switching them on and off costs no recompilation
        recording = any(lif._recording for lif in self._lifs)
        use_compiled = self._compiled is not None and self.training and not recording
        return (self._compiled if use_compiled else self.net)(to_time_major(x))

    def _collect_firing_rate(self, lif: LIF, _inp, out: torch.Tensor) -> None:
        s = out / lif.v_threshold if lif.emits_scaled else out
        self._fr_terms.append(s.mean())

    def _loss(self, logits, y):
        fr = None
        if self._fr_terms:
            fr = torch.stack(self._fr_terms).mean()
            self._fr_terms = []
        return self.criterion(logits, y, fr)

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        self.last_train_loss = loss.detach()  # read by callbacks.finite.FiniteCheck before the optimizer step
        self.train_acc(logits.mean(0), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=y.shape[0])
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=y.shape[0])
        return loss

    def _eval_step(self, batch, stage: str):
        x, y = batch
        logits = self(x)
        self._fr_terms = []
        loss = self.criterion(logits, y)
        acc, acc_t = (self.val_acc, self.val_acc_t) if stage == "val" else (self.test_acc, self.test_acc_t)
        acc(logits.mean(0), y)
        n = y.shape[0]
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=n)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=True, batch_size=n)
        for t, pred in enumerate(cumulative_mean(logits)):
            acc_t[t](pred, y)
            self.log(f"{stage}/acc_t{t + 1}", acc_t[t], on_epoch=True, batch_size=n)
        return logits

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    # -- optimization ----------------------------------------------------------------------------
    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        neuron, other = [], []
        for module in self.net.modules():
            bucket = neuron if isinstance(module, LIF) else other
            bucket.extend(p for p in module.parameters(recurse=False) if p.requires_grad)
        groups = [{"params": other, "weight_decay": weight_decay}]
        if neuron:
            groups.append({"params": neuron, "weight_decay": weight_decay if self.neuron_weight_decay else 0.0})
        return groups

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameter_groups(self.weight_decay))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
