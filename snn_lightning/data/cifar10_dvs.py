"""CIFAR10-DVS through tonic: events -> T frames -> 48x48, with a disk cache of the frames."""

from __future__ import annotations

import glob
import math
import os
import uuid

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .common import (
    BaseDataModule,
    DatasetNotFoundError,
    EventFileError,
    check_choice,
    check_fraction,
    check_int,
    natural_key,
    one_line,
    random_shift_crop,
)

SENSOR_SIZE = (128, 128, 2)  # tonic order: (W, H, P)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SLICINGS = ("event_count", "time")
SPLITS = ("ratio", "first100")
TONIC_MIN_FILES = 1000  # tonic downloads unless the zip exists and >= 1000 *.aedat4 files are present
CIFAR10_DVS_URL = "https://figshare.com/ndownloader/files/38023437"


def events_to_frames(events: np.ndarray, T: int, slicing: str) -> torch.Tensor:
    """tonic ``ToFrame`` into ``T`` bins (by event count or by time) -> float32 [T, 2, 128, 128]."""
    import tonic

    if slicing == "event_count":
        to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_event_bins=T)
    else:
        to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_time_bins=T)
    frames = np.asarray(to_frame(events))
    if frames.shape[0] != T:  # defensive: some slicers return fewer bins for degenerate inputs
        out = np.zeros((T, *frames.shape[1:]), dtype=frames.dtype)
        out[: min(T, frames.shape[0])] = frames[:T]
        frames = out
    return torch.from_numpy(frames.astype(np.float32))


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of [T, C, H, W] to [T, C, size, size], like torchvision's
    ``Resize`` on a tensor."""
    if frames.shape[-2:] == (size, size):
        return frames.contiguous()
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True).contiguous()


class DVSFrameDataset(Dataset):
    """Indexes into a ``tonic.datasets.CIFAR10DVS``; returns ``(frames [T, 2, S, S] float32, label)``.

    Frames are computed from the events (tonic reader + ``ToFrame``), resized to ``image_size`` and,
    when ``cache_dir`` is set, stored un-augmented as ``<cache_dir>/<class>/<file stem>.pt`` together
    with the source file's size and mtime (a changed source file is recomputed). ``augment`` applies
    RandomCrop(S, padding=4) + horizontal flip identically to all T frames.
    """

    def __init__(
        self,
        tonic_dataset,
        indices,
        T: int,
        slicing: str,
        image_size: int,
        cache_dir: str | None = None,
        augment: bool = False,
        crop_padding: int = 4,
    ):
        self.ds = tonic_dataset
        self.indices = [int(i) for i in indices]
        self.T = T
        self.slicing = slicing
        self.image_size = image_size
        self.cache_dir = cache_dir
        self.augment = augment
        self.crop_padding = crop_padding

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def targets(self) -> list[int]:
        return [int(self.ds.targets[j]) for j in self.indices]

    def path(self, i: int) -> str:
        return self.ds.data[self.indices[i]]

    def cache_path(self, i: int) -> str | None:
        if self.cache_dir is None:
            return None
        src = self.path(i)
        cls = os.path.basename(os.path.dirname(src))
        stem = os.path.splitext(os.path.basename(src))[0]
        return os.path.join(self.cache_dir, cls, stem + ".pt")

    def compute_frames(self, i: int) -> torch.Tensor:
        """Fresh (uncached, un-augmented) frames of sample ``i``."""
        j = self.indices[i]
        src = self.ds.data[j]
        try:
            events, _ = self.ds[j]
            if len(events) == 0:
                raise ValueError("no events")
            frames = events_to_frames(events, self.T, self.slicing)
        except Exception as err:  # aedat raises RuntimeError/OSError, numpy ValueError, ...
            raise EventFileError(
                f"cannot read CIFAR10-DVS event file {src}: {type(err).__name__}: {one_line(err)} "
                f"(corrupt or truncated; re-extract it from CIFAR10DVS.zip)"
            ) from None
        return resize_frames(frames, self.image_size)

    def load_frames(self, i: int) -> torch.Tensor:
        cpath = self.cache_path(i)
        if cpath is None:
            return self.compute_frames(i)
        st = os.stat(self.path(i))
        stamp = [int(st.st_size), int(st.st_mtime_ns)]
        if os.path.isfile(cpath):
            try:
                blob = torch.load(cpath, map_location="cpu", weights_only=True)
                if list(blob["source"]) == stamp and tuple(blob["frames"].shape) == (
                    self.T, 2, self.image_size, self.image_size,
                ):
                    return blob["frames"]
            except Exception:  # unreadable / partial cache entry: recompute
                pass
        frames = self.compute_frames(i)
        os.makedirs(os.path.dirname(cpath), exist_ok=True)
        tmp = f"{cpath}.{uuid.uuid4().hex}.tmp"
        torch.save({"frames": frames, "source": stamp}, tmp)
        os.replace(tmp, cpath)  # atomic: concurrent workers/ranks never read a partial file
        return frames

    def __getitem__(self, i: int):
        x = self.load_frames(i)
        if self.augment:
            x = random_shift_crop(x, self.crop_padding)
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            x = x.contiguous()
        return x, int(self.ds.targets[self.indices[i]])


def split_indices(
    targets: list[int],
    order: list[int],
    split: str,
    seed: int,
    train_ratio: float = 0.9,
    first_n_test: int = 100,
) -> tuple[list[int], list[int]]:
    """Per-class train/test indices.

    ``order`` lists sample indices in sorted file order. ``ratio``: a seeded random
    ``train_ratio`` : ``1 - train_ratio`` split inside each class. ``first100``: the first
    ``first_n_test`` samples of each class (in sorted file order) are the test set.
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


class CIFAR10DVSDataModule(BaseDataModule):
    """``cifar10_dvs``: tonic ``CIFAR10DVS(save_to=root)`` reading ``<root>/CIFAR10DVS/<class>/*.aedat4``.

    Each sample -> ``ToFrame(sensor_size=(128, 128, 2), n_event_bins=T)`` (``slicing="event_count"``,
    the spikingjelly ``split_by="number"`` choice) or ``n_time_bins=T`` (``slicing="time"``)
    -> float [T, 2, 128, 128] -> bilinear resize to ``image_size`` (48). Training adds
    RandomCrop(image_size, padding=4) + horizontal flip, identical for all T frames.

    Split (``split``): ``"ratio"`` = seeded per-class ``train_ratio`` (9:1) split; ``"first100"`` =
    the first ``first_n_test`` (100) samples of each class in natural file-name order are the test
    set. Validation uses the test split. Frames are cached (``cache=True``) under
    ``<cache_dir>/<slicing>_T<T>_<size>px_<split tag>/`` (``cache_dir`` defaults to
    ``<root>/cache``), so any change of T, slicing, image size or split uses a different folder.
    Batches: x [B, T, 2, image_size, image_size] float32.
    """

    name = "cifar10_dvs"
    folder = "cifar10_dvs"
    num_classes = 10
    in_channels = 2
    is_event = True

    def __init__(
        self,
        T: int = 10,
        image_size: int = 48,
        slicing: str = "event_count",
        split: str = "ratio",
        train_ratio: float = 0.9,
        first_n_test: int = 100,
        cache: bool = True,
        cache_dir: str | None = None,
        augment: bool = True,
        **kwargs,
    ):
        # the common loader keywords (root, batch_size, workers, seed, ...) are BaseDataModule's
        super().__init__(T=T, **kwargs)
        self.image_size = check_int("image_size", image_size, 1)
        self.input_size = self.image_size
        self.slicing = check_choice("slicing", slicing, SLICINGS)
        self.split = check_choice("split", split, SPLITS)
        self.train_ratio = check_fraction("train_ratio", train_ratio, low_inclusive=False)
        self.first_n_test = check_int("first_n_test", first_n_test, 1)
        self.cache = bool(cache)
        self.cache_root = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else os.path.join(self.root, "cache")
        self.augment = bool(augment)
        self._tonic = None

    # -- paths ------------------------------------------------------------------------------------
    @property
    def data_folder(self) -> str:
        return os.path.join(self.root, "CIFAR10DVS")

    @property
    def split_tag(self) -> str:
        if self.split == "first100":
            return f"first{self.first_n_test}"
        return f"ratio{self.train_ratio:g}-seed{self.seed}"

    @property
    def cache_dir(self) -> str | None:
        """Folder of this configuration's cached frames (None when caching is off)."""
        if not self.cache:
            return None
        key = f"{self.slicing}_T{self.T}_{self.image_size}px_{self.split_tag}"
        return os.path.join(self.cache_root, key)

    # -- presence check (never let tonic try to download by itself) -------------------------------
    def _count_event_files(self) -> int:
        return len(glob.glob(os.path.join(glob.escape(self.data_folder), "**", "*.aedat4"), recursive=True))

    def check_exists(self) -> None:
        folder = self.data_folder
        zip_ok = os.path.isfile(os.path.join(folder, "CIFAR10DVS.zip"))
        n = self._count_event_files() if os.path.isdir(folder) else 0
        if zip_ok and n >= TONIC_MIN_FILES:
            return
        if not os.path.isdir(folder):
            state = "folder missing"
        else:
            state = f"found {n} *.aedat4 files (tonic needs >= {TONIC_MIN_FILES})"
            if not zip_ok:
                state += " and no CIFAR10DVS.zip (an empty file of that name is enough once extracted)"
        raise DatasetNotFoundError(
            f"CIFAR10-DVS not found at {folder} ({state}): download CIFAR10DVS.zip from {CIFAR10_DVS_URL} "
            f"into {folder} and extract the class archives there (<class>/*.aedat4), or set data.download=true"
        )

    def _download(self) -> None:
        import tonic

        os.makedirs(self.root, exist_ok=True)
        tonic.datasets.CIFAR10DVS(save_to=self.root)  # downloads and extracts when missing

    def prepare_data(self) -> None:
        if self.download:
            try:
                self.check_exists()
            except DatasetNotFoundError:
                self._download()
        self.check_exists()

    # -- setup ------------------------------------------------------------------------------------
    def tonic_dataset(self):
        if self._tonic is None:
            if self.download:
                self.prepare_data()
            self.check_exists()
            import tonic

            self._tonic = tonic.datasets.CIFAR10DVS(save_to=self.root)
        return self._tonic

    def sorted_order(self) -> list[int]:
        """Sample indices sorted by (class, natural file-name order)."""
        ds = self.tonic_dataset()
        return sorted(range(len(ds.data)), key=lambda j: (int(ds.targets[j]), natural_key(os.path.basename(ds.data[j]))))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        ds = self.tonic_dataset()
        train_idx, test_idx = split_indices(
            ds.targets, self.sorted_order(), self.split, self.seed, self.train_ratio, self.first_n_test
        )
        common = dict(T=self.T, slicing=self.slicing, image_size=self.image_size, cache_dir=self.cache_dir)
        self.train_set = DVSFrameDataset(ds, train_idx, augment=self.augment, **common)
        self.test_set = DVSFrameDataset(ds, test_idx, augment=False, **common)
        self.val_set = self.test_set
