"""`snn-eval ckpt_path=...`: test accuracy (final and per timestep) of a saved model.

The run's own configuration travels inside the checkpoint; `data.*`, `batch_size` and `trainer=...`
given here override it (e.g. a different data root or a GPU).
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .. import experiment as ex
from .. import runs
from ._common import guarded
from ._hydra import hydra_cli


def evaluate(cfg: DictConfig) -> dict:
    run_cfg, ckpt = ex.load_run_config(cfg.ckpt_path)
    if cfg.get("data"):
        run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.data)
    if cfg.get("batch_size"):
        run_cfg.batch_size = cfg.batch_size
    loggers = ex.build_loggers(cfg)
    trainer = ex.build_trainer(cfg, [], loggers)
    per_device = ex.per_device_batch_size(run_cfg.batch_size, trainer.world_size, trainer.num_devices, trainer.num_nodes)
    dm, module = ex.build_from_run_config(run_cfg, per_device)
    module.load_state_dict(ckpt["state_dict"])
    trainer.test(module, datamodule=dm)
    metrics = ex.scalar_metrics(trainer.callback_metrics)
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        path = runs.write_final_metrics(out, metrics, checkpoint=str(cfg.ckpt_path))
        print(f"test/acc: {metrics.get('test/acc', float('nan')):.4f}")
        for t in range(1, int(run_cfg.T) + 1):
            if f"test/acc_t{t}" in metrics:
                print(f"test/acc_t{t}: {metrics[f'test/acc_t{t}']:.4f}")
        print(f"results written to {path}")
    return metrics


def _job(cfg: DictConfig) -> None:
    guarded(evaluate, cfg)


main = hydra_cli(_job, "eval")

if __name__ == "__main__":
    main()
