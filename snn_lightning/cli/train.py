"""`snn-train`: train (and test) a spiking network with Hydra overrides.

    snn-train                                   # digits, small CNN, TrSG + MP-Init + tdBN
    snn-train model=resnet19 data=cifar100 T=4 neuron.v_threshold=0.5
    snn-train -m sg=as,rs,trsg neuron.reset=soft,hard
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig

from .. import experiment as ex
from .. import runs
from .._checks import check_T
from ..errors import UserError
from ._common import error_line, fail
from ._hydra import hydra_cli


def check_multirun_strategy(trainer) -> None:
    """Refuse plain ``ddp`` with several local devices inside a local multirun.

    Lightning's ``ddp`` re-executes this script (with the same ``-m`` sweep) for every extra device,
    so each child rank would run the whole sweep. ``ddp_spawn`` re-executes nothing, and on SLURM
    (hydra/launcher=slurm) the cluster starts one task per device (no launcher), so neither is refused.
    """
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if _is_multirun() and isinstance(launcher, _SubprocessScriptLauncher) and trainer.num_devices > 1:
        raise UserError(
            "trainer.strategy=ddp re-launches the script for each extra device and, under a multirun, every child "
            "would re-run the whole sweep; use trainer.strategy=ddp_spawn here, or hydra/launcher=slurm"
        )


def train(cfg: DictConfig) -> dict:
    """Fit and test as the config says; returns the final metrics. Raises UserError on bad input."""
    import lightning.pytorch as pl

    check_T(cfg.T)
    out_dir = Path(cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    loggers = ex.build_loggers(cfg)
    callbacks = ex.build_callbacks(cfg, loggers)
    trainer = ex.build_trainer(cfg, callbacks, loggers)
    check_multirun_strategy(trainer)
    per_device = ex.per_device_batch_size(cfg.batch_size, trainer.world_size, trainer.num_devices, trainer.num_nodes)
    dm = ex.build_datamodule(cfg, per_device)
    net = ex.build_net(cfg, dm)
    module = ex.build_module(cfg, net, dm)
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise UserError(f"ckpt_path {cfg.ckpt_path} does not exist")

    if cfg.get("train", True):
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    metrics = ex.scalar_metrics(trainer.callback_metrics)
    best = None
    if cfg.get("test", True):
        ckpt_cb = trainer.checkpoint_callback
        best = getattr(ckpt_cb, "best_model_path", "") or None
        trainer.test(module, datamodule=dm, ckpt_path=best if cfg.get("train", True) else cfg.get("ckpt_path"))
        metrics.update(ex.scalar_metrics(trainer.callback_metrics))
    metrics["global_step"] = trainer.global_step
    metrics["epoch"] = trainer.current_epoch
    finish_wandb(loggers)
    if trainer.is_global_zero:
        runs.write_final_metrics(out_dir, metrics, best_checkpoint=best)
        summarize(metrics, out_dir, best)
    return metrics


def finish_wandb(loggers: list) -> None:
    """Close wandb runs now, so its sync hint comes before our summary and nothing is left open."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def summarize(metrics: dict, out_dir: Path, best: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    table = Table(title="snn-lightning: final metrics", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [k for k in sorted(metrics) if k.startswith(("test/", "val/acc", "train/loss_epoch"))]
    for k in keys:
        table.add_row(k, f"{metrics[k]:.4f}")
    console.print(table)
    # plain print: file paths must stay on one line to be copied
    print(f"run folder:      {out_dir}")
    if best:
        print(f"best checkpoint: {best}")
    if (out_dir / "wandb").is_dir():
        print(f"wandb (offline): wandb sync {out_dir / 'wandb'}/offline-run-*")
    if "test/acc" in metrics:
        print(f"final test accuracy: {100 * metrics['test/acc']:.2f}%")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job: records its status so a sweep can skip finished jobs and survive failed ones."""
    out_dir = Path(cfg.paths.output_dir)
    multirun = _is_multirun()
    status = runs.read_status(out_dir)
    if multirun and status and status.get("status") == runs.FINISHED and cfg.get("skip_finished", True):
        print(f"skipping finished job {out_dir}")
        return status.get("test_acc")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        os.environ.setdefault(var, str(out_dir / "wandb_home" if var != "WANDB_DIR" else out_dir))
    started = time.time()
    writer = ex.is_launch_rank_zero()  # the other ranks of a ddp / SLURM job run this too, in the same folder

    def record(state: str, **fields) -> None:
        if writer:
            runs.write_status(out_dir, state, started=started, **fields)
            if state == runs.FAILED:
                (out_dir / runs.ERROR_LOG).write_text(traceback.format_exc())

    record(runs.RUNNING, pid=os.getpid())
    try:
        metrics = train(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep must survive one broken job
        user_error = isinstance(e, UserError)
        msg = error_line(e) if user_error else f"{type(e).__name__}: {error_line(e)}"
        record(runs.FAILED, error=msg)
        if multirun:
            if not user_error:
                traceback.print_exc()
            print(f"error: job {out_dir.name} failed: {msg}", file=sys.stderr)
            return None
        if user_error:
            fail(msg)
        raise
    test_acc = metrics.get("test/acc")
    record(runs.FINISHED, seconds=time.time() - started, test_acc=test_acc)
    return test_acc


main = hydra_cli(run_job, "train")

if __name__ == "__main__":
    main()
