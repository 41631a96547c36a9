"""Stop a run at the first non-finite loss, gradient or parameter, naming where it happened.

A diverged run (e.g. ``optimizer.lr=1e3``) otherwise trains on ``nan`` for the rest of the epoch and
then either crashes somewhere unrelated (a histogram of NaNs) or "finishes" at chance accuracy.

* Before each optimizer step the loss and every gradient are checked (one device sync: the norms of
  all gradients are reduced together). A non-finite step is skipped (gradients dropped, so the
  optimizer leaves the parameters alone); after ``patience`` consecutive skipped steps (0: at the
  first) the run stops with :class:`NonFiniteError`.
* After each step the parameters and buffers (BatchNorm statistics, MP-Init means) are checked, so
  a step that turned the weights non-finite stops the run before any checkpoint could save them:
  the last good ``last.ckpt`` stays.
"""
from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Callback

from ..errors import UserError


class NonFiniteError(UserError):
    """Training produced a non-finite loss, gradient or parameter (the message says which and where)."""


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    tensors = [t for t in tensors if t is not None and t.numel() and t.is_floating_point()]
    if not tensors:
        return True
    norms = torch._foreach_norm([t.detach() for t in tensors], ord=math.inf)
    return bool(torch.isfinite(torch.stack(norms)).all())


def first_non_finite(named: list[tuple[str, torch.Tensor | None]]) -> tuple[str, float] | None:
    """``(name, a bad value)`` of the first tensor with a NaN or ±inf, or None."""
    for name, t in named:
        if t is None or not t.is_floating_point():
            continue
        bad = ~torch.isfinite(t.detach())
        if bool(bad.any()):
            return name, float(t.detach()[bad].flatten()[0])
    return None


class FiniteCheck(Callback):
    """Raise :class:`NonFiniteError` at the first non-finite loss/gradient (after ``patience`` skipped steps)."""

    def __init__(self, patience: int = 0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"nonfinite_patience must be an integer >= 0, got {patience!r}")
        self.patience = patience
        self.bad_steps = 0

    def _where(self, trainer) -> str:
        return f"step {trainer.global_step}, epoch {trainer.current_epoch}"

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss = getattr(pl_module, "last_train_loss", None)
        params = [(n, p) for n, p in pl_module.named_parameters() if p.grad is not None]
        if _all_finite([p.grad for _, p in params] + ([loss] if loss is not None else [])):
            self.bad_steps = 0
            return
        self.bad_steps += 1
        culprit = first_non_finite([(n, p.grad) for n, p in params])
        loss_text = f"loss {float(loss):g}" if loss is not None else "loss n/a"
        grad_text = f"first non-finite gradient in {culprit[0]} ({culprit[1]:g})" if culprit else "all gradients finite"
        if self.bad_steps > self.patience:
            raise NonFiniteError(
                f"non-finite training at {self._where(trainer)}: {loss_text}, {grad_text}; "
                f"the run is stopped, its last good checkpoint kept (lower optimizer.lr, or raise nonfinite_patience)"
            )
        optimizer.zero_grad(set_to_none=True)  # skip this step: the optimizer leaves parameters without grads alone

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tensors = list(pl_module.parameters()) + list(pl_module.buffers())
        if _all_finite(tensors):
            return
        culprit = first_non_finite(list(pl_module.named_parameters()) + list(pl_module.named_buffers()))
        name, value = culprit if culprit else ("?", math.nan)
        raise NonFiniteError(
            f"non-finite parameters after {self._where(trainer)}: first in {name} ({value:g}); "
            f"the run is stopped, its last good checkpoint kept (lower optimizer.lr)"
        )
