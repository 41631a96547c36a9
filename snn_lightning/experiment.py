"""The one place that turns a config into objects: loggers, callbacks, trainer, data, network, module.

``snn-train``, ``snn-eval``, ``snn-analyze`` and ``snn-export`` are peers over these functions (none
imports another entry point); a run saved by ``snn-train`` is rebuilt from the config stored in its
checkpoint by :func:`load_trained`. Everything here raises :class:`~snn_lightning.errors.UserError`
for a mistake in the config and lets every other exception through.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ._checks import check_T
from .errors import UserError

# data-module options that need the Trainer's hooks (batch transfer); a hand-written loop drops them
TRAINER_ONLY_DATA_KEYS = ("normalize_on_device", "channels_last")


# -- distributed batch -------------------------------------------------------------------------------
def per_device_batch_size(global_batch: int, world_size: int, devices: int | None = None, nodes: int | None = None) -> int:
    """The global ``batch_size`` split evenly across every process (a remainder is the user's error)."""
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch <= 0:
        raise UserError(f"batch_size must be a positive integer, got {global_batch!r}")
    if global_batch % world_size:
        where = f"{world_size} processes" if devices is None else f"{world_size} processes ({devices} devices x {nodes} nodes)"
        raise UserError(
            f"batch_size {global_batch} does not divide across {where}; "
            f"use a multiple of {world_size} (e.g. {max(world_size, global_batch - global_batch % world_size)})"
        )
    return global_batch // world_size


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 as its launcher set it (known before the Trainer exists).

    Plain ``ddp`` re-runs the whole script in every rank (LOCAL_RANK set), in the same run folder;
    SLURM (submitit) runs the job function in every task (SLURM_PROCID); torchrun sets RANK.
    """
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) != 0:
            return False
    return True


# -- Lightning objects -------------------------------------------------------------------------------
def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every entry of a dict-of-objects group (``logger``, ``callbacks``) that has a target."""
    from hydra.utils import instantiate

    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig) -> list:
    return instantiate_group(cfg.get("logger"))


def build_callbacks(cfg: DictConfig, loggers: list) -> list:
    from lightning.pytorch.callbacks import LearningRateMonitor

    callbacks = instantiate_group(cfg.get("callbacks"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list):
    from hydra.utils import instantiate

    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def build_datamodule(cfg: DictConfig, per_device_batch: int, *, trainer_hooks: bool = True):
    """The run's data module; ``trainer_hooks=False`` for a loader iterated by hand (no Trainer)."""
    from hydra.utils import instantiate

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if not trainer_hooks:
        for key in TRAINER_ONLY_DATA_KEYS:
            data_cfg.pop(key, None)
    return instantiate(data_cfg, batch_size=per_device_batch, T=check_T(cfg.T))


def neuron_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of every ``LIF`` of the network (the ``neuron`` group plus top-level switches)."""
    neuron = OmegaConf.to_container(cfg.neuron, resolve=True)
    if cfg.get("compile_neurons"):
        neuron["backend"] = "compiled"
    return neuron


def build_net(cfg: DictConfig, dm):
    """The backbone the ``model`` group names, sized by the data module (classes, channels, size)."""
    from hydra.utils import instantiate

    factory = instantiate(cfg.model)
    net = factory(
        num_classes=dm.num_classes, in_channels=dm.in_channels, T=check_T(cfg.T), norm=cfg.norm.kind,
        neuron=neuron_kwargs(cfg), input_size=dm.input_size,
    )
    if cfg.get("channels_last"):
        import torch

        net = net.to(memory_format=torch.channels_last)  # conv weights NHWC: faster convolutions on GPUs
    return net


def build_module(cfg: DictConfig, net, dm):
    """The LightningModule: the optimizer partial stays pure; weight decay is the module's argument."""
    from hydra.utils import instantiate

    from .module import SNNModule

    opt_cfg = OmegaConf.to_container(cfg.optimizer, resolve=True)
    neuron_wd = bool(opt_cfg.pop("neuron_weight_decay", True))
    weight_decay = float(opt_cfg.pop("weight_decay", 0.0))
    sched = instantiate(cfg.scheduler) if cfg.get("scheduler") and "_target_" in cfg.scheduler else None
    return SNNModule(
        net=net,
        num_classes=dm.num_classes,
        T=cfg.T,
        optimizer=instantiate(opt_cfg),
        scheduler=sched,
        loss=instantiate(cfg.loss),
        weight_decay=weight_decay,
        neuron_weight_decay=neuron_wd,
        compile=bool(cfg.get("compile", False)),
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The entries of a metrics dict (tensors included) that are numbers, as floats."""
    out = {}
    for k, v in metrics.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


# -- a saved run -------------------------------------------------------------------------------------
def load_run_config(ckpt_path: str | os.PathLike) -> tuple[DictConfig, dict]:
    """(the run's config, the checkpoint dict) of a checkpoint written by ``snn-train``."""
    import torch

    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"checkpoint {ckpt_path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file is the user's input, not our bug
        raise UserError(f"checkpoint {ckpt_path} cannot be read: {type(e).__name__}: {e}") from None
    config = ckpt.get("hyper_parameters", {}).get("config") if isinstance(ckpt, dict) else None
    if config is None:
        raise UserError(f"checkpoint {ckpt_path} has no snn-lightning config (was it written by snn-train?)")
    return OmegaConf.create(config), ckpt


@dataclass
class Trained:
    """A trained run rebuilt from its checkpoint: config, data module and module (eval mode)."""

    cfg: DictConfig
    datamodule: Any
    module: Any
    checkpoint: dict

    @property
    def net(self):
        return self.module.net


def build_from_run_config(run_cfg: DictConfig, batch_size: int, *, trainer_hooks: bool = True):
    """(data module, module) of a saved run's config, with a fresh (untrained) network."""
    dm = build_datamodule(run_cfg, batch_size, trainer_hooks=trainer_hooks)
    net = build_net(run_cfg, dm)
    return dm, build_module(run_cfg, net, dm)


def load_trained(ckpt_path: str | os.PathLike, batch_size: int | None = None, data_root: str | None = None,
                 *, trainer_hooks: bool = False) -> Trained:
    """Rebuild a trained run from its checkpoint, weights loaded, in eval mode.

    ``trainer_hooks=False`` (the default) serves loops written by hand (analysis, export); pass True
    when a Trainer will run the module.
    """
    run_cfg, ckpt = load_run_config(ckpt_path)
    if data_root is not None:
        run_cfg.data.root = data_root
    bs = int(batch_size or run_cfg.get("batch_size") or 64)
    dm, module = build_from_run_config(run_cfg, bs, trainer_hooks=trainer_hooks)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return Trained(run_cfg, dm, module, ckpt)
