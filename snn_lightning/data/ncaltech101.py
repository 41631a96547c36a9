"""N-Caltech101 (Orchard et al. 2015) through tonic's reader: ATIS saccade recordings of Caltech101
images, each of its own size; framed on its own extent and resized to a square."""

from __future__ import annotations

import glob
import os

import numpy as np

from .common import DatasetNotFoundError
from .events import EventDataModule

NCALTECH101_URL = "https://data.mendeley.com/datasets/cy6cvx3ryv"
BACKGROUND = "BACKGROUND_Google"
NUM_OBJECT_CLASSES = 100  # + the BACKGROUND_Google clutter class = the usual 101


def read_ncaltech101(path: str) -> np.ndarray:
    """What ``tonic.datasets.NCALTECH101.__getitem__`` does: ``tonic.io.read_mnist_file`` (the
    40-bit event encoding) with tonic's ``NCALTECH101`` dtype, then x and y shifted to start at 0."""
    import tonic
    from tonic.io import read_mnist_file

    events = read_mnist_file(path, dtype=tonic.datasets.NCALTECH101.dtype)
    events["x"] -= events["x"].min()
    events["y"] -= events["y"].min()
    return events


class NCaltech101DataModule(EventDataModule):
    """``ncaltech101``: ``<root>/NCALTECH101/Caltech101/<class>/image_XXXX.bin`` (tonic
    ``NCALTECH101(save_to=root)``'s layout after extracting the inner ``Caltech101.zip``).

    8709 recordings in 101 class folders (100 object classes and ``BACKGROUND_Google``;
    ``include_background=false`` drops the latter: 100 classes). Labels follow the sorted folder
    names (tonic's walk order). There is no official split: a seeded per-class ``train_ratio`` (9:1)
    split; validation uses the test split. Each recording -> T frames on its own extent
    (``max x + 1`` by ``max y + 1``, after tonic's shift to 0) -> bilinear resize to
    ``image_size`` x ``image_size`` (48). Training adds RandomCrop(padding 4) + horizontal flip.
    """

    name = "ncaltech101"
    folder = "ncaltech101"
    title = "N-Caltech101"
    tonic_folder = "NCALTECH101"
    subsets = {"all": "Caltech101"}
    splits = ("ratio",)
    sensor_size = None
    how_to_get = (
        f"download N-Caltech101-archive.zip from {NCALTECH101_URL}, extract it and then its Caltech101.zip "
        "there (Caltech101/<class>/image_0001.bin ...)"
    )
    repair_hint = "re-extract it from Caltech101.zip"
    reader = staticmethod(read_ncaltech101)

    def __init__(
        self, T: int = 10, image_size: int = 48, split: str = "ratio", include_background: bool = True, **kwargs
    ):
        self.include_background = bool(include_background)
        self.num_classes = NUM_OBJECT_CLASSES + int(self.include_background)
        # 8709 .bin files is tonic's own completeness check; without the background class, no count
        self.official_counts = {"all": 8709} if self.include_background else {}
        super().__init__(T=T, image_size=image_size, split=split, **kwargs)

    @property
    def split_tag(self) -> str:
        return super().split_tag + ("" if self.include_background else "-nobg")

    def class_folders(self, folder: str) -> list[str]:
        names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        return [d for d in names if self.include_background or d != BACKGROUND]

    def scan(self, folder: str) -> tuple[list[str], list[int]]:
        classes = self.class_folders(folder)
        pairs = [
            (path, label)
            for label, cls in enumerate(classes)
            for path in glob.glob(os.path.join(glob.escape(os.path.join(folder, cls)), "*.bin"))
        ]
        if pairs and len(classes) != self.num_classes:
            raise DatasetNotFoundError(
                f"N-Caltech101 at {folder} has {len(classes)} class folders, expected {self.num_classes} "
                f"(100 object classes{' + ' + BACKGROUND if self.include_background else ''}): "
                f"an incomplete extraction? {self.how_to_get}"
            )
        return self.sort_samples(pairs, folder)

    def download_with_tonic(self) -> None:
        import tonic
        from tonic.download_utils import extract_archive

        ds = tonic.datasets.NCALTECH101  # downloads and extracts the outer archive when missing
        ds(save_to=self.root)
        inner = os.path.join(self.data_folder, ds.data_filename)
        if not os.path.isdir(os.path.join(self.data_folder, ds.folder_name)) and os.path.isfile(inner):
            extract_archive(inner)  # tonic leaves the inner Caltech101.zip packed
