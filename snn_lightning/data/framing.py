"""Events -> frames and the per-class splits: the pure functions of the event pipeline (``events.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SLICINGS = ("event_count", "time")
POLARITIES = 2


# ------------------------------------------------------------------------------------------------
# framing
# ------------------------------------------------------------------------------------------------
def events_to_frames(events: np.ndarray, T: int, slicing: str, sensor_size: tuple[int, int] | None = (128, 128)) -> torch.Tensor:
    """tonic ``ToFrame`` into ``T`` bins -> float32 ``[T, 2, H, W]`` event counts.

    ``slicing="event_count"``: ``n_event_bins=T`` (each bin holds ``len(events) // T`` events, the
    remainder is dropped); ``"time"``: ``n_time_bins=T`` (equal time windows). ``sensor_size`` is
    tonic's ``(W, H)``; ``None`` frames each recording on its own extent ``(max x + 1, max y + 1)``
    (N-Caltech101, whose recordings differ in size).
    """
    import tonic

    if sensor_size is None:
        sensor_size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1)
    sensor = (int(sensor_size[0]), int(sensor_size[1]), POLARITIES)
    if slicing == "event_count":
        to_frame = tonic.transforms.ToFrame(sensor_size=sensor, n_event_bins=T)
    else:
        to_frame = tonic.transforms.ToFrame(sensor_size=sensor, n_time_bins=T)
    frames = np.asarray(to_frame(events))
    if frames.shape[0] != T:  # defensive: some slicers return fewer bins for degenerate inputs
        out = np.zeros((T, *frames.shape[1:]), dtype=frames.dtype)
        out[: min(T, frames.shape[0])] = frames[:T]
        frames = out
    return torch.from_numpy(frames.astype(np.float32))


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of [T, C, H, W] to [T, C, size, size], like torchvision's
    ``Resize`` on a tensor (non-square inputs are stretched to the square)."""
    if frames.shape[-2:] == (size, size):
        return frames.contiguous()
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True).contiguous()


# ------------------------------------------------------------------------------------------------
# splits
# ------------------------------------------------------------------------------------------------
def split_indices(
    targets: Sequence[int],
    order: Sequence[int],
    split: str,
    seed: int,
    train_ratio: float = 0.9,
    first_n_test: int = 100,
) -> tuple[list[int], list[int]]:
    """Per-class train/test indices of one pool of samples.

    ``order`` lists sample indices in sorted file order. ``ratio``: a seeded random
    ``train_ratio`` : ``1 - train_ratio`` split inside each class (at least one sample on each side
    of a class with two or more). ``first100``: the first ``first_n_test`` samples of each class
    (in sorted file order) are the test set.
    """
    by_class: dict[int, list[int]] = {}
    for j in order:
        by_class.setdefault(int(targets[j]), []).append(j)
    train, test = [], []
    g = torch.Generator().manual_seed(seed)
    for c in sorted(by_class):
        idx = by_class[c]
        n = len(idx)
        if split == "first100":
            test += idx[:first_n_test]
            train += idx[first_n_test:]
        else:
            n_train = int(math.floor(n * train_ratio + 0.5))
            if n >= 2:
                n_train = min(max(n_train, 1), n - 1)
            perm = torch.randperm(n, generator=g).tolist()
            train += sorted(idx[k] for k in perm[:n_train])
            test += sorted(idx[k] for k in perm[n_train:])
    return train, test
