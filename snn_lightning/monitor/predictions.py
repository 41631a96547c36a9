"""Class predictions and logits at every timestep, and the PCA behind Figs. 4-5 (plain PyTorch)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import int_at_least
from ._dist import all_reduce_stores, is_distributed


class PredictionRecorder:
    """Class-prediction histograms and accuracy at every timestep, plus logits of a few classes for PCA.

    ``instant``: the prediction from the logits of step t alone; ``cumulative``: from the mean of
    logits 1..t (an early exit at t, the module's ``acc_t<t>``). Counts live on the logits' device.
    """

    def __init__(self, num_classes: int | None = None, pca_classes: int | Sequence[int] | None = 4, pca_max_samples: int = 256):
        self.num_classes = num_classes
        self.pca_classes = pca_classes
        self.pca_max_samples = int_at_least("pca_max_samples", pca_max_samples, 0)
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, torch.Tensor] = {}
        self.correct: dict[str, torch.Tensor] = {}
        self.total = 0
        self._pca: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pca_n = 0

    def _classes(self, K: int) -> list[int]:
        spec = self.pca_classes
        if not spec:
            return []
        if isinstance(spec, int):
            return list(range(min(spec, K)))
        return [int(c) for c in spec if 0 <= int(c) < K]

    @torch.no_grad()
    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        logits = logits.detach()
        T, B, K = logits.shape
        if self.num_classes is None:
            self.num_classes = K
        steps = torch.arange(1, T + 1, device=logits.device, dtype=logits.dtype).view(T, 1, 1)
        preds = {"instant": logits.argmax(-1), "cumulative": (logits.cumsum(0) / steps).argmax(-1)}
        for mode, p in preds.items():
            c = torch.zeros(T, K, dtype=torch.long, device=logits.device)
            c.scatter_add_(1, p, torch.ones_like(p))
            ok = (p == y.view(1, B)).sum(1)
            if mode in self.counts:
                self.counts[mode] += c
                self.correct[mode] += ok
            else:
                self.counts[mode], self.correct[mode] = c, ok
        self.total += B
        classes = self._classes(K)
        if classes and self._pca_n < self.pca_max_samples:
            keep = torch.isin(y, torch.tensor(classes, device=y.device))
            idx = keep.nonzero().flatten()[: self.pca_max_samples - self._pca_n]
            if idx.numel():
                self._pca.append((logits[:, idx].float().clone(), y[idx].clone()))
                self._pca_n += idx.numel()

    def all_reduce(self) -> None:
        """Sum the counts and the sample total across processes (every rank calls it at the same point)."""
        if not is_distributed():
            return
        import torch.distributed as dist

        all_reduce_stores((self.counts, self.correct))
        n = torch.tensor(float(self.total), device=next(iter(self.counts.values())).device if self.counts else "cpu")
        dist.all_reduce(n)
        self.total = int(n.item())

    def summary(self) -> dict:
        """``counts`` {mode: [T][K]}, ``accuracy`` {mode: [T]}, ``entropy`` {mode: [T]} (normalized
        entropy of the prediction distribution: 1 = balanced, 0 = one class), ``samples``."""
        out = {"counts": {}, "accuracy": {}, "entropy": {}, "samples": self.total}
        for mode, c in self.counts.items():
            c = c.cpu()
            out["counts"][mode] = c.tolist()
            out["accuracy"][mode] = (self.correct[mode].cpu().double() / max(self.total, 1)).tolist()
            out["entropy"][mode] = normalized_entropy(c)
        return out

    def pca(self) -> dict | None:
        """Per-timestep 2-D PCA of the collected logits: ``points`` [T][n][2], ``labels`` [n],
        ``explained`` [T][2] (fraction of variance). None when nothing was collected."""
        if not self._pca:
            return None
        logits = torch.cat([l.cpu() for l, _ in self._pca], dim=1)  # [T, n, K]
        labels = torch.cat([y.cpu() for _, y in self._pca])
        points, explained = [], []
        for t in range(logits.shape[0]):
            p, e = pca_2d(logits[t])
            points.append(p.tolist())
            explained.append(e.tolist())
        return {"points": points, "labels": labels.tolist(), "explained": explained}


def normalized_entropy(counts: torch.Tensor) -> list[float]:
    """Entropy of each row's distribution divided by log K."""
    c = counts.double()
    p = c / c.sum(-1, keepdim=True).clamp_min(1.0)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    K = counts.shape[-1]
    return (h / math.log(K)).tolist() if K > 1 else [0.0] * counts.shape[0]


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project rows of ``x`` [n, d] onto their first two principal components (SVD of the centred
    data, signs fixed so the largest loading is positive); returns points [n, 2] and the fraction
    of variance each explains."""
    x = x.double()
    xc = x - x.mean(0, keepdim=True)
    n, d = xc.shape
    if n == 0:
        return torch.zeros(0, 2), torch.zeros(2)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(2, vh.shape[0])
    comps = vh[:k]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True))).clamp_min(0) * 2 - 1
    comps = comps * signs
    pts = xc @ comps.T
    var = s**2
    frac = var[:k] / var.sum().clamp_min(1e-300)
    if k < 2:
        pts = torch.cat([pts, torch.zeros(n, 2 - k, dtype=pts.dtype)], 1)
        frac = torch.cat([frac, torch.zeros(2 - k, dtype=frac.dtype)])
    return pts.float(), frac.float()
