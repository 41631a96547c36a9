"""CIFAR-10 / CIFAR-100 through torchvision, with the reference crop+flip recipe."""

from __future__ import annotations

import os
import pickle

import torch
from torchvision import datasets as tvd
from torchvision import transforms as T_

from ..errors import InvalidValue
from .common import BaseDataModule, DatasetNotFoundError, TransformSubset, check_fraction, one_line

CIFAR10_MEAN = (0.4913, 0.4821, 0.4465)
CIFAR10_STD = (0.2470, 0.2434, 0.2615)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


class CIFAR10Unverified(tvd.CIFAR10):
    """torchvision's CIFAR10 reader with the md5 checks switched off (the files only need to exist)."""

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class CIFAR100Unverified(tvd.CIFAR100):
    """torchvision's CIFAR100 reader with the md5 checks switched off."""

    train_list = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _CIFARDataModule(BaseDataModule):
    """Shared CIFAR logic. Validation is the test split (as in the paper) unless ``val_fraction > 0``
    carves a seeded random slice of the training set (evaluated with the test transform)."""

    title = "CIFAR"
    dataset_cls: type = tvd.CIFAR10
    unverified_cls: type = CIFAR10Unverified
    archive = ""
    mean: tuple = ()
    std: tuple = ()
    in_channels = 3
    input_size = 32
    is_event = False

    def __init__(
        self,
        val_fraction: float = 0.0,
        verify_md5: bool = True,
        augment: bool = True,
        **kwargs,
    ):
        # the common loader keywords (root, batch_size, workers, seed, ...) are BaseDataModule's
        super().__init__(**kwargs)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.verify_md5 = bool(verify_md5)
        self.augment = bool(augment)

    # -- transforms -------------------------------------------------------------------------------
    def train_transform(self):
        aug = [T_.RandomCrop(32, padding=4), T_.RandomHorizontalFlip()] if self.augment else []
        return T_.Compose([*aug, T_.ToTensor(), T_.Normalize(self.mean, self.std)])

    def test_transform(self):
        return T_.Compose([T_.ToTensor(), T_.Normalize(self.mean, self.std)])

    # -- files ------------------------------------------------------------------------------------
    @property
    def _reader(self) -> type:
        return self.dataset_cls if self.verify_md5 else self.unverified_cls

    @property
    def data_folder(self) -> str:
        return os.path.join(self.root, self.dataset_cls.base_folder)

    def expected_files(self) -> list[str]:
        cls = self.dataset_cls
        return [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]

    def missing_files(self) -> list[str]:
        return [f for f in self.expected_files() if not os.path.isfile(os.path.join(self.data_folder, f))]

    def _not_found(self, missing: list[str]) -> DatasetNotFoundError:
        what = "folder missing" if not os.path.isdir(self.data_folder) else "missing " + ", ".join(missing)
        return DatasetNotFoundError(
            f"{self.title} not found at {self.data_folder} ({what}): download {self.archive} from {CIFAR_URL} "
            f"and extract it into {self.root}, or set data.download=true"
        )

    def _open(self, train: bool, transform=None):
        if not self.download:
            missing = self.missing_files()
            if missing:
                raise self._not_found(missing)
        try:
            return self._reader(self.root, train=train, transform=transform, download=self.download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            missing = self.missing_files()
            if missing:
                raise self._not_found(missing) from None
            raise DatasetNotFoundError(
                f"{self.title} at {self.data_folder} failed torchvision's md5 check (corrupted or not the official "
                f"files; torchvision said: {one_line(err)}): re-download {self.archive} from {CIFAR_URL}, "
                f"or set verify_md5=false to skip the md5 check"
            ) from None
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as err:
            # verify_md5=false: a damaged pickle reaches torchvision's reader; name the file that fails
            raise DatasetNotFoundError(
                f"{self.title} file {self._first_unreadable() or self.data_folder} cannot be read "
                f"({type(err).__name__}: {one_line(err)}): re-download {self.archive} from {CIFAR_URL}"
            ) from None

    def _first_unreadable(self) -> str | None:
        """The first expected pickle that does not load (None when every one does)."""
        for name in self.expected_files():
            path = os.path.join(self.data_folder, name)
            try:
                with open(path, "rb") as f:
                    pickle.load(f, encoding="latin1")
            except Exception:  # noqa: BLE001 - any failure means this is the damaged file
                return path
        return None

    # -- lightning hooks --------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # downloads (only when download=True) on one process; otherwise just fails early if missing
        if self.download:
            self._open(train=True)
            self._open(train=False)
        else:
            missing = self.missing_files()
            if missing:
                raise self._not_found(missing)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_base = self._open(train=True)
        test_set = self._open(train=False, transform=self.test_transform())
        n = len(train_base)
        if self.val_fraction > 0:
            n_val = max(1, int(round(n * self.val_fraction)))
            if n_val >= n:
                raise InvalidValue(f"val_fraction={self.val_fraction} leaves no training images out of {n}")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
            val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
            self.train_set = TransformSubset(train_base, train_idx, self.train_transform())
            self.val_set = TransformSubset(train_base, val_idx, self.test_transform())
        else:
            self.train_set = TransformSubset(train_base, None, self.train_transform())
            self.val_set = test_set
        self.test_set = test_set


class CIFAR10DataModule(_CIFARDataModule):
    """``cifar10``: torchvision CIFAR10 at ``<root>/cifar-10-batches-py``; train RandomCrop(32, pad 4)
    + HFlip + ToTensor + Normalize, test ToTensor + Normalize. Batches: x [B, 3, 32, 32] float32."""

    name = "cifar10"
    folder = "cifar10"
    title = "CIFAR-10"
    num_classes = 10
    dataset_cls = tvd.CIFAR10
    unverified_cls = CIFAR10Unverified
    archive = "cifar-10-python.tar.gz"
    mean = CIFAR10_MEAN
    std = CIFAR10_STD


class CIFAR100DataModule(_CIFARDataModule):
    """``cifar100``: torchvision CIFAR100 at ``<root>/cifar-100-python`` (fine labels), same recipe."""

    name = "cifar100"
    folder = "cifar100"
    title = "CIFAR-100"
    num_classes = 100
    dataset_cls = tvd.CIFAR100
    unverified_cls = CIFAR100Unverified
    archive = "cifar-100-python.tar.gz"
    mean = CIFAR100_MEAN
    std = CIFAR100_STD
