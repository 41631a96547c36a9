"""The sections of ``make gpu-check``, each run in its own process by ``benchmarks/gpu_check.py``.

``python benchmarks/gpu_sections.py SECTION --out FILE.json`` writes one JSON result. Sections:
``kernels`` (fused, compiled and Triton against the reference loop on CUDA), ``amp`` (bf16-mixed and
16-mixed ResNet-19 steps through Lightning), ``ddp`` (one-GPU DDP over NCCL with SyncBatchNorm and
MP-Init), ``lif-layer`` (one LIF layer against the memory-bandwidth floor) and ``throughput-one``
(one contender's ResNet-19 training throughput and peak memory).

Only torch, triton, lightning, torchmetrics and numpy are imported (spikingjelly and its loguru only
by the spikingjelly contenders, from ``benchmarks/.bench_venv`` when carried there), so the GPU machine
needs no package registry. ``GPU_CHECK_SMOKE=1`` runs every section with tiny sizes on the CPU
(Triton through its interpreter, DDP over gloo): a rehearsal of the script where no GPU is.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(1, str(HERE))
if (HERE / ".bench_venv").is_dir():
    sys.path.append(str(HERE / ".bench_venv"))
SMOKE = os.environ.get("GPU_CHECK_SMOKE") == "1"
if SMOKE:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import torch  # noqa: E402

PAPER = {}  # LIF defaults: TrSG, rectangular, learnable τ and V_thr, MP-Init
SJ_CFG = dict(tau=2.0, v_threshold=1.0, reset="soft", surrogate="sigmoid", sg_mode="as", learn_tau=False,
              learn_threshold=False, detach_reset=False, mp_init=False)  # spikingjelly's LIFNode (Sigmoid)


def device() -> torch.device:
    return torch.device("cpu") if SMOKE else torch.device("cuda")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def finite(values) -> bool:
    return all(math.isfinite(float(v)) for v in values)


# -- (a) the kernel grid ------------------------------------------------------------------------

def grid_configs(step: int):
    """Every (SG mode, reset, detach, surrogate) combination (every ``step``-th), the learnable τ, V_thr
    and MP-Init flags cycling through their eight combinations."""
    combos = itertools.product(("as", "rs", "trsg"), ("soft", "hard"), (False, True),
                               ("rectangular", "triangular", "sigmoid", "atan"))
    for i, (sg, reset, detach, sur) in enumerate(list(combos)[::step]):
        yield dict(sg_mode=sg, reset=reset, detach_reset=detach, surrogate=sur, learn_tau=i % 2 == 0,
                   learn_threshold=(i // 2) % 2 == 0, mp_init=(i // 4) % 2 == 0)


def section_kernels(budget_s: float) -> dict:
    from snn_lightning.neurons import LIF
    from snn_lightning.neurons.kernels import dispatch
    from snn_lightning.neurons.kernels.agreement import disagreements, state_pass, training_pass

    dev = device()
    start = time.perf_counter()
    rows, skipped = [], []
    shape = (3, 2, 37) if SMOKE else (4, 8, 300)  # N = 2400: two full Triton blocks and a ragged one

    def data(shp, seed, dtype=torch.float32, transpose=False):
        g = torch.Generator().manual_seed(seed)
        if transpose:  # a non-contiguous [T, B, C] view of a [T, C, B] tensor
            shp = (shp[0], shp[2], shp[1])
        t = (torch.randn(shp, generator=g) * 1.2 + 0.45).to(dtype).to(dev)
        return t.transpose(1, 2) if transpose else t

    def check(name, backend, cfg, shp=shape, dtype=torch.float32, val_tol=1e-5, grad_tol=1e-5, state=True,
              transpose=False):
        if time.perf_counter() - start > budget_s:
            skipped.append(f"{name} {backend}")
            return
        t0 = time.perf_counter()
        lif = LIF(**{"tau": 1.7, "v_threshold": 0.8, **cfg}).to(dev)
        x, w = data(shp, 0, dtype, transpose), data(shp, 1, dtype, transpose)
        ref = training_pass(lif, "torch", x.float(), w.float())  # float32 reference on the same values
        got = training_pass(lif, backend, x, w)
        vals = ("out", "u_last", "mp_init_mean")
        bad = disagreements({k: ref[k] for k in vals}, {k: got[k].float() for k in vals}, val_tol, val_tol)
        bad += disagreements({k: v for k, v in ref.items() if k not in vals},
                             {k: v.float() for k, v in got.items() if k not in vals}, grad_tol, grad_tol)
        if state:
            u0, wu = data(shp[1:], 2) * 0.5, data(shp[1:], 3)
            bad += [f"state: {b}" for b in disagreements(state_pass(lif, "torch", x, w, u0, wu),
                                                         state_pass(lif, backend, x, w, u0, wu), grad_tol, grad_tol)]
        rows.append({"check": name, "backend": backend, "config": cfg, "shape": list(shp), "dtype": str(dtype),
                     "bad": bad, "seconds": round(time.perf_counter() - t0, 2)})

    for i, cfg in enumerate(grid_configs(12 if SMOKE else 1)):
        check("grid", "fused", cfg)
        if i % 2 == 0:  # every other configuration on Triton: each one compiles its own kernels
            check("grid", "triton", cfg)
    edge = dict(sg_mode="rs", reset="hard", detach_reset=True, surrogate="rectangular", learn_tau=False,
                learn_threshold=False)  # packed window and spike bits
    for shp in ((1, 4, 5), (11, 3, 70)):  # T = 1; T > 8 (the bits spill into more bytes)
        check(f"T={shp[0]}", "triton", edge, shp)
        check(f"T={shp[0]}", "triton", PAPER, shp)
    check("non-contiguous", "triton", PAPER, transpose=True)
    for dtype, (vt, gt) in ((torch.bfloat16, (1e-2, 5e-2)), (torch.float16, (2e-3, 1e-2))):
        # a smooth surrogate where M is saved (its half rounding moves f' a little, never across a window
        # edge), and the rectangular window where it is saved as bits decided in float32
        for cfg in (dict(PAPER, surrogate="sigmoid"), dict(SJ_CFG, surrogate="rectangular")):
            check(f"{dtype}".replace("torch.", ""), "triton", cfg, dtype=dtype, val_tol=vt, grad_tol=gt, state=False)

    # the monitor's M and S and unscaled output, and "auto" taking Triton on CUDA tensors
    seen = {}
    for backend in ("torch", "triton"):
        lif = LIF(backend=backend).to(dev)
        lif.scaled_output = False
        lif.monitor = lambda mod, m, s, b=backend: seen.__setitem__(b, (m.clone(), s.clone()))
        lif(data(shape, 4))
    monitor_bad = disagreements({"m": seen["torch"][0], "s": seen["torch"][1]},
                                {"m": seen["triton"][0], "s": seen["triton"][1]}, 1e-5, 1e-5)
    rows.append({"check": "monitor + scaled_output=False", "backend": "triton", "bad": monitor_bad})
    x = data(shape, 5)
    resolved = dispatch.resolve(LIF().to(dev), x, torch.zeros(x.shape[1:], device=dev))
    want = "triton" if dev.type == "cuda" else "fused"
    rows.append({"check": "auto backend", "backend": resolved, "bad": [] if resolved == want else [f"auto gave {resolved}"]})
    for cfg in (PAPER, SJ_CFG):  # last: inductor's first compile of a configuration takes tens of seconds
        check("grid", "compiled", cfg, state=False)
    failed = [r for r in rows if r["bad"]]
    return {"checks": len(rows), "failed": failed, "skipped_for_time": skipped, "rows": rows,
            "seconds": round(time.perf_counter() - start, 1), "ok": not failed and not skipped}


# -- (b), (c) Lightning training steps --------------------------------------------------------------

def _trainer_run(precision: str, strategy: str, steps: int, batch: int, T: int, sync_bn: bool) -> dict:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from snn_lightning.models import create_model
    from snn_lightning.module import SNNModule
    from snn_lightning.neurons import LIF
    from snn_lightning.neurons.kernels import dispatch

    torch.manual_seed(0)
    size = 16 if SMOKE else 32
    data = TensorDataset(torch.randn(batch * steps, 3, size, size), torch.randint(0, 10, (batch * steps,)))
    net = create_model("resnet19", num_classes=10, in_channels=3, T=T)
    module = SNNModule(net, num_classes=10, T=T, optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    backends: dict = {}
    orig_resolve = dispatch.resolve

    def counting_resolve(lif, x, u0):
        which = orig_resolve(lif, x, u0)
        key = f"{which} ({str(x.dtype).replace('torch.', '')})"
        backends[key] = backends.get(key, 0) + 1
        return which

    dispatch.resolve = counting_resolve
    seen: dict = {"losses": []}

    class Record(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            import torch.distributed as dist

            seen["dist_backend"] = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
            seen["world_size"] = trainer.world_size
            seen["sync_batchnorm_layers"] = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            seen["losses"].append(float(loss))

    trainer = pl.Trainer(accelerator="cpu" if SMOKE else "gpu", devices=1, strategy=strategy, precision=precision,
                         max_steps=steps, sync_batchnorm=sync_bn, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=[Record()])
    t0 = time.perf_counter()
    trainer.fit(module, DataLoader(data, batch_size=batch))
    dispatch.resolve = orig_resolve
    means = [float(m.mp_init_mean) for m in module.net.modules() if isinstance(m, LIF) and m.mp_init]
    ok = (len(seen["losses"]) == steps and finite(seen["losses"]) and bool(means) and finite(means)
          and any(v != 0.0 for v in means))
    return {"precision": precision, "strategy": strategy, "steps": steps, "batch": batch, "T": T,
            "seconds": round(time.perf_counter() - t0, 1), "losses": seen["losses"], "mp_init_means": means,
            "backends": backends, **{k: v for k, v in seen.items() if k != "losses"}, "ok": ok}


def section_amp() -> dict:
    runs = []
    for precision in ("bf16-mixed",) + (() if SMOKE else ("16-mixed",)):  # Lightning has no 16-mixed on the CPU
        runs.append(_trainer_run(precision, "auto", steps=4 if SMOKE else 8, batch=4 if SMOKE else 32,
                                 T=2 if SMOKE else 4, sync_bn=False))
    return {"runs": runs, "ok": all(r["ok"] for r in runs)}


def section_ddp() -> dict:
    # (SyncBatchNorm runs on GPU modules only: the CPU rehearsal goes without it)
    run = _trainer_run("32-true", "ddp", steps=3 if SMOKE else 6, batch=4 if SMOKE else 16, T=2, sync_bn=not SMOKE)
    want = "gloo" if SMOKE else "nccl"
    run["ok"] = run["ok"] and run.get("dist_backend") == want and (SMOKE or run.get("sync_batchnorm_layers", 0) > 0)
    return run


# -- (d) one LIF layer and the ResNet-19 throughput ------------------------------------------------

def _cuda_ms(fn, runs: int, dev) -> list:
    times = []
    for _ in range(runs):
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def section_lif_layer() -> dict:
    """LIF [4, 32, 128, 16, 16] forward + backward per backend, against one read and one write of every
    tensor it must touch at the device's measured copy bandwidth."""
    from bench import saved_bytes
    from snn_lightning.neurons import LIF

    dev = device()
    shape = (4, 2, 8, 4, 4) if SMOKE else (4, 32, 128, 16, 16)
    runs = 3 if SMOKE else 50
    big = torch.empty(2**26 if not SMOKE else 2**16, device=dev)  # 256 MiB: past every cache
    other = torch.empty_like(big)
    copy_ms = statistics.median(_cuda_ms(lambda: other.copy_(big), 5 if SMOKE else 20, dev))
    bandwidth = 2 * big.numel() * 4 / (copy_ms / 1e3)  # bytes read + written per second
    x0 = torch.randn(shape, device=dev)
    g = torch.randn(shape, device=dev)
    n = x0.numel()
    rows = {}
    for label, cfg in (("paper config", PAPER), ("spikingjelly config, rectangular", dict(SJ_CFG, surrogate="rectangular"))):
        for backend in ("fused", "compiled", "triton"):
            lif = LIF(**cfg, backend=backend).to(dev)
            xr = x0.clone().requires_grad_(True)

            def step(lif=lif, xr=xr):
                xr.grad = None  # a fresh gradient each time (accumulating would read and write it again)
                lif.reset()
                lif(xr).backward(g)

            saved, _count, _ = saved_bytes(lambda lif=lif: lif(x0.clone().requires_grad_(True)))
            for _ in range(3):
                step()
            ms = statistics.median(_cuda_ms(step, runs, dev))
            # x read and O written (forward), gO read and dx written (backward), the saved tensors written
            # once and read once
            touched = 4 * n * 4 + 2 * saved
            floor_ms = touched / bandwidth * 1e3
            rows[f"{label}, {backend}"] = {"ms": ms, "floor_ms": floor_ms, "x_floor": ms / floor_ms,
                                           "saved_bytes": saved, "touched_bytes": touched}
    return {"shape": list(shape), "copy_bandwidth_gb_s": bandwidth / 1e9, "rows": rows, "ok": True}


def throughput_one(which: str, batch: int, steps: int, warmup: int) -> dict:
    """Images/s and peak memory of one ResNet-19 (T = 4, 32×32) training contender."""
    from snn_lightning.models import create_model

    dev = device()
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    kind, _, backend = which.partition(":")
    if kind == "spikingjelly":
        os.environ["SJ_LIF_CUDA_IMPLEMENTATION"] = backend
        from bench import sj_neuron_factory

        neuron = sj_neuron_factory("sigmoid")  # its CUDA and Triton kernels have no Rect
    else:
        neuron = dict(PAPER if kind == "paper" else SJ_CFG, backend=backend)
    model = create_model("resnet19", num_classes=10, in_channels=3, T=4, neuron=neuron).to(dev)
    size = 16 if SMOKE else 32
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    losses = []

    def step():
        loss = lossf(model(x).mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(dev)
    first_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms = _cuda_ms(step, steps, dev)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    med = statistics.median(ms)
    return {"which": which, "batch": batch, "step_ms": med, "step_ms_min": min(ms), "images_per_s": batch / (med / 1e3),
            "peak_mib": peak, "warmup_s": round(first_s, 1), "finite": finite(losses), "ok": finite(losses)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("section", choices=["kernels", "amp", "ddp", "lif-layer", "throughput-one"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--which", default="paper:triton")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget", type=float, default=150.0)
    a = ap.parse_args(argv)
    if a.section == "kernels":
        res = section_kernels(a.budget)
    elif a.section == "amp":
        res = section_amp()
    elif a.section == "ddp":
        res = section_ddp()
    elif a.section == "lif-layer":
        res = section_lif_layer()
    else:
        res = throughput_one(a.which, a.batch, a.steps, a.warmup)
    Path(a.out).write_text(json.dumps(res, default=str))
    return 0 if res.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
