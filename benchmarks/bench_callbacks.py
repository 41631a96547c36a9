"""Training-step cost of the default observability callbacks, side by side with no callbacks.

    python benchmarks/bench_callbacks.py                       # small_cnn and resnet19, CPU
    python benchmarks/bench_callbacks.py --models small_cnn --reps 4 --device cuda

For each model, fits on random data (no validation) alternately with no callbacks and with the
default observability callbacks (``NeuronStatsCallback(every_n_steps=E)``,
``TimestepPredictionCallback``, ``FigureCallback``, as in ``conf/callbacks/default.yaml``; the
metrics go to a logger that drops them), ``--reps`` times each. A step's time is the interval
between consecutive batch starts, so everything it costs (forward, backward, optimizer, every hook,
logging) is in it. Two estimates of the overhead at every_n_steps = E:

* **A/B**: mean step time with callbacks / mean step time without − 1 (best of the repetitions).
  Honest but noisy on a shared machine: two runs seconds apart differ by several percent.
* **direct**: the time spent inside the callbacks' hooks and the neuron monitors, measured where
  it is spent, plus the record steps' extra forward work (median record step − median other step
  of the same run), divided by the time of the run. Robust to other jobs.

Also times a validation epoch of ``--eval-batches`` batches with and without the callbacks (the
statistics are accumulated over every evaluation batch).

CPU runs use one thread and the process's CPU time by default (``--clock cpu``), which other jobs
on the machine disturb much less than wall time; on a GPU use ``--clock wall``.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from snn_lightning.callbacks import FigureCallback, NeuronStatsCallback, TimestepPredictionCallback
from snn_lightning.monitor import NeuronRecorder
from snn_lightning.models import create_model
from snn_lightning.module import SNNModule

warnings.filterwarnings("ignore")

MODELS = {
    # name: (create_model kwargs, input shape [C, H, W], batch, T)
    "small_cnn": (dict(name="small_cnn", channels=32), (1, 8, 8), 64, 4),
    "resnet19": (dict(name="resnet19"), (3, 8, 8), 16, 2),
}


class NullLogger(Logger):
    """Receives every metric (so the logging calls are paid) and keeps nothing."""

    name = "null"
    version = "0"

    def log_metrics(self, metrics, step=None):
        pass

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class Meter:
    """Accumulates the time spent inside wrapped callables, per name, on ``clock``."""

    def __init__(self, clock):
        self.clock = clock
        self.by_name: dict[str, float] = {}

    def wrap(self, fn, name: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.by_name[name] = self.by_name.get(name, 0.0) + self.clock() - t0

        return timed

    def total(self, per_step_only: bool = True) -> float:
        return sum(v for k, v in self.by_name.items() if not per_step_only or k in PER_STEP)


# hooks that run during training steps/epochs; on_fit_end (the figures, once per run) is reported apart
PER_STEP = {"on_train_batch_start", "on_train_batch_end", "on_train_epoch_start", "on_train_epoch_end", "monitor"}


def instrument(callbacks, meter: Meter) -> None:
    """Time every hook the callbacks define (instance attributes shadow the class methods)."""
    for cb in callbacks:
        for name in dir(type(cb)):
            if name.startswith("on_") or name in ("setup", "teardown"):
                if getattr(type(cb), name) is not getattr(pl.Callback, name, None):
                    setattr(cb, name, meter.wrap(getattr(cb, name), name))


class StepTimer(pl.Callback):
    """Step time = interval between consecutive batch starts, on ``clock``."""

    def __init__(self, clock):
        self.clock = clock
        self.starts: list[float] = []
        self.steps: list[int] = []

    def _sync(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync()
        self.starts.append(self.clock())
        self.steps.append(trainer.global_step)

    def on_train_end(self, trainer, pl_module):
        self._sync()
        self.starts.append(self.clock())

    def durations(self, warmup: int) -> list[tuple[int, float]]:
        return [(s, b - a) for s, a, b in zip(self.steps, self.starts, self.starts[1:])][warmup:]


class EvalTimer(pl.Callback):
    """Time of a whole evaluation epoch (every batch and the epoch-end hooks)."""

    def __init__(self, clock):
        self.clock = clock
        self.start = self.end = 0.0

    def on_validation_start(self, trainer, pl_module):
        self.start = self.clock()

    def on_validation_end(self, trainer, pl_module):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.end = self.clock()


def build(model_name: str, seed: int, device: str):
    kw, shape, batch, T = MODELS[model_name]
    torch.manual_seed(seed)
    net = create_model(num_classes=10, in_channels=shape[0], T=T, norm="tdbn", neuron={"backend": "auto"}, **kw)
    module = SNNModule(net, num_classes=10, T=T, optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    n = batch * 8
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))
    return module, DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)


def default_callbacks(every: int, tmp: str) -> list:
    return [NeuronStatsCallback(every_n_steps=every), TimestepPredictionCallback(), FigureCallback(dirpath=f"{tmp}/figures")]


def trainer_for(callbacks, device: str, tmp: str, **kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, logger=[NullLogger()], callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp, **kw,
    )


def fit_once(model_name, with_callbacks, steps, every, device, seed, tmp, clock):
    """(per-step durations, seconds inside callback hooks and monitors)."""
    module, loader = build(model_name, seed, device)
    timer = StepTimer(clock)
    meter = Meter(clock)
    extra = default_callbacks(every, tmp) if with_callbacks else []
    instrument(extra, meter)
    original = NeuronRecorder._add
    NeuronRecorder._add = meter.wrap(original, "monitor")
    try:
        trainer = trainer_for([timer] + extra, device, tmp, max_steps=steps, max_epochs=-1, limit_val_batches=0, log_every_n_steps=10)
        trainer.fit(module, loader)
    finally:
        NeuronRecorder._add = original
    return timer, meter


def eval_once(model_name, with_callbacks, batches, device, tmp, clock) -> float:
    module, loader = build(model_name, 0, device)
    timer = EvalTimer(clock)
    callbacks = [timer] + (default_callbacks(50, tmp) if with_callbacks else [])
    trainer_for(callbacks, device, tmp, limit_val_batches=batches).validate(module, loader, verbose=False)
    return (timer.end - timer.start) / batches


def bench(model_name, steps, every, reps, warmup, device, tmp, clock, eval_batches=0) -> dict:
    plain, mixed, direct, med_plain, med_other, med_record, fit_end = [], [], [], [], [], [], []
    ev_plain, ev_cb = [], []
    for rep in range(reps):
        for with_cb in (False, True) if rep % 2 == 0 else (True, False):
            timer, meter = fit_once(model_name, with_cb, steps, every, device, rep, tmp, clock)
            d = timer.durations(warmup)
            times = [t for _, t in d]
            if not with_cb:
                plain.append(statistics.fmean(times))
                med_plain.append(statistics.median(times))
                continue
            mixed.append(statistics.fmean(times))
            rec = [t for s, t in d if s % every == 0]
            oth = [t for s, t in d if s % every != 0]
            mo, mr = statistics.median(oth), statistics.median(rec) if rec else float("nan")
            med_other.append(mo)
            med_record.append(mr)
            # hooks + monitors (measured inside), plus what the record steps cost beyond that
            hooks_per_step = meter.total() / len(timer.starts[1:])  # over every step, warm-up included
            fit_end.append(meter.by_name.get("on_fit_end", 0.0))
            rec_extra = max(mr - mo, 0.0) / every
            direct.append((hooks_per_step + rec_extra) / mo)
        if eval_batches:
            for with_cb in (False, True):
                (ev_cb if with_cb else ev_plain).append(eval_once(model_name, with_cb, eval_batches, device, tmp, clock))
    return {
        "model": model_name,
        "plain_ms": 1e3 * min(plain),
        "with_callbacks_ms": 1e3 * min(mixed),
        "ab_overhead": min(mixed) / min(plain) - 1.0,
        "median_plain_ms": 1e3 * min(med_plain),
        "median_other_ms": 1e3 * min(med_other),
        "median_record_ms": 1e3 * min(med_record),
        "direct_overhead": statistics.median(direct),
        "fit_end_figures_s": min(fit_end),
        "eval_plain_ms": 1e3 * min(ev_plain) if ev_plain else float("nan"),
        "eval_with_callbacks_ms": 1e3 * min(ev_cb) if ev_cb else float("nan"),
    }


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=None, help="training steps per fit (default: 2·every + warmup + 1)")
    ap.add_argument("--every", type=int, default=50, help="NeuronStatsCallback.every_n_steps (default 50, the config's)")
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions of each setting")
    ap.add_argument("--warmup", type=int, default=3, help="leading steps left out of the timings")
    ap.add_argument("--eval-batches", type=int, default=4, help="also time validation epochs of N batches (0: skip)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads on the CPU (default 1: steadier on a shared machine)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="cpu: this process's CPU time (default on the CPU); wall: elapsed time (default on a GPU)")
    args = ap.parse_args(argv)
    on_cpu = not args.device.startswith("cuda")
    if on_cpu and args.threads:
        torch.set_num_threads(args.threads)
    clock_name = args.clock or ("cpu" if on_cpu else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    steps = args.steps or (2 * args.every + args.warmup + 1)
    print(f"device {args.device}, threads {torch.get_num_threads()}, clock {clock_name}, every_n_steps {args.every}, "
          f"{steps} steps per fit, {args.reps} interleaved repetitions", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = bench(name, steps, args.every, args.reps, args.warmup, args.device, tmp, clock, args.eval_batches)
            rows.append(r)
            print(
                f"{name:10s} step: plain {r['plain_ms']:.2f} ms, with callbacks {r['with_callbacks_ms']:.2f} ms "
                f"(ratio {r['with_callbacks_ms'] / r['plain_ms']:.3f}, A/B overhead {100 * r['ab_overhead']:+.1f}%) | "
                f"median: plain {r['median_plain_ms']:.2f}, non-record {r['median_other_ms']:.2f}, record {r['median_record_ms']:.2f} ms | "
                f"direct overhead @{args.every}: {100 * r['direct_overhead']:.2f}% | figures at fit end: {r['fit_end_figures_s']:.2f} s once",
                flush=True,
            )
            if args.eval_batches:
                print(
                    f"{'':10s} validation batch: plain {r['eval_plain_ms']:.2f} ms, with callbacks "
                    f"{r['eval_with_callbacks_ms']:.2f} ms (ratio {r['eval_with_callbacks_ms'] / r['eval_plain_ms']:.3f})",
                    flush=True,
                )
    return rows


if __name__ == "__main__":
    main()
