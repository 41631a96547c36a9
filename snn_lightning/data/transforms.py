"""Per-sample augmentations of frame clips ``[..., H, W]`` (e.g. ``[T, 2, H, W]`` event frames).

Each augmentation is a pure function of the frames and explicit parameters (``shift_crop``,
``hflip``) plus a small frozen dataclass that draws those parameters at random and calls it, in
the style of tonic's transforms. One draw is shared by every leading dimension, so all T frames of
a clip (and both polarities) move together. The dataclasses are picklable (DataLoader workers,
``ddp_spawn``) and compare by value, so a data module's augmentation is plain data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import fraction, int_at_least


def shift_crop(x: torch.Tensor, top: int, left: int, pad: int, fill: float = 0.0) -> torch.Tensor:
    """Pad the last two dims by ``pad`` (value ``fill``) and crop the original size back out at
    offset ``(top, left)`` of the padded image, ``0 <= top, left <= 2 * pad``. ``top = left = pad``
    returns ``x`` unchanged; ``top = 0`` shifts the content down by ``pad`` pixels."""
    if pad <= 0:
        return x
    if not (0 <= top <= 2 * pad and 0 <= left <= 2 * pad):
        raise ValueError(f"crop offset ({top}, {left}) must lie in [0, {2 * pad}] for pad={pad}")
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    return padded[..., top : top + h, left : left + w]


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror the last (width) dimension."""
    return x.flip(-1)


@dataclass(frozen=True)
class RandomShiftCrop:
    """``RandomCrop(size, padding=pad)`` on a clip: one random offset for all leading dims."""

    pad: int
    fill: float = 0.0

    def __post_init__(self):
        int_at_least("RandomShiftCrop pad", self.pad, 0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pad == 0:
            return x
        top, left = (int(v) for v in torch.randint(0, 2 * self.pad + 1, (2,), generator=generator))
        return shift_crop(x, top, left, self.pad, self.fill)


@dataclass(frozen=True)
class HFlipFrames:
    """Horizontal flip of the whole clip with probability ``p``."""

    p: float = 0.5

    def __post_init__(self):
        fraction("HFlipFrames p (a probability)", self.p, high_inclusive=True)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.p <= 0.0:
            return x
        if float(torch.rand((), generator=generator)) < self.p:
            return hflip(x)
        return x


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order; the result is contiguous (collation copies it anyway)."""

    transforms: tuple = ()

    def __post_init__(self):
        if not isinstance(self.transforms, tuple):
            object.__setattr__(self, "transforms", tuple(self.transforms))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator=generator)
        return x.contiguous()

    def __len__(self) -> int:
        return len(self.transforms)


def frame_augmentation(crop_padding: int, hflip_p: float) -> Compose:
    """The training augmentation of the event data modules: ``RandomShiftCrop(crop_padding)``
    then ``HFlipFrames(hflip_p)``, each left out when it would do nothing."""
    steps: Sequence = []
    if crop_padding > 0:
        steps.append(RandomShiftCrop(int(crop_padding)))
    if hflip_p > 0:
        steps.append(HFlipFrames(float(hflip_p)))
    return Compose(tuple(steps))


__all__ = ["Compose", "HFlipFrames", "RandomShiftCrop", "frame_augmentation", "hflip", "shift_crop"]
