"""N-MNIST (Orchard et al. 2015) through tonic's reader: 34x34 ATIS saccade recordings of MNIST."""

from __future__ import annotations

import glob
import os

import numpy as np

from .events import EventDataModule

NMNIST_URL = "https://data.mendeley.com/datasets/468j46mzdv"
SENSOR_SIZE = (34, 34)  # tonic.datasets.NMNIST.sensor_size[:2] (W, H)


def read_nmnist(path: str) -> np.ndarray:
    """``tonic.io.read_mnist_file`` (the 40-bit N-MNIST/N-Caltech101 event encoding) with tonic's
    ``NMNIST`` dtype: fields ``x, y, t`` (µs), ``p``."""
    import tonic
    from tonic.io import read_mnist_file

    return read_mnist_file(path, dtype=tonic.datasets.NMNIST.dtype)


class NMNISTDataModule(EventDataModule):
    """``nmnist``: ``<root>/NMNIST/{Train,Test}/<digit>/*.bin`` (tonic ``NMNIST(save_to=root)``'s layout).

    The official split (60000 train / 10000 test files; validation uses the test split). Each
    recording -> T frames by event count (or time) on the native 34x34 sensor -> resized only if
    ``image_size`` is not 34. No augmentation by default (``augment=false``); a flip is never a
    good idea for digits, so ``hflip`` defaults to 0. Batches: x [B, T, 2, image_size, image_size].
    """

    name = "nmnist"
    folder = "nmnist"
    title = "N-MNIST"
    num_classes = 10
    tonic_folder = "NMNIST"
    subsets = {"train": "Train", "test": "Test"}
    splits = ("official",)
    sensor_size = SENSOR_SIZE
    official_counts = {"train": 60000, "test": 10000}
    how_to_get = (
        f"download train.zip and test.zip from {NMNIST_URL} and extract them there "
        "(Train/<digit>/*.bin, Test/<digit>/*.bin)"
    )
    repair_hint = "re-extract it from train.zip / test.zip"
    reader = staticmethod(read_nmnist)

    def __init__(
        self,
        T: int = 10,
        image_size: int = 34,
        split: str = "official",
        augment: bool = False,
        crop_padding: int = 2,
        hflip: float = 0.0,
        **kwargs,
    ):
        super().__init__(
            T=T, image_size=image_size, split=split, augment=augment, crop_padding=crop_padding, hflip=hflip, **kwargs
        )

    def scan(self, folder: str) -> tuple[list[str], list[int]]:
        pairs = []
        for digit in range(10):
            for path in glob.glob(os.path.join(glob.escape(os.path.join(folder, str(digit))), "*.bin")):
                pairs.append((path, digit))
        return self.sort_samples(pairs, folder)

    def download_with_tonic(self) -> None:
        import tonic

        for train in (True, False):  # each downloads and extracts its zip when missing
            tonic.datasets.NMNIST(save_to=self.root, train=train)
