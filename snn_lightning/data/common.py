"""Shared pieces of the data modules: errors, argument checks, root resolution, the base class."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .._checks import choice, fraction, int_at_least
from ..errors import UserError
from .transforms import RandomShiftCrop
from .sampling import ResumableLoader, trainer_placement

ENV_DATA_ROOT = "SNN_DATA_ROOT"


class DatasetNotFoundError(UserError, FileNotFoundError):
    """The dataset is not on disk (or fails its integrity check) and downloading was not requested.

    The message is a single line naming the expected folder/files and how to obtain them.
    """


class EventFileError(UserError, RuntimeError):
    """An event-camera recording could not be decoded (corrupt, truncated or empty file).

    The message is one line naming the file. torch's DataLoader re-raises a worker's exception as
    ``EventFileError("Caught EventFileError in DataLoader worker process N.\\nOriginal Traceback
    ...")``; the constructor keeps only the original message, so the CLI's one-line report still
    names the file rather than the worker.
    """

    def __init__(self, message: Any = ""):
        super().__init__(_unwrap_worker_message(str(message), type(self).__name__))


def _unwrap_worker_message(message: str, class_name: str) -> str:
    """The original message inside torch's ``ExceptionWrapper.reraise`` text, else ``message``."""
    if not (message.startswith("Caught ") and "\nOriginal Traceback" in message):
        return message
    pattern = re.compile(rf"^(?:[\w.]+\.)?{re.escape(class_name)}: (.*)$")
    for line in reversed(message.splitlines()):
        m = pattern.match(line)
        if m:
            return m.group(1)
    return message


def one_line(text: Any) -> str:
    """Collapse whitespace (newlines included) so error messages stay on one line."""
    return re.sub(r"\s+", " ", str(text)).strip()


# argument checks: the one validation module, re-exported for the data modules
check_int = int_at_least
check_choice = choice
check_fraction = fraction


def resolve_root(root: str | os.PathLike | None, folder: str) -> str:
    """``root`` if given; else ``$SNN_DATA_ROOT/<folder>``; else ``./data/<folder>`` (absolute)."""
    if root is not None and str(root) != "":
        return os.path.abspath(os.path.expanduser(str(root)))
    env = os.environ.get(ENV_DATA_ROOT)
    if env:
        return os.path.abspath(os.path.join(os.path.expanduser(env), folder))
    return os.path.abspath(os.path.join("data", folder))


def natural_key(text: str) -> list:
    """Sort key that orders ``file_2`` before ``file_10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text)]


# ------------------------------------------------------------------------------------------------
# small picklable dataset wrappers
# ------------------------------------------------------------------------------------------------
class TransformSubset(Dataset):
    """``base[indices[i]]`` with ``transform`` applied to the input (the base returns raw inputs)."""

    def __init__(self, base: Dataset, indices: Sequence[int] | None, transform=None):
        self.base = base
        self.indices = None if indices is None else [int(i) for i in indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int):
        j = i if self.indices is None else self.indices[i]
        x, y = self.base[j]
        if self.transform is not None:
            x = self.transform(x)
        return x, y


def random_shift_crop(x: torch.Tensor, pad: int, fill: float = 0.0, generator=None) -> torch.Tensor:
    """Pad the last two dims by ``pad`` and crop back at a random offset (the same for all leading
    dims, e.g. every timestep of an event clip); see ``transforms.RandomShiftCrop``."""
    if pad <= 0:
        return x
    return RandomShiftCrop(int(pad), float(fill))(x, generator=generator)


# ------------------------------------------------------------------------------------------------
# base data module
# ------------------------------------------------------------------------------------------------
class BaseDataModule(pl.LightningDataModule):
    """Common constructor arguments, loaders and attributes of every snn-lightning data module.

    Subclasses set the class attributes ``name``, ``folder`` (sub-folder of ``$SNN_DATA_ROOT``),
    ``num_classes``, ``in_channels``, ``input_size``, ``is_event`` and fill ``train_set``,
    ``val_set`` and ``test_set`` in :meth:`setup`.
    """

    name: str = "base"
    folder: str = "base"
    num_classes: int = 0
    in_channels: int = 0
    input_size: int = 0
    is_event: bool = False

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        T: int = 1,
        seed: int = 0,
        download: bool = False,
        prefetch_factor: int | None = None,
        drop_last: bool = False,
        eval_batch_size: int | None = None,
    ):
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eval_batch_size = (
            self.batch_size if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size, 1)
        )
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.T = check_int("T", T, 1)
        self.seed = check_int("seed", seed, 0)
        if prefetch_factor is not None:
            prefetch_factor = check_int("prefetch_factor", prefetch_factor, 1)
        self.prefetch_factor = prefetch_factor
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        self.download = bool(download)
        self.drop_last = bool(drop_last)
        self.root = resolve_root(root, self.folder)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # -- loaders ---------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before requesting data loaders")
        kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            kwargs["persistent_workers"] = self.persistent_workers
            if self.prefetch_factor is not None:
                kwargs["prefetch_factor"] = self.prefetch_factor
        if train:  # order and augmentation a function of (seed, epoch, rank), resumable mid-epoch
            return ResumableLoader(dataset, batch_size=self.batch_size, seed=self.seed, drop_last=self.drop_last,
                                   num_workers=self.num_workers, pin_memory=self.pin_memory,
                                   **trainer_placement(self.trainer), **kwargs)
        generator = torch.Generator().manual_seed(self.seed)  # iterating never draws from the global RNG
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=self.drop_last if train else False,
            generator=generator,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, root={self.root!r}, batch_size={self.batch_size}, "
            f"T={self.T}, num_classes={self.num_classes}, in_channels={self.in_channels}, "
            f"input_size={self.input_size}, is_event={self.is_event})"
        )
