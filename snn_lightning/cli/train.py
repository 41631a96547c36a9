"""`snn-train`: train (and test) a spiking network with Hydra overrides.

    snn-train                                   # digits, small CNN, TrSG + MP-Init + tdBN
    snn-train model=resnet19 data=cifar100 T=4 neuron.v_threshold=0.5
    snn-train -m sg=as,rs,trsg neuron.reset=soft,hard
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig

from .. import experiment as ex
from .. import runs
from ..threads import apply_thread_policy
from ..signals import Interrupted, install_signal_handlers, restore_signal_handlers
from ..errors import UserError
from ._common import error_line, fail, guarded
from ._hydra import hydra_cli

log = logging.getLogger("snn_lightning.train")


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


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path`` as a file: ``auto`` means this run folder's ``last.ckpt`` if there is one (else a fresh
    start); a SLURM job that was requeued (``SLURM_RESTART_COUNT`` > 0) resumes that way by itself."""
    value = cfg.get("ckpt_path")
    if value is None and os.environ.get("SLURM_RESTART_COUNT", "0").strip() not in ("", "0"):
        value = "auto"
    if value == "auto":
        found = runs.auto_checkpoint(cfg.paths.output_dir)
        if found is None:  # said, not silent: a forgotten hydra.run.dir would otherwise look like a resume
            print(f"note: ckpt_path=auto: no {runs.CKPT_DIR}/{runs.LAST_CKPT} in {cfg.paths.output_dir}; starting fresh",
                  file=sys.stderr)
        return str(found) if found else None
    if value is not None and not Path(value).is_file():
        raise UserError(f"ckpt_path {value} does not exist (ckpt_path=auto resumes from the run folder's last.ckpt)")
    return value


def train(cfg: DictConfig) -> dict:
    """Fit and test as the config says; returns the final metrics. Raises UserError on bad input."""
    # before torch loads: OMP_WAIT_POLICY only takes effect if set before the OpenMP runtime starts
    apply_thread_policy(cfg.get("threads"), cfg.model.get("name"))
    ex.check_run_config(cfg)
    import lightning.pytorch as pl

    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg)
    if ckpt_path:
        ex.load_run_config(ckpt_path)  # a truncated or foreign file is reported before anything is built
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    loggers = ex.build_loggers(cfg)
    callbacks = ex.build_callbacks(cfg, loggers)
    trainer = ex.build_trainer(cfg, callbacks, loggers)
    check_multirun_strategy(trainer)
    per_device = ex.per_device_batch_size(cfg.batch_size, trainer.world_size, trainer.num_devices, trainer.num_nodes)
    dm = ex.build_datamodule(cfg, per_device)
    net = ex.build_net(cfg, dm)
    module = ex.build_module(cfg, net, dm)
    if ckpt_path:
        from ..callbacks.checkpoint import describe_checkpoint

        ckpt = ex.check_checkpoint_fits(ckpt_path, module)
        log.info("resuming from %s (%s)", ckpt_path, describe_checkpoint(ckpt))
        warn_if_schedule_changes(cfg, ckpt)

    if cfg.get("train", True):
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    metrics = ex.scalar_metrics(trainer.callback_metrics)
    tested = None
    if cfg.get("test", True):
        ckpt_cb = trainer.checkpoint_callback
        best = getattr(ckpt_cb, "best_model_path", "") or None
        tested = best if cfg.get("train", True) else ckpt_path
        trainer.test(module, datamodule=dm, ckpt_path=tested)
        metrics.update(ex.scalar_metrics(trainer.callback_metrics))
    metrics["global_step"] = trainer.global_step
    metrics["epoch"] = trainer.current_epoch
    finish_wandb(loggers)
    if trainer.is_global_zero:
        tested_on = _checkpoint_info(tested)
        last = runs.auto_checkpoint(out_dir)
        runs.write_final_metrics(out_dir, metrics, best_checkpoint=tested if tested else None, tested_on=tested_on,
                                 last_checkpoint=str(last) if last else None)
        summarize(metrics, out_dir, tested, tested_on)
    return metrics


def warn_if_schedule_changes(cfg: DictConfig, ckpt: dict) -> None:
    """A resume with another ``trainer.max_epochs`` keeps the checkpoint's LR schedule (its length included)."""
    before = ((ckpt.get("hyper_parameters", {}).get("config") or {}).get("trainer") or {}).get("max_epochs")
    now = cfg.trainer.get("max_epochs")
    if before is not None and now is not None and before != now and ckpt.get("lr_schedulers"):
        msg = (f"warning: resuming a run of trainer.max_epochs={before} with trainer.max_epochs={now}: the LR "
               f"scheduler's state (e.g. the cosine length T_max) comes from the checkpoint, so the schedule is the "
               f"{before}-epoch one")
        print(msg, file=sys.stderr)
        log.warning(msg)


def _checkpoint_info(path: str | None) -> dict | None:
    """``{path, epoch, step, val/acc}`` of the checkpoint the test stage used (None: the in-memory weights)."""
    if not path:
        return None
    import torch

    from ..callbacks.checkpoint import describe_checkpoint

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return {"path": str(path), "epoch": ckpt.get("epoch"), "step": ckpt.get("global_step"),
            "description": describe_checkpoint(ckpt)}


def finish_wandb(loggers: list) -> None:
    """Close wandb runs now, so its sync hint comes before our summary and nothing is left open."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def summarize(metrics: dict, out_dir: Path, tested: str | None, tested_on: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    table = Table(title="snn-lightning: final metrics", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("from")
    test_from = f"checkpoint ({tested_on['description']})" if tested_on else "last weights"
    for k in sorted(metrics):
        if k.startswith("test/"):
            table.add_row(k, f"{metrics[k]:.4f}", test_from)
    for k in ("val/acc", "train/loss_epoch"):
        if k in metrics:
            table.add_row(k, f"{metrics[k]:.4f}", f"last epoch (of {metrics.get('epoch', '?')})")
    console.print(table)
    # plain print: file paths must stay on one line to be copied
    print(f"run folder:      {out_dir}")
    if tested:
        print(f"tested checkpoint: {tested} ({tested_on['description'] if tested_on else ''})")
    last = runs.auto_checkpoint(out_dir)
    if last:
        print(f"last checkpoint: {last}")
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


# jobs of this multirun that failed, and jobs skipped because another process was running them
FAILED_JOBS: list[str] = []
BUSY_JOBS: list[Path] = []


def _resumes_own_folder(cfg: DictConfig, out_dir: Path) -> bool:
    value = cfg.get("ckpt_path")
    if value == "auto" or (value is None and os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")):
        return True
    try:
        return value is not None and Path(value).resolve().is_relative_to(out_dir.resolve())
    except OSError:
        return False


def _attach_train_log(out_dir: Path) -> logging.Handler:
    """Python logging of the run (ours and Lightning's) into ``<run>/train.log``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / runs.TRAIN_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    for name in LOG_NAMES:
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    return handler


def _detach_train_log(handler: logging.Handler) -> None:
    for name in LOG_NAMES:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


LOG_NAMES = ("snn_lightning", "lightning.pytorch", "lightning.fabric")


def run_job(cfg: DictConfig) -> float | None:
    """One Hydra job: claims its run folder, records its status, turns signals and failures into one line."""
    out_dir = Path(cfg.paths.output_dir)
    multirun = _is_multirun()
    writer = ex.is_launch_rank_zero()  # the other ranks of a ddp / SLURM job run this too, in the same folder
    if not multirun:
        guarded(ex.check_run_config, cfg)  # before anything is written or torch is imported
        guarded(ex.check_accelerator, cfg)  # needs torch, not Lightning
    lock = runs.RunLock(out_dir)
    if writer and not lock.acquire():
        if multirun:  # another sweep runs this job: its result is checked when this sweep ends
            print(f"skipping job {out_dir.name}: another process is running it (its result is checked at the end)")
            BUSY_JOBS.append(out_dir)
            return None
        fail(f"run folder {out_dir} is in use by a live run; wait for it or choose another hydra.run.dir")
    # from here on no other process writes into the folder: what its status says stays true
    status = runs.read_status(out_dir)
    if multirun and status and status.get("status") == runs.FINISHED and cfg.get("skip_finished", True):
        lock.release()
        print(f"skipping finished job {out_dir}")
        return status.get("test_acc")
    if writer:
        if status and status.get("status") == runs.RUNNING:
            print(f"note: the previous run in {out_dir} died (pid {status.get('pid')} is gone); "
                  f"{'resuming it' if _resumes_own_folder(cfg, out_dir) else 'starting over'}", file=sys.stderr)
        why = runs.refusal(out_dir, resuming=_resumes_own_folder(cfg, out_dir), overwrite=bool(cfg.get("overwrite")),
                           locked=True)
        if why is not None:
            lock.release()
            if multirun:
                FAILED_JOBS.append(out_dir.name)
                print(f"error: job {out_dir.name}: {why}", file=sys.stderr)
                return None
            fail(why)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        os.environ.setdefault(var, str(out_dir / "wandb_home" if var != "WANDB_DIR" else out_dir))
    started = time.time()

    def record(state: str, **fields) -> None:
        if writer:
            runs.write_status(out_dir, state, started=started, **fields)
            if state == runs.FAILED:
                (out_dir / runs.ERROR_LOG).write_text(traceback.format_exc())

    previous_handlers = install_signal_handlers()
    log_handler = _attach_train_log(out_dir) if writer else None
    try:
        record(runs.RUNNING, pid=os.getpid(), host=socket.gethostname())
        metrics = train(cfg)
    except Interrupted as e:
        record(runs.INTERRUPTED, epoch=e.epoch, step=e.step, checkpoint=e.checkpoint, signal=e.signum,
               seconds=time.time() - started)
        hint = f"; resume with ckpt_path=auto hydra.run.dir={out_dir}" if e.checkpoint else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        sys.exit(e.exit_code)  # a sweep stops too: the queue asked the whole process to go
    except Exception as e:  # noqa: BLE001 - a sweep must survive one broken job
        user_error = isinstance(e, UserError)
        msg = error_line(e) if user_error else f"{type(e).__name__}: {error_line(e)}"
        record(runs.FAILED, error=msg)
        log.error("run failed: %s", msg)
        if multirun:
            FAILED_JOBS.append(out_dir.name)
            if not user_error:
                traceback.print_exc()
            print(f"error: job {out_dir.name} failed: {msg}", file=sys.stderr)
            return None
        if user_error:
            fail(msg)
        raise
    else:  # before the lock is released: a process waiting for the folder must read "finished"
        test_acc = metrics.get("test/acc")
        record(runs.FINISHED, seconds=time.time() - started, test_acc=test_acc)
        return test_acc
    finally:
        restore_signal_handlers(previous_handlers)
        if log_handler is not None:
            _detach_train_log(log_handler)
        lock.release()


def multirun_exit_code() -> int:
    """After a multirun: wait for the jobs another process was running, then 1 if any job failed."""
    for job in BUSY_JOBS:
        runs.RunLock(job).wait()
        state = runs.effective_status(job)
        if state != runs.FINISHED:
            FAILED_JOBS.append(f"{job.name} ({state})")
    if FAILED_JOBS:
        print(f"error: {len(FAILED_JOBS)} job(s) of the sweep did not finish: {', '.join(FAILED_JOBS)}", file=sys.stderr)
        return 1
    return 0


main = hydra_cli(run_job, "train", after=multirun_exit_code, guard_run_dir=True)

if __name__ == "__main__":
    main()
