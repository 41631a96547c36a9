"""LightningDataModules of snn-lightning.

Every module takes ``root``, ``batch_size`` (per process), ``num_workers``, ``pin_memory``,
``persistent_workers``, ``T``, ``seed`` and ``download`` and exposes ``num_classes``,
``in_channels``, ``input_size``, ``is_event`` and ``name``. Static batches are ``x [B, C, H, W]``;
event batches are ``x [B, T, C, H, W]``; ``y`` is int64 ``[B]``.

``root`` resolution: the explicit argument, else ``$SNN_DATA_ROOT/<name>``, else ``./data/<name>``.
"""

from __future__ import annotations

import inspect

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

DATAMODULES: dict[str, type[BaseDataModule]] = {
    "digits": DigitsDataModule,
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "imagenet": ImageNetDataModule,
    "cifar10_dvs": CIFAR10DVSDataModule,
}


def _accepted_args(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                names.append(p.name)
        if klass is BaseDataModule:
            break
    return names


def build_datamodule(name: str, **kwargs) -> BaseDataModule:
    """Instantiate the data module registered as ``name`` (see ``DATAMODULES``) with ``kwargs``."""
    key = str(name).strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in DATAMODULES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATAMODULES)}")
    cls = DATAMODULES[key]
    accepted = _accepted_args(cls)
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(unknown)} for dataset {key!r}; accepted: {', '.join(accepted)}"
        )
    return cls(**kwargs)


__all__ = [
    "BaseDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFAR10DVSDataModule",
    "DATAMODULES",
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
    "build_datamodule",
    "resolve_root",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
