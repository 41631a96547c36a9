"""`snn-eval ckpt_path=...`: test accuracy (final and per timestep) of a saved model.

The run's own configuration travels inside the checkpoint; `data.*`, `batch_size` and `trainer=...`
given here override it (e.g. a different data root or a GPU).
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .runtime import CONF_DIR, METRICS_FILE, UserError, checked_main, fail, per_device_batch_size, write_json


def load_run_config(ckpt_path: str) -> tuple[DictConfig, dict]:
    import torch

    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"checkpoint {ckpt_path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"checkpoint {ckpt_path} cannot be read: {type(e).__name__}: {e}") from None
    config = ckpt.get("hyper_parameters", {}).get("config")
    if config is None:
        raise UserError(f"checkpoint {ckpt_path} has no snn-lightning config (was it written by snn-train?)")
    return OmegaConf.create(config), ckpt


def evaluate(cfg: DictConfig) -> dict:
    from hydra.utils import instantiate

    from .train import build_module, build_net, scalar_metrics

    run_cfg, ckpt = load_run_config(cfg.ckpt_path)
    if cfg.get("data"):
        run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.data)
    if cfg.get("batch_size"):
        run_cfg.batch_size = cfg.batch_size
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    per_device = per_device_batch_size(run_cfg.batch_size, trainer.world_size, trainer.num_devices, trainer.num_nodes)
    data_cfg = OmegaConf.to_container(run_cfg.data, resolve=True)
    dm = instantiate(data_cfg, batch_size=per_device, T=run_cfg.T)
    net = build_net(run_cfg, dm)
    module = build_module(run_cfg, net, dm)
    module.load_state_dict(ckpt["state_dict"])
    trainer.test(module, datamodule=dm)
    metrics = scalar_metrics(trainer.callback_metrics)
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        write_json(out / METRICS_FILE, {"metrics": metrics, "checkpoint": str(cfg.ckpt_path)})
        print(f"test/acc: {metrics.get('test/acc', float('nan')):.4f}")
        for t in range(1, int(run_cfg.T) + 1):
            if f"test/acc_t{t}" in metrics:
                print(f"test/acc_t{t}: {metrics[f'test/acc_t{t}']:.4f}")
        print(f"results written to {out / METRICS_FILE}")
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except (UserError, ValueError, FileNotFoundError) as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def main() -> None:
    checked_main(_hydra_main)


if __name__ == "__main__":
    main()
