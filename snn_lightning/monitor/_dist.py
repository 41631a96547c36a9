"""Summing recorder state across processes (DDP): one rule for when there is anything to sum."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def is_distributed() -> bool:
    """True inside an initialized process group of more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_stores(stores: Iterable[Mapping[str, torch.Tensor]]) -> None:
    """Sum every tensor of every store in place, in sorted key order (the same order on every rank)."""
    import torch.distributed as dist

    for store in stores:
        for key in sorted(store):
            dist.all_reduce(store[key])
