"""scikit-learn's bundled handwritten digits (1797 images of 8x8): the offline default dataset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import InvalidValue
from .common import BaseDataModule, check_fraction, check_int, random_shift_crop


class DigitsTensorDataset(Dataset):
    """In-memory ``(x [1, H, W] float, y)`` pairs with an optional random ±``shift`` px translation.

    ``x`` is already normalized; translations fill the uncovered border with ``fill`` (the
    normalized value of a blank pixel).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shift: int = 0, fill: float = 0.0):
        self.x = x
        self.y = y
        self.shift = int(shift)
        self.fill = float(fill)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        x = self.x[i]
        if self.shift > 0:
            x = random_shift_crop(x, self.shift, fill=self.fill)
        return x, int(self.y[i])


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified train/val/test indices (each sorted)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    if val_fraction > 0:
        rel = val_fraction / (1.0 - test_fraction)
        train, val = train_test_split(rest, test_size=rel, random_state=seed + 1, stratify=labels[rest])
    else:
        train, val = rest, np.array([], dtype=int)
    return np.sort(train), np.sort(val), np.sort(test)


class DigitsDataModule(BaseDataModule):
    """``digits``: ``sklearn.datasets.load_digits()`` scaled to [0, 1], optionally resized
    (bilinear) to ``image_size``, normalized with the training split's mean/std.

    Split: seeded, stratified train/val/test (``val_fraction``/``test_fraction`` of all 1797 images).
    With ``val_fraction=0`` validation uses the test split. ``augment`` adds a random ±1 px shift to
    training images. ``root`` and ``download`` are accepted and ignored (the data ships with
    scikit-learn). Batches: ``x`` [B, 1, image_size, image_size] float32, ``y`` int64.
    """

    name = "digits"
    folder = "digits"
    num_classes = 10
    in_channels = 1
    is_event = False

    def __init__(
        self,
        image_size: int = 8,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        augment: bool = False,
        **kwargs,
    ):
        # the common loader keywords (root, batch_size, workers, seed, ...) are BaseDataModule's
        super().__init__(**kwargs)
        self.image_size = check_int("image_size", image_size, 1)
        self.input_size = self.image_size
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = check_fraction("test_fraction", test_fraction, low_inclusive=False)
        if self.val_fraction + self.test_fraction >= 0.9:
            raise InvalidValue(
                f"val_fraction + test_fraction must leave at least 10% for training, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        self.augment = bool(augment)
        self.mean: float | None = None
        self.std: float | None = None
        self.split_indices: dict[str, np.ndarray] = {}

    def prepare_data(self) -> None:  # bundled with scikit-learn: nothing to fetch
        pass

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0).unsqueeze(1)
        y = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
        if self.image_size != x.shape[-1]:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        train, val, test = stratified_split(digits.target, self.val_fraction, self.test_fraction, self.seed)
        self.split_indices = {"train": train, "val": val, "test": test}
        xt = x[torch.from_numpy(train)]
        self.mean = float(xt.mean())
        self.std = float(xt.std())
        x = ((x - self.mean) / self.std).contiguous()
        fill = (0.0 - self.mean) / self.std

        def part(idx: np.ndarray, shift: int = 0) -> DigitsTensorDataset:
            t = torch.from_numpy(idx)
            return DigitsTensorDataset(x[t].clone(), y[t].clone(), shift=shift, fill=fill)

        self.train_set = part(train, shift=1 if self.augment else 0)
        self.test_set = part(test)
        self.val_set = part(val) if len(val) else self.test_set
