"""Event-camera datasets as frame clips, one implementation for cifar10_dvs, dvs_gesture, nmnist
and ncaltech101: events -> T frames (tonic ``ToFrame``) -> resize (both in ``framing.py``) -> a disk
cache keyed by T, slicing, size and split -> per-sample augmentation (``transforms.py``).

A subclass of :class:`EventDataModule` says where tonic keeps the files (``tonic_folder``, the
name of tonic's dataset class, so ``data.download=true`` through tonic fills the folder we read),
how to list one subset's files with their labels (:meth:`EventDataModule.scan`) and which tonic
reader decodes a file (``reader``, a module-level function so worker processes can pickle it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from .._checks import fraction
from .common import (
    BaseDataModule,
    DatasetNotFoundError,
    EventFileError,
    check_choice,
    check_fraction,
    check_int,
    natural_key,
    one_line,
)
from .framing import POLARITIES, SLICINGS, events_to_frames, resize_frames, split_indices
from .transforms import Compose, frame_augmentation

__all__ = [
    "EventDataModule",
    "EventFrameDataset",
    "POLARITIES",
    "SLICINGS",
    "check_probability",
    "events_to_frames",
    "resize_frames",
    "split_indices",
]


def check_probability(name: str, value) -> float:
    return fraction(f"{name} (a probability)", value, high_inclusive=True)


# ------------------------------------------------------------------------------------------------
# the dataset: frames of one list of files, cached on disk
# ------------------------------------------------------------------------------------------------
class EventFrameDataset(Dataset):
    """``(frames [T, 2, S, S] float32, label)`` for a list of event files.

    Frames come from ``reader(path)`` (a tonic reader returning a structured array with ``x, y, t,
    p``) and :func:`events_to_frames`, resized to ``image_size``. With ``cache_dir`` they are
    stored un-augmented as ``<cache_dir>/<path relative to data_folder>.pt`` with the source file's
    size and mtime (a changed source is recomputed; a partial or unreadable entry too).
    ``transform`` (training only) is applied after the cache.
    """

    def __init__(
        self,
        paths: Sequence[str],
        targets: Sequence[int],
        reader: Callable[[str], np.ndarray],
        T: int,
        slicing: str,
        image_size: int,
        sensor_size: tuple[int, int] | None,
        data_folder: str,
        cache_dir: str | None = None,
        transform: Compose | None = None,
        title: str = "event",
        repair_hint: str = "re-extract it from the dataset archive",
    ):
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        self.paths = [str(p) for p in paths]
        self._targets = [int(t) for t in targets]
        self.reader = reader
        self.T = T
        self.slicing = slicing
        self.image_size = image_size
        self.sensor_size = sensor_size
        self.data_folder = data_folder
        self.cache_dir = cache_dir
        self.transform = transform if transform is not None and len(transform) else None
        self.title = title
        self.repair_hint = repair_hint

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def targets(self) -> list[int]:
        return list(self._targets)

    def path(self, i: int) -> str:
        return self.paths[i]

    def cache_path(self, i: int) -> str | None:
        if self.cache_dir is None:
            return None
        rel = os.path.relpath(self.paths[i], self.data_folder)
        return os.path.join(self.cache_dir, os.path.splitext(rel)[0] + ".pt")

    def compute_frames(self, i: int) -> torch.Tensor:
        """Fresh (uncached, un-augmented) frames of sample ``i``."""
        src = self.paths[i]
        try:
            events = self.reader(src)
            if len(events) == 0:
                raise ValueError("no events")
            frames = events_to_frames(events, self.T, self.slicing, self.sensor_size)
        except Exception as err:  # readers raise OSError/ValueError/IndexError/RuntimeError/...
            raise EventFileError(
                f"cannot read {self.title} event file {src}: {type(err).__name__}: {one_line(err)} "
                f"(corrupt or truncated; {self.repair_hint})"
            ) from None
        return resize_frames(frames, self.image_size)

    def _stamp(self, i: int) -> list[int]:
        st = os.stat(self.paths[i])
        return [int(st.st_size), int(st.st_mtime_ns)]

    def load_frames(self, i: int) -> torch.Tensor:
        cpath = self.cache_path(i)
        if cpath is None:
            return self.compute_frames(i)
        stamp = self._stamp(i)
        if os.path.isfile(cpath):
            try:
                blob = torch.load(cpath, map_location="cpu", weights_only=True)
                shape = (self.T, POLARITIES, self.image_size, self.image_size)
                if list(blob["source"]) == stamp and tuple(blob["frames"].shape) == shape:
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
        if self.transform is not None:
            x = self.transform(x)
        return x, self._targets[i]


# ------------------------------------------------------------------------------------------------
# the data module
# ------------------------------------------------------------------------------------------------
class EventDataModule(BaseDataModule):
    """Common arguments and behaviour of the event-camera data modules.

    Subclasses set ``name``, ``folder``, ``title``, ``num_classes``, ``tonic_folder`` (tonic's
    class name: files live under ``<root>/<tonic_folder>/``), ``subsets`` (subset name ->
    sub-folder; ``{"train": ..., "test": ...}`` for an official split, ``{"all": ...}`` for a pool
    split by ``split``), ``splits`` (the allowed ``split`` values), ``sensor_size``,
    ``official_counts`` (files per subset in the full dataset), ``reader``, ``how_to_get``, and
    implement :meth:`scan` and :meth:`download_with_tonic`.

    Split: ``"official"`` = the dataset's own train/test folders; ``"ratio"`` = a seeded per-class
    ``train_ratio`` split of the pool; ``"first100"`` = the first ``first_n_test`` files of each
    class (natural file-name order) are the test set. Validation uses the test split.
    Cache: ``<cache_dir>/<name>-<slicing>_T<T>_<size>px_<split tag>/`` (``cache_dir`` defaults to
    ``<root>/cache``). Training augmentation (``augment``): ``RandomShiftCrop(crop_padding)`` then
    ``HFlipFrames(hflip)``, one draw for all T frames.
    """

    title = "event dataset"
    in_channels = POLARITIES
    is_event = True
    tonic_folder = ""
    subsets: dict[str, str] = {}
    splits: tuple[str, ...] = ("official",)
    sensor_size: tuple[int, int] | None = (128, 128)
    official_counts: dict[str, int] = {}
    how_to_get = ""
    repair_hint = "re-extract it from the dataset archive"

    @staticmethod
    def reader(path: str) -> np.ndarray:  # pragma: no cover - every subclass sets its tonic reader
        raise NotImplementedError

    def __init__(
        self,
        T: int = 10,
        image_size: int = 48,
        slicing: str = "event_count",
        split: str | None = None,
        train_ratio: float = 0.9,
        first_n_test: int = 100,
        cache: bool = True,
        cache_dir: str | None = None,
        augment: bool = True,
        crop_padding: int = 4,
        hflip: float = 0.5,
        **kwargs,
    ):
        # the common loader keywords (root, batch_size, workers, seed, ...) are BaseDataModule's
        super().__init__(T=T, **kwargs)
        self.image_size = check_int("image_size", image_size, 1)
        self.input_size = self.image_size
        self.slicing = check_choice("slicing", slicing, SLICINGS)
        self.split = check_choice("split", self.splits[0] if split is None else split, self.splits)
        self.train_ratio = check_fraction("train_ratio", train_ratio, low_inclusive=False)
        self.first_n_test = check_int("first_n_test", first_n_test, 1)
        self.cache = bool(cache)
        self.cache_root = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else os.path.join(self.root, "cache")
        self.augment = bool(augment)
        self.crop_padding = check_int("crop_padding", crop_padding, 0)
        self.hflip = check_probability("hflip", hflip)
        self._scans: dict[str, tuple[list[str], list[int]]] = {}

    # -- paths ------------------------------------------------------------------------------------
    @property
    def data_folder(self) -> str:
        return os.path.join(self.root, self.tonic_folder)

    @property
    def split_tag(self) -> str:
        if self.split == "first100":
            return f"first{self.first_n_test}"
        if self.split == "ratio":
            return f"ratio{self.train_ratio:g}-seed{self.seed}"
        return self.split

    @property
    def cache_dir(self) -> str | None:
        """Folder of this configuration's cached frames (None when caching is off)."""
        if not self.cache:
            return None
        key = f"{self.name}-{self.slicing}_T{self.T}_{self.image_size}px_{self.split_tag}"
        return os.path.join(self.cache_root, key)

    def train_transform(self) -> Compose:
        return frame_augmentation(self.crop_padding, self.hflip) if self.augment else Compose()

    # -- listing ----------------------------------------------------------------------------------
    def scan(self, folder: str) -> tuple[list[str], list[int]]:  # pragma: no cover - per dataset
        """``(paths, labels)`` of the event files of one subset folder, sorted by label, then by
        natural file order."""
        raise NotImplementedError

    def subset_folder(self, subset: str) -> str:
        return os.path.normpath(os.path.join(self.data_folder, self.subsets[subset]))

    def samples(self, subset: str) -> tuple[list[str], list[int]]:
        if subset not in self._scans:
            self._scans[subset] = self.scan(self.subset_folder(subset))
        return self._scans[subset]

    @staticmethod
    def sort_samples(pairs: list[tuple[str, int]], folder: str) -> tuple[list[str], list[int]]:
        pairs = sorted(pairs, key=lambda pl: (pl[1], natural_key(os.path.relpath(pl[0], folder))))
        return [p for p, _ in pairs], [lbl for _, lbl in pairs]

    # -- presence check (never let tonic try to download by itself) -------------------------------
    def check_exists(self) -> None:
        """Raise :class:`DatasetNotFoundError` (one line: the folder expected, how to get the
        files) unless every subset folder holds event files; warn when a subset has a different
        number of files than the full dataset (a partial extraction trains on what is there)."""
        for subset in self.subsets:
            folder = self.subset_folder(subset)
            n = len(self.samples(subset)[0]) if os.path.isdir(folder) else 0
            if n == 0:
                state = "folder missing" if not os.path.isdir(folder) else "no event files in it"
                self._scans.pop(subset, None)
                raise DatasetNotFoundError(
                    f"{self.title} not found at {folder} ({state}): {self.how_to_get}, or set data.download=true"
                )
        for subset, expected in self.official_counts.items():
            n = len(self.samples(subset)[0])
            if n != expected:
                rank_zero_warn(
                    f"{self.title}: {n} files in {self.subset_folder(subset)}, "
                    f"the full dataset has {expected} (a partial extraction? training uses what is there)"
                )

    def download_with_tonic(self) -> None:  # pragma: no cover - per dataset
        """Let tonic download and extract into ``<root>/<tonic_folder>``."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        if self.download:
            try:
                self.check_exists()
            except DatasetNotFoundError:
                os.makedirs(self.root, exist_ok=True)
                self._scans.clear()
                self.download_with_tonic()
        self.check_exists()

    # -- setup ------------------------------------------------------------------------------------
    def make_dataset(self, paths: list[str], targets: list[int], train: bool) -> EventFrameDataset:
        return EventFrameDataset(
            paths,
            targets,
            reader=type(self).reader,
            T=self.T,
            slicing=self.slicing,
            image_size=self.image_size,
            sensor_size=self.sensor_size,
            data_folder=self.data_folder,
            cache_dir=self.cache_dir,
            transform=self.train_transform() if train else None,
            title=self.title,
            repair_hint=self.repair_hint,
        )

    def split_samples(self) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
        """``((train paths, labels), (test paths, labels))`` as ``split`` says."""
        if self.split == "official":
            return self.samples("train"), self.samples("test")
        paths, targets = self.samples("all")
        train_idx, test_idx = split_indices(
            targets, list(range(len(paths))), self.split, self.seed, self.train_ratio, self.first_n_test
        )
        pick = lambda idx: ([paths[j] for j in idx], [targets[j] for j in idx])  # noqa: E731
        return pick(train_idx), pick(test_idx)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.download:
            self.prepare_data()
        self.check_exists()
        (train_p, train_y), (test_p, test_y) = self.split_samples()
        self.train_set = self.make_dataset(train_p, train_y, train=True)
        self.test_set = self.make_dataset(test_p, test_y, train=False)
        self.val_set = self.test_set
