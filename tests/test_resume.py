"""Resume is the same computation: bit-identical weights, BN statistics, MP-Init buffers and optimizer state.

3 epochs straight vs 1 epoch + resume to 3 (from the epoch-end ``last.ckpt``), and a run that dies
at an arbitrary step after a step checkpoint + resume (in process: an exception; in
``tests/test_faults.py``: a real SIGKILL), for the default config and for TEBN + TET + ``sg=rs``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict

from helpers import compose_cfg
from snn_lightning import runs
from snn_lightning.cli.train import train
from snn_lightning.data.sampling import EpochSampler, PerSampleSeeded, ResumableLoader, epoch_permutation, mix_seed

# tiny but real: the default digits setup, 5 batches of 32 per epoch, random ±1 px shifts on
TINY = ["logger=none", "callbacks=none", "test=false", "batch_size=32", "data.augment=true",
        "+trainer.limit_train_batches=5", "+trainer.limit_val_batches=2", "+trainer.num_sanity_val_steps=0"]
VARIANTS = {"default": [], "tebn_tet_rs": ["norm=tebn", "loss=tet", "sg=rs"]}


class StopAfterEpochs(Callback):
    """Stops the run cleanly after ``epochs`` epochs (a 3-epoch run cut short keeps its 3-epoch schedule:
    a run started with max_epochs=1 would resume with the cosine schedule of 1 epoch, T_max = max_epochs)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class Crash(Callback):
    """Dies (raises) at the end of training step ``at_step``, after the step checkpoints before it."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise SystemError(f"planted crash at step {self.at_step}")


def _cfg(out: Path, extra: list[str], epochs: int, every_n: int | None = None, **more):
    # the same thread count for every run: a CPU reduction split over other threads rounds differently
    # (conftest sets 2 per test, but the module fixture runs before it)
    torch.set_num_threads(1)
    cfg = compose_cfg(out, TINY + [f"trainer.max_epochs={epochs}", *extra])
    with open_dict(cfg):
        cfg.callbacks = {"model_checkpoint": {
            "_target_": "snn_lightning.callbacks.RunCheckpoint", "dirpath": str(runs.checkpoint_dir(out)),
            "monitor": "val/acc", "mode": "max", "every_n_train_steps": every_n}}
        for k, v in more.items():
            cfg[k] = v
    return cfg


def _final_state(run: Path) -> dict:
    return torch.load(runs.checkpoint_dir(run) / runs.LAST_CKPT, map_location="cpu", weights_only=False)


def max_abs_diff(a, b) -> float:
    """max |a - b| over two nested structures of tensors/numbers (inf when their structure differs)."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
            return float("inf")
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return float("inf")
        return max([max_abs_diff(a[k], b[k]) for k in a] or [0.0])
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return float("inf")
        return max([max_abs_diff(x, y) for x, y in zip(a, b)] or [0.0])
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b)
    return 0.0 if a == b else float("inf")


def assert_same_state(straight: dict, resumed: dict) -> None:
    sd_a, sd_b = straight["state_dict"], resumed["state_dict"]
    assert sd_a.keys() == sd_b.keys()
    assert any(k.endswith("mp_init_mean") for k in sd_a) and any(k.endswith("running_mean") for k in sd_a)
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), f"{k}: max |diff| {max_abs_diff(sd_a[k], sd_b[k])}"
    assert max_abs_diff(straight["optimizer_states"], resumed["optimizer_states"]) == 0.0
    assert straight["global_step"] == resumed["global_step"] and straight["epoch"] == resumed["epoch"]


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory):
    """The uninterrupted 3-epoch run of every variant (shared by the tests)."""
    out = {}
    for name, extra in VARIANTS.items():
        run = tmp_path_factory.mktemp(f"straight_{name}")
        train(_cfg(run, extra, epochs=3))
        out[name] = _final_state(run)
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_epoch_then_resume_equals_three_straight(variant, straight_runs, tmp_path):
    extra = VARIANTS[variant]
    cfg = _cfg(tmp_path, extra, epochs=3)
    with open_dict(cfg):
        cfg.callbacks.stop = {"_target_": f"{__name__}.StopAfterEpochs", "epochs": 1}
    train(cfg)
    first = _final_state(tmp_path)
    assert first["epoch"] == 0 and first["global_step"] == 5
    train(_cfg(tmp_path, extra, epochs=3, ckpt_path="auto"))  # resumes from this folder's last.ckpt
    assert_same_state(straight_runs[variant], _final_state(tmp_path))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_crash_after_step_checkpoint_then_resume_equals_straight(variant, straight_runs, tmp_path):
    extra = VARIANTS[variant]
    cfg = _cfg(tmp_path, extra, epochs=3, every_n=3)
    with open_dict(cfg):
        cfg.callbacks.crash = {"_target_": f"{__name__}.Crash", "at_step": 8}
    with pytest.raises(SystemError, match="planted crash"):
        train(cfg)
    saved = _final_state(tmp_path)
    assert saved["global_step"] == 6  # the step checkpoint mid-epoch 2, not the crash point
    train(_cfg(tmp_path, extra, epochs=3, every_n=3, ckpt_path="auto"))
    assert_same_state(straight_runs[variant], _final_state(tmp_path))


@pytest.mark.slow
def test_crash_and_resume_with_persistent_workers_is_bit_identical(straight_runs, tmp_path):
    """Two persistent loader workers: augmentation is seeded per sample, so who draws it does not matter."""
    workers = ["data.num_workers=2", "+data.persistent_workers=true"]
    cfg = _cfg(tmp_path, workers, epochs=3, every_n=3)
    with open_dict(cfg):
        cfg.callbacks.crash = {"_target_": f"{__name__}.Crash", "at_step": 8}
    with pytest.raises(SystemError, match="planted crash"):
        train(cfg)
    train(_cfg(tmp_path, workers, epochs=3, every_n=3, ckpt_path="auto"))
    assert_same_state(straight_runs["default"], _final_state(tmp_path))  # and equal to the run without workers


# --- the sampler and loader on their own ---------------------------------------------------------------
def test_epoch_order_is_a_function_of_seed_and_epoch():
    assert epoch_permutation(50, 3, 1) == epoch_permutation(50, 3, 1)
    assert epoch_permutation(50, 3, 1) != epoch_permutation(50, 3, 2)
    assert epoch_permutation(50, 3, 1) != epoch_permutation(50, 4, 1)
    assert sorted(epoch_permutation(50, 3, 1)) == list(range(50))
    assert mix_seed(1, 2) != mix_seed(2, 1)


def test_ranks_partition_the_epoch():
    shares = [list(EpochSampler(10, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shares)  # padded to 12 with the permutation's head
    got = sorted(i for s in shares for _, i in s)
    assert set(got) == set(range(10)) and len(got) == 12


def test_per_sample_seeding_does_not_touch_the_global_state():
    data = [torch.zeros(1)] * 4

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(1)

    ds = PerSampleSeeded(Noisy(), seed=7)
    before = torch.get_rng_state()
    a, b = ds[(2, 1)], ds[(2, 1)]
    assert torch.equal(a, b) and not torch.equal(ds[(2, 1)], ds[(3, 1)])
    assert torch.equal(before, torch.get_rng_state()) and len(data) == 4


def test_loader_resumes_inside_an_epoch():
    ds = torch.utils.data.TensorDataset(torch.arange(20).float())
    done = {"n": 0}
    loader = ResumableLoader(ds, batch_size=4, seed=5, progress=lambda: (done["n"], 5))
    loader.epoch_sampler.set_epoch(2)
    full = [b[0].tolist() for b in loader]
    done["n"] = 2
    state = loader.state_dict()
    fresh = ResumableLoader(ds, batch_size=4, seed=5)
    fresh.load_state_dict(state)
    assert [b[0].tolist() for b in fresh] == full[2:]
    assert [b[0].tolist() for b in fresh] == full  # the skip applies to one iteration only
    done["n"] = 5
    fresh.load_state_dict(loader.state_dict())  # saved at an epoch end: next epoch from its start
    assert fresh.epoch_sampler.epoch == 3
    with pytest.raises(ValueError, match="batch_size"):
        ResumableLoader(ds, batch_size=5, seed=5).load_state_dict(state)
