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

from . import runs
from ._checks import check_T, choice, fraction, int_at_least
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


# -- checks that need no torch (a typo is reported before torch and Lightning load) --------------------
# Lightning 2.6's accepted `precision` values (tests/test_faults.py compares them with Lightning's own list)
PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
              "32-true", "64-true", "64", "32", "16", "bf16")


def check_devices(devices: Any) -> Any:
    """``trainer.devices``: a positive count, -1 (all), ``auto``, or a non-empty list of device ids."""
    rule = "a positive integer, -1 (all), 'auto' or a list of device ids"
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto" or text == "-1":
            return devices
        ids = [t.strip() for t in text.split(",") if t.strip()]
        if ids and all(t.isdigit() for t in ids) and (len(ids) > 1 or text.endswith(",") or int(ids[0]) > 0):
            return devices
    elif isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        if len(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            return devices
    elif isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1):
        return devices
    raise UserError(f"trainer.devices must be {rule}, got {devices!r}")


def check_run_config(cfg: DictConfig) -> None:
    """Values a run would otherwise reject only after torch and Lightning load (or deep inside them)."""
    check_T(cfg.T)
    trainer = cfg.get("trainer") or {}
    if trainer.get("max_epochs") is not None and trainer.get("max_epochs") != -1:
        int_at_least("trainer.max_epochs", trainer.get("max_epochs"), 0)
    if "precision" in trainer:
        choice("trainer.precision", str(trainer.precision), PRECISIONS)
    if "devices" in trainer:
        check_devices(trainer.devices)
    data = cfg.get("data") or {}
    if data.get("val_fraction") is not None:
        fraction("data.val_fraction", data.get("val_fraction"))
    if cfg.get("nonfinite_patience") is not None:
        int_at_least("nonfinite_patience", cfg.nonfinite_patience, 0)


def check_accelerator(cfg: DictConfig) -> None:
    """``trainer=gpu`` (or ``accelerator: gpu|cuda``) on a machine without CUDA is the user's mistake."""
    acc = str((cfg.get("trainer") or {}).get("accelerator", "auto"))
    if acc in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"trainer.accelerator={acc} but this machine has no CUDA device; use trainer=cpu")


# -- Lightning objects -------------------------------------------------------------------------------
def instantiate_checked(node: Any, what: str, **kwargs):
    """``hydra.utils.instantiate`` whose config mistakes are one-line UserErrors.

    A UserError raised by the constructor passes through unchanged; a target that cannot be found, a
    keyword the constructor does not take (or a missing one), and any ValueError of the Trainer's
    constructor (it validates its own arguments) are the config's fault. Anything else keeps its
    traceback.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        first = " ".join(str(e).split())
        config_fault = cause is None or isinstance(cause, (ImportError, AttributeError)) or (
            isinstance(cause, TypeError) and "argument" in str(cause)) or (what == "trainer" and isinstance(cause, ValueError))
        if config_fault:
            detail = f"{type(cause).__name__}: {' '.join(str(cause).split())}" if cause is not None else first
            raise UserError(f"{what}: cannot build {_target_of(node)}: {detail}") from None
        raise


def _target_of(node: Any) -> str:
    try:
        return str(node.get("_target_", "?"))
    except AttributeError:
        return "?"


def instantiate_group(cfg: DictConfig | None, what: str = "config") -> list:
    """Instantiate every entry of a dict-of-objects group (``logger``, ``callbacks``) that has a target."""
    if not cfg:
        return []
    return [instantiate_checked(c, f"{what}.{k}") for k, c in cfg.items() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig) -> list:
    from .loggers import offline_unless_reachable

    logger_cfg = cfg.get("logger")
    if logger_cfg:
        logger_cfg = OmegaConf.create(OmegaConf.to_container(logger_cfg, resolve=True))
        for name, node in logger_cfg.items():
            if node is not None and str(node.get("_target_", "")).endswith("WandbLogger"):
                offline_unless_reachable(node, f"logger.{name}")
    return instantiate_group(logger_cfg, "logger")


def safety_callbacks(cfg: DictConfig) -> list:
    """Callbacks every training run gets whatever the ``callbacks`` group says: the non-finite check,
    the random states in checkpoints, and SIGTERM/SIGINT handling (a checkpoint where it stopped)."""
    from .callbacks.checkpoint import RandomStateCallback
    from .callbacks.finite import FiniteCheck
    from .callbacks.interrupt import InterruptCallback

    out = []
    if cfg.get("nonfinite_patience", 0) is not None:
        out.append(FiniteCheck(int(cfg.get("nonfinite_patience", 0))))
    out += [RandomStateCallback(), InterruptCallback(str(runs.checkpoint_dir(cfg.paths.output_dir)))]
    return out


def build_callbacks(cfg: DictConfig, loggers: list) -> list:
    from lightning.pytorch.callbacks import LearningRateMonitor

    callbacks = safety_callbacks(cfg) + instantiate_group(cfg.get("callbacks"), "callbacks")
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list):
    check_accelerator(cfg)
    return instantiate_checked(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)


def build_datamodule(cfg: DictConfig, per_device_batch: int, *, trainer_hooks: bool = True):
    """The run's data module; ``trainer_hooks=False`` for a loader iterated by hand (no Trainer)."""
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if not trainer_hooks:
        for key in TRAINER_ONLY_DATA_KEYS:
            data_cfg.pop(key, None)
    return instantiate_checked(data_cfg, "data", batch_size=per_device_batch, T=check_T(cfg.T))


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
    check_state_fits(ckpt_path, ckpt, run_cfg, module)  # a network whose definition changed: one line
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return Trained(run_cfg, dm, module, ckpt)


def check_checkpoint_fits(ckpt_path: str | os.PathLike, module) -> dict:
    """The checkpoint dict, if it is an snn-train checkpoint of the same network as ``module``.

    Raises a one-line UserError for a file that is truncated or not a checkpoint, and for a checkpoint
    of another model (naming both models and the first mismatched keys).
    """
    run_cfg, ckpt = load_run_config(ckpt_path)
    check_state_fits(ckpt_path, ckpt, run_cfg, module)
    return ckpt


def check_state_fits(ckpt_path, ckpt: dict, run_cfg: DictConfig, module) -> None:
    """Raise UserError unless ``ckpt["state_dict"]`` has exactly ``module``'s keys and shapes."""
    saved = ckpt.get("state_dict")
    if not isinstance(saved, dict):
        raise UserError(f"checkpoint {ckpt_path} has no state_dict")
    own = module.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    reshaped = [f"{k} {tuple(saved[k].shape)} vs {tuple(own[k].shape)}" for k in own
                if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or reshaped:
        theirs, ours = describe_model(run_cfg), describe_model(OmegaConf.create(module.hparams.get("config") or {}))
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})" for what, v in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("keys of another shape", reshaped)) if v]
        raise UserError(f"checkpoint {ckpt_path} is of another model ({theirs}) than this run ({ours}): {'; '.join(parts)}")


def describe_model(cfg: DictConfig) -> str:
    """``small_cnn, T=4, norm=tdbn, data=DigitsDataModule``: enough to tell two runs' networks apart."""
    model = cfg.get("model") or {}
    name = model.get("name") or str(model.get("_target_", "?")).rsplit(".", 1)[-1]
    norm = (cfg.get("norm") or {}).get("kind", "?")
    data = str((cfg.get("data") or {}).get("_target_", "?")).rsplit(".", 1)[-1]
    return f"{name}, T={cfg.get('T', '?')}, norm={norm}, data={data}"
