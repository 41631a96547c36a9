"""CIFAR10-DVS through tonic: events -> T frames -> 48x48, with the keyed disk cache of the frames
(the shared event pipeline of ``events.py``)."""

from __future__ import annotations

import glob
import os

import numpy as np

from .events import EventDataModule

SENSOR_SIZE = (128, 128, 2)  # tonic order: (W, H, P)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = ("ratio", "first100")
CIFAR10_DVS_URL = "https://figshare.com/ndownloader/files/38023437"


def read_cifar10_dvs(path: str) -> np.ndarray:
    """tonic's CIFAR10DVS reader: ``tonic.io.read_aedat4`` with the fields renamed to ``t, x, y, p``
    (as ``tonic.datasets.CIFAR10DVS.__getitem__`` does)."""
    from tonic.io import read_aedat4

    events = read_aedat4(path)
    events.dtype.names = ["t", "x", "y", "p"]
    return events


class CIFAR10DVSDataModule(EventDataModule):
    """``cifar10_dvs``: ``<root>/CIFAR10DVS/<class>/*.aedat4`` (tonic ``CIFAR10DVS(save_to=root)``'s layout).

    Each sample -> ``ToFrame(sensor_size=(128, 128, 2), n_event_bins=T)`` (``slicing="event_count"``,
    the spikingjelly ``split_by="number"`` choice) or ``n_time_bins=T`` (``slicing="time"``)
    -> float [T, 2, 128, 128] -> bilinear resize to ``image_size`` (48). Training adds
    RandomCrop(image_size, padding=4) + horizontal flip, identical for all T frames.

    Split (``split``): ``"ratio"`` = seeded per-class ``train_ratio`` (9:1) split; ``"first100"`` =
    the first ``first_n_test`` (100) samples of each class in natural file-name order are the test
    set. Validation uses the test split. Frames are cached (``cache=True``) under
    ``<cache_dir>/cifar10_dvs-<slicing>_T<T>_<size>px_<split tag>/`` (``cache_dir`` defaults to
    ``<root>/cache``), so any change of T, slicing, image size or split uses a different folder.
    Batches: x [B, T, 2, image_size, image_size] float32.
    """

    name = "cifar10_dvs"
    folder = "cifar10_dvs"
    title = "CIFAR10-DVS"
    num_classes = 10
    tonic_folder = "CIFAR10DVS"
    subsets = {"all": ""}
    splits = SPLITS
    sensor_size = SENSOR_SIZE[:2]
    official_counts = {"all": 10000}
    how_to_get = (
        f"download CIFAR10DVS.zip from {CIFAR10_DVS_URL} and extract its class archives there (<class>/*.aedat4)"
    )
    repair_hint = "re-extract it from CIFAR10DVS.zip"
    reader = staticmethod(read_cifar10_dvs)

    def __init__(self, T: int = 10, image_size: int = 48, split: str = "ratio", **kwargs):
        super().__init__(T=T, image_size=image_size, split=split, **kwargs)

    def scan(self, folder: str) -> tuple[list[str], list[int]]:
        pairs = []
        for label, cls in enumerate(CLASSES):
            for path in glob.glob(os.path.join(glob.escape(os.path.join(folder, cls)), "*.aedat4")):
                pairs.append((path, label))
        return self.sort_samples(pairs, folder)

    def download_with_tonic(self) -> None:
        import tonic

        tonic.datasets.CIFAR10DVS(save_to=self.root)  # downloads and extracts when missing


__all__ = ["CIFAR10DVSDataModule", "CLASSES", "read_cifar10_dvs"]
