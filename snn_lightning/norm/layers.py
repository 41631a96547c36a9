"""Normalization layers for multi-step tensors ``[T, B, C, ...]``.

Why wrappers around an inner BatchNorm instead of BatchNorm subclasses: the time handling
(folding T into the batch, per-timestep scales, prefix statistics) must survive
``nn.SyncBatchNorm.convert_sync_batchnorm``, which replaces every ``_BatchNorm`` it finds by a plain
SyncBatchNorm. Keeping the BatchNorm as a *child* (``.bn``, or ``.bns`` for TAB) means only the
statistics get synchronised across ranks and the wrapper's time logic stays intact.

Why several kinds: Table 1 of the paper compares MP-Init against time-aware normalizations
(TEBN, TAB) on top of the tdBN default; ``bn`` (statistics per frame) and ``none`` are the
controls. See docs/reference.md §9 for the formulas.
"""
from __future__ import annotations

import torch
from torch import nn

from .._checks import check_T, choice

NORM_KINDS = ("none", "bn", "tdbn", "tebn", "tab")

_BN_BY_DIM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _check_dim(dim: int) -> int:
    return choice("dim (spatial dims after C)", dim, sorted(_BN_BY_DIM))


class TimeNorm(nn.Module):
    """Base class: checks the ``[T', B, C, *spatial]`` layout shared by every kind."""

    def __init__(self, num_features: int, T: int, dim: int = 2):
        super().__init__()
        self.num_features = int(num_features)
        self.T = check_T(T)
        self.dim = _check_dim(dim)

    def _allowed_ranks(self) -> tuple[int, ...]:
        # BatchNorm1d accepts [N, C] and [N, C, L]; the others need exactly `dim` spatial dims.
        return (3, 4) if self.dim == 1 else (self.dim + 3,)

    def _check(self, x: torch.Tensor, max_T: int | None = None) -> None:
        if x.dim() not in self._allowed_ranks():
            raise ValueError(
                f"{type(self).__name__}(dim={self.dim}) expects [T, B, C{', ...' * (self.dim > 0)}] with rank in "
                f"{list(self._allowed_ranks())}, got shape {tuple(x.shape)}"
            )
        if max_T is not None and x.shape[0] > max_T:
            raise ValueError(
                f"{type(self).__name__} was built for T={max_T} timesteps, got an input with {x.shape[0]} (shape {tuple(x.shape)})"
            )

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, T={self.T}, dim={self.dim}"


class NoNorm(nn.Identity):
    """``"none"``: the identity, kept as a named class so model printouts say what was chosen."""

    def __init__(self, num_features: int = 0, T: int = 1, dim: int = 2):
        super().__init__()
        self.num_features, self.T, self.dim = int(num_features), int(T), int(dim)


class PerFrameBN(TimeNorm):
    """``"bn"``: one BatchNorm applied to every frame separately (batch statistics per timestep).

    In training the running statistics are updated once per frame, in time order. In evaluation every
    frame uses the same running statistics, so the frames are folded into one call.
    """

    def __init__(self, num_features: int, T: int, dim: int = 2, **bn_kwargs):
        super().__init__(num_features, T, dim)
        self.bn = _BN_BY_DIM[self.dim](num_features, **bn_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if self.training:
            return torch.stack([self.bn(x[t]) for t in range(x.shape[0])])
        return self.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class TDBN(TimeNorm):
    """``"tdbn"``: BatchNorm over the folded ``[T'·B, C, ...]`` (statistics over T, B and space).

    As in the reference (and TET), γ starts at 1: no α·V_thr initialisation.
    """

    def __init__(self, num_features: int, T: int, dim: int = 2, **bn_kwargs):
        super().__init__(num_features, T, dim)
        self.bn = _BN_BY_DIM[self.dim](num_features, **bn_kwargs)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self._normalize(x)


def _per_step(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The first T' entries of a ``[T, 1, ...]`` parameter, shaped to broadcast against ``x``."""
    return p[: x.shape[0]].reshape(x.shape[0], *([1] * (x.dim() - 1)))


class TEBN(TDBN):
    """``"tebn"``: tdBN followed by a learnable scale p_t per timestep (init 1)."""

    def __init__(self, num_features: int, T: int, dim: int = 2, **bn_kwargs):
        super().__init__(num_features, T, dim, **bn_kwargs)
        self.p = nn.Parameter(torch.ones(self.T, *([1] * (self.dim + 2))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, max_T=self.T)
        return self._normalize(x) * _per_step(self.p, x)


class TAB(TimeNorm):
    """``"tab"``: for each t, its own BatchNorm over the accumulated prefix x[0..t], times p_t².

    Training normalises slice t with the statistics of the prefix (so ``bns[t]`` gathers running
    statistics of timesteps 0..t); evaluation is an element-wise affine map per frame, so only slice t
    is passed to ``bns[t]``, which gives the same values without the quadratic cost.
    """

    def __init__(self, num_features: int, T: int, dim: int = 2, **bn_kwargs):
        super().__init__(num_features, T, dim)
        self.bns = nn.ModuleList(_BN_BY_DIM[self.dim](num_features, **bn_kwargs) for _ in range(self.T))
        self.p = nn.Parameter(torch.ones(self.T, *([1] * (self.dim + 2))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x, max_T=self.T)
        B = x.shape[1]
        if self.training:
            ys = [self.bns[t](x[: t + 1].flatten(0, 1))[t * B : (t + 1) * B] for t in range(x.shape[0])]
        else:
            ys = [self.bns[t](x[t]) for t in range(x.shape[0])]
        return torch.stack(ys) * _per_step(self.p, x).square()


_KINDS = {"none": NoNorm, "bn": PerFrameBN, "tdbn": TDBN, "tebn": TEBN, "tab": TAB}


def build_norm(kind: str, num_features: int, T: int, dim: int = 2, **bn_kwargs) -> nn.Module:
    """Build the normalization ``kind`` for ``num_features`` channels and up to ``T`` timesteps.

    ``dim`` is the number of spatial dims after C (2 for ``[T, B, C, H, W]``, 1 for ``[T, B, C(, L)]``).
    Extra keyword arguments (``eps``, ``momentum``, ...) go to the inner BatchNorm.
    """
    choice("norm", kind, list(NORM_KINDS))
    if kind == "none":
        return NoNorm(num_features, check_T(T), _check_dim(dim))
    return _KINDS[kind](num_features, T, dim, **bn_kwargs)
