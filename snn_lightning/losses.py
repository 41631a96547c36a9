"""Training objectives over per-timestep logits ``[T, B, K]``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import fraction
from .errors import InvalidValue


class _SpikeLoss(nn.Module):
    """Adds an optional firing-rate penalty ``fr_weight · mean firing rate`` (sparsity regularizer)."""

    def __init__(self, fr_weight: float = 0.0):
        super().__init__()
        if float(fr_weight) < 0:
            raise InvalidValue(f"fr_weight must be >= 0, got {fr_weight}")
        self.fr_weight = float(fr_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, firing_rate: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.task_loss(logits, target)
        if self.fr_weight and firing_rate is not None:
            loss = loss + self.fr_weight * firing_rate
        return loss


class MeanCrossEntropy(_SpikeLoss):
    """CE on the time-averaged logits (the paper's and the reference code's recipe)."""

    def task_loss(self, logits, target):
        return F.cross_entropy(logits.mean(0), target)


class TETLoss(_SpikeLoss):
    """TET (Deng et al. 2022): (1 − λ)·mean_t CE(O[t], y) + λ·MSE(O, φ)."""

    def __init__(self, lamb: float = 1e-4, means: float = 1.0, fr_weight: float = 0.0):
        super().__init__(fr_weight)
        fraction("TET lamb", lamb, high_inclusive=True)
        self.lamb, self.means = float(lamb), float(means)

    def task_loss(self, logits, target):
        T = logits.shape[0]
        ce = F.cross_entropy(logits.flatten(0, 1), target.repeat(T))
        mse = F.mse_loss(logits, torch.full_like(logits, self.means))
        return (1 - self.lamb) * ce + self.lamb * mse
