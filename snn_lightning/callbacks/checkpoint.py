"""Checkpoints a long run can trust: ``last.ckpt`` is always the latest state, with every random state.

* :class:`RunCheckpoint` keeps Lightning's best-k checkpoints (monitored, written after validation)
  and, independently of the monitor, rewrites ``last.ckpt`` at every training-epoch end and every
  ``every_n_train_steps`` optimizer steps. (Lightning 2.6's ``save_last`` on a monitored
  ``ModelCheckpoint`` is rewritten only when the monitored value improves, so its ``last.ckpt`` could
  be epochs old.)
* :class:`RandomStateCallback` stores the torch (CPU and CUDA), numpy and Python random states in
  every checkpoint and puts them back when training resumes, so a resumed run draws the numbers
  the uninterrupted one would have drawn. (The data order and augmentation do not depend on them:
  see :mod:`snn_lightning.data.sampling`.)
* :func:`save_checkpoint_atomic` writes through a temporary file and a rename, so a kill during the
  write never leaves a truncated ``last.ckpt``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .. import runs

RNG_KEY = "snn_rng_states"


def save_checkpoint_atomic(trainer, path: str | os.PathLike) -> Path:
    """``trainer.save_checkpoint`` to ``path`` via a temporary file (every rank must call it)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(tmp)  # collective: rank 0 writes, all ranks wait
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("snn_last_checkpoint")
    return path


def describe_checkpoint(ckpt: dict) -> str:
    """``epoch E, step S, val/acc X`` of a loaded checkpoint (val/acc when the checkpoint knows it)."""
    parts = [f"epoch {ckpt.get('epoch', '?')}", f"step {ckpt.get('global_step', '?')}"]
    val = ckpt.get(RUN_META_KEY, {}).get("val/acc")
    if val is None:
        for state in ckpt.get("callbacks", {}).values():
            if isinstance(state, dict) and state.get("monitor") == "val/acc" and state.get("current_score") is not None:
                val = float(state["current_score"])
    parts.append(f"val/acc {val:.4f}" if val is not None else "val/acc n/a")
    return ", ".join(parts)


RUN_META_KEY = "snn_run"


class RunCheckpoint(ModelCheckpoint):
    """Best-k checkpoints on ``monitor`` plus a ``last.ckpt`` that is always the latest state.

    ``every_n_train_steps`` (null: only at epoch ends) applies to ``last.ckpt`` only; the best-k
    checkpoints are compared after each validation.
    """

    def __init__(self, dirpath: str, *args, every_n_train_steps: int | None = None, last_name: str = runs.LAST_CKPT,
                 **kwargs):
        kwargs["save_last"] = False  # we write last.ckpt ourselves, independent of the monitor
        super().__init__(dirpath, *args, **kwargs)
        if every_n_train_steps is not None and (isinstance(every_n_train_steps, bool) or int(every_n_train_steps) < 1):
            raise ValueError(f"every_n_train_steps must be a positive integer or null, got {every_n_train_steps!r}")
        self.last_every_n = int(every_n_train_steps) if every_n_train_steps else None
        self.last_name = last_name
        self._last_step_saved = -1

    @property
    def last_path(self) -> Path:
        return Path(self.dirpath) / self.last_name

    def write_last(self, trainer) -> None:
        # fast_dev_run included (Lightning skips its checkpoints there): `debug=fast` leaves a last.ckpt to evaluate
        if trainer.sanity_checking or self._last_step_saved == trainer.global_step:
            return
        save_checkpoint_atomic(trainer, self.last_path)
        self._last_step_saved = trainer.global_step
        self.last_model_path = str(self.last_path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.last_every_n and trainer.global_step % self.last_every_n == 0:
            self.write_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # best-k when validation runs in the epoch
        self.write_last(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        val = trainer.callback_metrics.get("val/acc")
        checkpoint[RUN_META_KEY] = {"val/acc": None if val is None else float(val)}
        return super().on_save_checkpoint(trainer, pl_module, checkpoint)


def capture_rng_states() -> dict:
    """The global random states, in types ``torch.load(weights_only=True)`` accepts (tensors, ints, tuples)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


class RandomStateCallback(Callback):
    """Saves the global random states in every checkpoint; restores them when training (re)starts.

    Restored at ``on_train_start`` rather than at load time: between loading and the first step
    Lightning runs the sanity check and builds the loaders, which must not shift the streams.
    """

    def __init__(self) -> None:
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint[RNG_KEY] = capture_rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._pending = checkpoint.get(RNG_KEY)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            restore_rng_states(self._pending)
            self._pending = None
