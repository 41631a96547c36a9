"""ImageNet (ILSVRC2012) as two ImageFolder trees."""

from __future__ import annotations

import os

import torch
from torchvision import datasets as tvd
from torchvision import transforms as T_

from ..errors import InvalidValue
from .common import BaseDataModule, DatasetNotFoundError, check_int

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_URL = "https://image-net.org/download-images.php"


def find_imagenet_folder(root: str) -> str | None:
    """The folder holding ``train/`` and ``val/``: ``root`` itself or ``root/ILSVRC2012``."""
    for base in (root, os.path.join(root, "ILSVRC2012")):
        if os.path.isdir(os.path.join(base, "train")) and os.path.isdir(os.path.join(base, "val")):
            return base
    return None


def _class_folders(folder: str) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir())


class ImageNetDataModule(BaseDataModule):
    """``imagenet``: ``ImageFolder(<base>/train)`` and ``ImageFolder(<base>/val)`` where ``<base>`` is
    ``root`` or ``root/ILSVRC2012``. Train: RandomResizedCrop(image_size) + HFlip; val (also the test
    split): Resize(image_size * 256/224) + CenterCrop(image_size); ImageNet mean/std.

    ``num_classes`` defaults to the number of class folders under ``train/`` when it exists (else
    1000). ImageNet cannot be downloaded automatically. Batches: x [B, 3, image_size, image_size].

    Throughput options (all off by default): ``normalize_on_device`` makes the workers return uint8
    images (4x fewer bytes through the worker queues, pinned memory and the host-to-device copy; no
    float work in the workers) and normalizes them in ``on_after_batch_transfer``, i.e. on the GPU, to
    the same float32 values; ``channels_last`` hands the model channels-last batches (useful only when
    the model itself is channels-last). Batches reaching the LightningModule are the same either way;
    a loader iterated by hand yields uint8 images with ``normalize_on_device``.
    """

    name = "imagenet"
    folder = "imagenet"
    in_channels = 3
    is_event = False

    def __init__(
        self,
        image_size: int = 224,
        num_classes: int | None = None,
        normalize_on_device: bool = False,
        channels_last: bool = False,
        **kwargs,
    ):
        # the common loader keywords (root, batch_size, workers, seed, ...) are BaseDataModule's
        super().__init__(**kwargs)
        self.image_size = check_int("image_size", image_size, 1)
        self.input_size = self.image_size
        self.resize_size = max(self.image_size, int(round(self.image_size * 256 / 224)))
        if num_classes is None:
            base = find_imagenet_folder(self.root)
            num_classes = len(_class_folders(os.path.join(base, "train"))) if base else 1000
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.normalize_on_device = bool(normalize_on_device)
        self.channels_last = bool(channels_last)

    def _to_tensor(self) -> list:
        if self.normalize_on_device:
            return [T_.PILToTensor()]  # uint8 [3, H, W]; normalized in on_after_batch_transfer
        return [T_.ToTensor(), T_.Normalize(IMAGENET_MEAN, IMAGENET_STD)]

    def train_transform(self):
        return T_.Compose([
            T_.RandomResizedCrop(self.image_size),
            T_.RandomHorizontalFlip(),
            *self._to_tensor(),
        ])

    def test_transform(self):
        return T_.Compose([
            T_.Resize(self.resize_size),
            T_.CenterCrop(self.image_size),
            *self._to_tensor(),
        ])

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """On the device: uint8 → normalized float32 (``normalize_on_device``), then channels-last."""
        x, y = batch
        if self.normalize_on_device and x.dtype == torch.uint8:
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, -1, 1, 1) * 255.0
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, -1, 1, 1) * 255.0
            x = (x.float() - mean) / std  # = (x / 255 - mean) / std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def data_folder(self) -> str:
        base = find_imagenet_folder(self.root)
        if base is None:
            raise DatasetNotFoundError(
                f"ImageNet not found at {self.root}: expected {os.path.join(self.root, 'train')} and "
                f"{os.path.join(self.root, 'val')} (or ILSVRC2012/train and ILSVRC2012/val), one folder per "
                f"class; download ILSVRC2012 from {IMAGENET_URL} (registration required, no automatic "
                f"download) and extract it there"
            )
        return base

    def prepare_data(self) -> None:
        self.data_folder()

    def setup(self, stage: str | None = None) -> None:
        base = self.data_folder()
        if stage in (None, "fit") and self.train_set is None:
            train_classes = _class_folders(os.path.join(base, "train"))
            val_classes = _class_folders(os.path.join(base, "val"))
            if train_classes != val_classes:
                only_t = sorted(set(train_classes) - set(val_classes))[:5]
                only_v = sorted(set(val_classes) - set(train_classes))[:5]
                raise InvalidValue(
                    f"ImageNet class folders differ between {base}/train and {base}/val "
                    f"(only in train: {only_t}, only in val: {only_v}); labels would not match"
                )
            if len(train_classes) > self.num_classes:
                raise InvalidValue(
                    f"ImageNet at {base} has {len(train_classes)} classes but num_classes={self.num_classes}"
                )
            self.train_set = tvd.ImageFolder(os.path.join(base, "train"), transform=self.train_transform())
        if self.val_set is None:
            self.val_set = tvd.ImageFolder(os.path.join(base, "val"), transform=self.test_transform())
            self.test_set = self.val_set
