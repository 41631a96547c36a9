"""LightningDataModules of snn-lightning.

Every module takes ``root``, ``batch_size`` (per process), ``num_workers``, ``pin_memory``,
``persistent_workers``, ``T``, ``seed`` and ``download`` and exposes ``num_classes``,
``in_channels``, ``input_size``, ``is_event`` and ``name``. Static batches are ``x [B, C, H, W]``;
event batches are ``x [B, T, C, H, W]``; ``y`` is int64 ``[B]``.

``root`` resolution: the explicit argument, else ``$SNN_DATA_ROOT/<name>``, else ``./data/<name>``.
"""

from __future__ import annotations

from .cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    CIFAR10DataModule,
    CIFAR100DataModule,
)
from .cifar10_dvs import CIFAR10DVSDataModule
from .common import ENV_DATA_ROOT, BaseDataModule, DatasetNotFoundError, EventFileError, resolve_root
from .digits import DigitsDataModule
from .dvs_gesture import DVSGestureDataModule
from .events import EventDataModule, EventFrameDataset
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, ImageNetDataModule
from .ncaltech101 import NCaltech101DataModule
from .nmnist import NMNISTDataModule

__all__ = [
    "BaseDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFAR10DVSDataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "DVSGestureDataModule",
    "EventDataModule",
    "EventFrameDataset",
    "ENV_DATA_ROOT",
    "EventFileError",
    "ImageNetDataModule",
    "NCaltech101DataModule",
    "NMNISTDataModule",
    "resolve_root",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
