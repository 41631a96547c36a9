"""`snn-eval ckpt_path=...`: test accuracy (final and per timestep) of a saved model.

The run's own configuration travels inside the checkpoint; `data.*`, `batch_size` and `trainer=...`
given here override it (e.g. a different data root or a GPU).
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .. import experiment as ex
from .. import runs
from ..errors import UserError
from ._common import guarded
from ._hydra import hydra_cli


def evaluate(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise UserError("snn-eval needs a checkpoint: snn-eval ckpt_path=<run>/checkpoints/last.ckpt (or a best-k *.ckpt)")
    run_cfg, ckpt = ex.load_run_config(cfg.ckpt_path)
    if cfg.get("data"):
        run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.data)
    if cfg.get("batch_size"):
        run_cfg.batch_size = cfg.batch_size
    loggers = ex.build_loggers(cfg)
    trainer = ex.build_trainer(cfg, [], loggers)
    per_device = ex.per_device_batch_size(run_cfg.batch_size, trainer.world_size, trainer.num_devices, trainer.num_nodes)
    dm, module = ex.build_from_run_config(run_cfg, per_device)
    ckpt = ex.check_checkpoint_fits(cfg.ckpt_path, module)
    module.load_state_dict(ckpt["state_dict"])
    if trainer.is_global_zero:
        print(f"checkpoint: {cfg.ckpt_path} ({describe_checkpoint(ckpt)})")
    trainer.test(module, datamodule=dm)
    metrics = ex.scalar_metrics(trainer.callback_metrics)
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        path = runs.write_final_metrics(out, metrics, checkpoint=str(cfg.ckpt_path),
                                        checkpoint_state=describe_checkpoint(ckpt))
        print(f"test/acc: {metrics.get('test/acc', float('nan')):.4f}")
        for t in range(1, int(run_cfg.T) + 1):
            if f"test/acc_t{t}" in metrics:
                print(f"test/acc_t{t}: {metrics[f'test/acc_t{t}']:.4f}")
        print(f"results written to {path}")
    return metrics


def describe_checkpoint(ckpt: dict) -> str:
    from ..callbacks.checkpoint import describe_checkpoint as describe

    return describe(ckpt)


def _job(cfg: DictConfig) -> None:
    guarded(evaluate, cfg)


main = hydra_cli(_job, "eval")

if __name__ == "__main__":
    main()
