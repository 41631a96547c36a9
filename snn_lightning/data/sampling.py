"""A training order that is a function of (seed, epoch, rank), and a loader that can resume mid-epoch.

Why: a resumed run must see exactly the batches, in exactly the order, with exactly the augmentation
the uninterrupted run would have seen. Three pieces make that true without saving any generator:

* :class:`EpochSampler` draws epoch ``e``'s permutation from a generator seeded with ``(seed, e)``
  and gives rank ``r`` of ``w`` every ``w``-th index of it (a ``DistributedSampler``, so Lightning
  leaves it in place under DDP). It yields ``(epoch, index)`` keys.
* :class:`PerSampleSeeded` wraps the dataset: item ``(epoch, index)`` is produced with torch, numpy
  and Python's ``random`` seeded from ``(seed, epoch, index)`` (and put back afterwards), so random
  augmentation is the same whichever worker or process produces it and however far the loader
  pre-fetched before a checkpoint.
* :class:`ResumableLoader` has ``state_dict``/``load_state_dict`` (Lightning saves them in every
  checkpoint and restores them before it iterates): the epoch and how many batches of it the
  training loop has finished; after a restore the first iteration skips those batches. Worker seeds
  come from a generator seeded with ``(seed, epoch, rank)``, so iterating never draws from the
  global random state either.

Plain PyTorch; ``progress`` is how the loader learns how many batches the trainer has finished (the
data module passes a function reading Lightning's batch progress).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64-style mixing: neighbouring inputs give unrelated seeds)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & _MASK


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """Epoch ``epoch``'s order of ``range(n)``: the same for the same (seed, epoch), on every machine."""
    g = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(n, generator=g).tolist()


@contextmanager
def seeded(seed: int):
    """Run a block with torch (CPU), numpy and ``random`` seeded from ``seed``; restore them afterwards."""
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


class EpochSampler(DistributedSampler):
    """Yields ``(epoch, index)`` keys: rank ``rank``'s share of epoch ``epoch``'s permutation.

    ``shuffle=False`` keeps the natural order. With ``drop_last=False`` the permutation is padded
    with its own head so every rank gets the same count (``DistributedSampler``'s rule).
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        # no super().__init__: it would need a dataset and a process group; we set what it sets
        self.n = int(num_samples)
        self.num_replicas, self.rank = int(world_size), int(rank)
        self.seed, self.shuffle, self.drop_last = int(seed), bool(shuffle), bool(drop_last)
        self.epoch = 0
        if self.drop_last and self.n % self.num_replicas:
            self.num_samples = self.n // self.num_replicas
        else:
            self.num_samples = math.ceil(self.n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.skip = 0  # samples of this rank's share skipped by the next iteration only

    def order(self, epoch: int) -> list[int]:
        idx = epoch_permutation(self.n, self.seed, epoch) if self.shuffle else list(range(self.n))
        if self.total_size > len(idx):
            reps = math.ceil(self.total_size / max(len(idx), 1))
            idx = (idx * reps)[: self.total_size]
        return idx[: self.total_size][self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        return iter([(epoch, i) for i in self.order(epoch)[skip:]])

    def __len__(self) -> int:
        return self.num_samples


class PerSampleSeeded(Dataset):
    """``base[index]`` for key ``(epoch, index)``, drawn under ``seeded(mix_seed(seed, epoch, index))``."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, index = key
            with seeded(mix_seed(self.seed, epoch, index, 0x5A)):
                return self.base[index]
        return self.base[key]


class ResumableLoader(DataLoader):
    """A training ``DataLoader`` over an :class:`EpochSampler` whose position survives a checkpoint.

    ``progress()`` returns ``(batches of the current epoch the training loop has processed, batches
    the epoch has)`` (the loader itself runs ahead of the training loop because batches are
    pre-fetched, and an epoch may be cut short by ``limit_train_batches``).
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, progress: Callable[[], tuple[int, float]] | None = None, **kwargs):
        self.epoch_sampler = EpochSampler(len(dataset), seed=seed, shuffle=True, rank=rank,
                                          world_size=world_size, drop_last=drop_last)
        self._seed, self._rank = int(seed), int(rank)
        self._progress = progress
        super().__init__(PerSampleSeeded(dataset, seed), batch_size=batch_size, sampler=self.epoch_sampler,
                         drop_last=drop_last, generator=torch.Generator(), **kwargs)

    def __iter__(self):
        # worker base seeds are drawn from self.generator: make them a function of (seed, epoch, rank)
        self.generator.manual_seed(mix_seed(self._seed, self.epoch_sampler.epoch, self._rank, 0xA5))
        return super().__iter__()

    def state_dict(self) -> dict:
        done, total = self._progress() if self._progress is not None else (0, len(self))
        return {"epoch": self.epoch_sampler.epoch, "batches": int(done), "epoch_done": bool(done >= total),
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("batch_size", self.batch_size) != self.batch_size:
            raise ValueError(f"the checkpoint's training loader had batch_size {state['batch_size']}, this run has "
                             f"{self.batch_size}; resume with the same batch_size and number of devices")
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if state.get("epoch_done") or batches >= len(self):  # saved at an epoch end: the next starts afresh
            epoch, batches = epoch + 1, 0
        self.epoch_sampler.set_epoch(epoch)
        self.epoch_sampler.skip = batches * self.batch_size


def trainer_placement(trainer) -> dict:
    """``rank``, ``world_size`` and ``progress`` of a :class:`ResumableLoader` driven by a Lightning trainer.

    ``progress`` reads Lightning's count of the batches it has processed in the current epoch (the
    number a checkpoint written at that moment has behind it); without a trainer: rank 0 of 1.
    """
    if trainer is None:
        return {"rank": 0, "world_size": 1, "progress": None}

    def progress() -> tuple[int, float]:
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed, trainer.num_training_batches

    return {"rank": int(trainer.global_rank), "world_size": int(trainer.world_size), "progress": progress}
