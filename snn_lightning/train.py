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

import hydra
from omegaconf import DictConfig, OmegaConf

from .runtime import (
    CONF_DIR,
    METRICS_FILE,
    STATUS_FILE,
    UserError,
    checked_main,
    check_T,
    fail,
    per_device_batch_size,
    read_status,
    write_json,
)

from .data.common import DatasetNotFoundError, EventFileError

# reported in one line (the traceback goes to <run>/error.log); anything else is a bug and shows its traceback
USER_ERRORS = (UserError, ValueError, FileNotFoundError, EventFileError)


def instantiate_dict(cfg: DictConfig | None) -> list:
    from hydra.utils import instantiate

    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list):
    from hydra.utils import instantiate

    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


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


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher set it (known before the Trainer exists).

    Plain ``ddp`` re-runs the whole script, so ``run_job``, in every rank (LOCAL_RANK set), in the same
    run folder; SLURM (submitit) runs the job function in every task (SLURM_PROCID); torchrun sets RANK.
    """
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


def build_datamodule(cfg: DictConfig, per_device_batch: int):
    from hydra.utils import instantiate

    return instantiate(cfg.data, batch_size=per_device_batch, T=cfg.T)


def build_net(cfg: DictConfig, dm):
    from hydra.utils import instantiate

    import inspect

    from .models import MODELS

    neuron = OmegaConf.to_container(cfg.neuron, resolve=True)
    factory = instantiate(cfg.model)
    extra = {}
    backbone = MODELS.get(cfg.model.get("name"))
    if backbone is not None and "input_size" in inspect.signature(backbone).parameters:
        extra["input_size"] = dm.input_size  # the classifier's width depends on it
    net = factory(
        num_classes=dm.num_classes, in_channels=dm.in_channels, T=cfg.T, norm=cfg.norm.kind, neuron=neuron, **extra
    )
    if cfg.get("channels_last"):
        import torch

        net = net.to(memory_format=torch.channels_last)  # conv weights NHWC: faster convolutions on GPUs
    return net


def build_module(cfg: DictConfig, net, dm):
    from hydra.utils import instantiate

    from .module import SNNModule

    opt_cfg = OmegaConf.to_container(cfg.optimizer, resolve=True)
    neuron_wd = opt_cfg.pop("neuron_weight_decay", True)
    sched = instantiate(cfg.scheduler) if cfg.get("scheduler") and "_target_" in cfg.scheduler else None
    return SNNModule(
        net=net,
        num_classes=dm.num_classes,
        T=cfg.T,
        optimizer=instantiate(opt_cfg),
        scheduler=sched,
        loss=instantiate(cfg.loss),
        neuron_weight_decay=neuron_wd,
        compile=bool(cfg.get("compile", False)),
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def scalar_metrics(metrics: dict) -> dict:
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def train(cfg: DictConfig) -> dict:
    """Fit and test as the config says; returns the final metrics. Raises UserError on bad input."""
    import lightning.pytorch as pl

    check_T(cfg.T)
    out_dir = Path(cfg.paths.output_dir)
    if cfg.get("compile_neurons"):
        from .neurons.fused import set_compile

        set_compile(True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    from lightning.pytorch.callbacks import LearningRateMonitor

    loggers = instantiate_dict(cfg.get("logger"))
    callbacks = instantiate_dict(cfg.get("callbacks"))
    if not loggers:  # it refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build_trainer(cfg, callbacks, loggers)
    check_multirun_strategy(trainer)
    per_device = per_device_batch_size(cfg.batch_size, trainer.world_size, trainer.num_devices, trainer.num_nodes)
    dm = build_datamodule(cfg, per_device)
    net = build_net(cfg, dm)
    module = build_module(cfg, net, dm)
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise UserError(f"ckpt_path {cfg.ckpt_path} does not exist")

    if cfg.get("train", True):
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    metrics = scalar_metrics(trainer.callback_metrics)
    best = None
    if cfg.get("test", True):
        ckpt_cb = trainer.checkpoint_callback
        best = getattr(ckpt_cb, "best_model_path", "") or None
        trainer.test(module, datamodule=dm, ckpt_path=best if cfg.get("train", True) else cfg.get("ckpt_path"))
        metrics.update(scalar_metrics(trainer.callback_metrics))
    metrics["global_step"] = trainer.global_step
    metrics["epoch"] = trainer.current_epoch
    finish_wandb(loggers)
    if trainer.is_global_zero:
        write_json(out_dir / METRICS_FILE, {"metrics": metrics, "best_checkpoint": best})
        summarize(cfg, metrics, out_dir, best)
    return metrics


def finish_wandb(loggers: list) -> None:
    """Close wandb runs now, so its sync hint comes before our summary and nothing is left open."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def summarize(cfg: DictConfig, metrics: dict, out_dir: Path, best: str | None) -> None:
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
    status = read_status(out_dir)
    if multirun and status and status.get("status") == "finished" and cfg.get("skip_finished", True):
        print(f"skipping finished job {out_dir}")
        return status.get("test_acc")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        os.environ.setdefault(var, str(out_dir / "wandb_home" if var != "WANDB_DIR" else out_dir))
    started = time.time()
    writer = is_launch_rank_zero()  # the other ranks of a ddp / SLURM job run this too, in the same folder

    def record(state: str, **fields) -> None:
        if writer:
            write_json(out_dir / STATUS_FILE, {"status": state, "started": started, **fields})
            if state == "failed":
                (out_dir / "error.log").write_text(traceback.format_exc())

    record("running", pid=os.getpid())
    try:
        metrics = train(cfg)
    except Exception as e:  # noqa: BLE001 - a sweep must survive one broken job
        user_error = isinstance(e, USER_ERRORS)
        msg = (str(e).splitlines() or [""])[0] or type(e).__name__
        if not user_error:
            msg = f"{type(e).__name__}: {msg}"
        record("failed", error=msg)
        if user_error and not isinstance(e, (UserError, DatasetNotFoundError, EventFileError)):
            msg += f" (traceback: {out_dir / 'error.log'})"
        if multirun:
            if not user_error:
                traceback.print_exc()
            print(f"error: job {out_dir.name} failed: {msg}", file=sys.stderr)
            return None
        if user_error:
            fail(msg)
        raise
    test_acc = metrics.get("test/acc")
    record("finished", seconds=time.time() - started, test_acc=test_acc)
    return test_acc


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    return run_job(cfg)


def main() -> None:
    checked_main(_hydra_main)


if __name__ == "__main__":
    main()
