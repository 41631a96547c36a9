"""Training throughput and peak GPU memory of the paper's networks on synthetic data.

    python benchmarks/bench_throughput.py                          # GPU: ResNet-19 and ResNet-34, fp32 and bf16
    python benchmarks/bench_throughput.py --amp none,bf16,fp16 --channels-last both
    python benchmarks/bench_throughput.py --device cpu --steps 2 --batch 2     # a tiny check (tests run this)

One row per (model, precision, memory format): a full training step (forward over T timesteps,
time-averaged cross-entropy, backward, SGD with momentum) on random inputs already on the device, so
the number is the model's speed, not the data pipeline's. Shapes follow the paper: ResNet-19 on
CIFAR (3x32x32, 100 classes, T=4, batch 64), spiking ResNet-34 on ImageNet (3x224x224, 1000 classes,
T=4; batch 32 by default, pass --batch-resnet34). Every LIF keeps MP-Init on, as in training.
Reported: ms per step (median of the timed steps), training images/s (batch / median step time) and
peak allocated GPU memory. On one H100 the default run takes well under 5 minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from snn_lightning.losses import MeanCrossEntropy  # noqa: E402
from snn_lightning.models import create_model  # noqa: E402

# name -> (registry name, channels, image size, classes, default batch)
MODELS = {
    "resnet19": ("resnet19", 3, 32, 100, 64),
    "resnet34": ("resnet34", 3, 224, 1000, 32),
    "sew_resnet34": ("sew_resnet34", 3, 224, 1000, 32),
}
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet19,resnet34", help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    p.add_argument("--T", type=int, default=4, help="timesteps")
    p.add_argument("--batch", type=int, default=None, help="batch size for every model (default: per model)")
    p.add_argument("--batch-resnet19", type=int, default=None)
    p.add_argument("--batch-resnet34", type=int, default=None)
    p.add_argument("--steps", type=int, default=10, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 3 on GPU, 0 on CPU)")
    p.add_argument("--amp", default=None, help="comma list of none, bf16, fp16 (default: none,bf16 on GPU; none on CPU)")
    p.add_argument("--channels-last", choices=("off", "on", "both"), default="off",
                   help="convert model and inputs to channels_last (4-D convs only; the timesteps are folded into the batch)")
    p.add_argument("--norm", default="tdbn", help="norm kind of every layer (tdbn, tebn, tab, bn, none)")
    p.add_argument("--backend", default="auto", help="LIF backend: auto, torch, fused, compiled or triton")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (slow first steps)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; allowed: {', '.join(MODELS)}")
    cpu = args.device == "cpu"
    args.amp = [a.strip() for a in (args.amp or ("none" if cpu else "none,bf16")).split(",") if a.strip()]
    bad = [a for a in args.amp if a not in AMP_DTYPES]
    if bad:
        p.error(f"unknown --amp {', '.join(bad)}; allowed: {', '.join(AMP_DTYPES)}")
    if args.warmup is None:
        args.warmup = 0 if cpu else 3
    if args.steps < 1 or args.warmup < 0 or args.T < 1:
        p.error("--steps and --T must be >= 1 and --warmup >= 0")
    return args


def batch_for(name: str, args) -> int:
    own = getattr(args, f"batch_{name.replace('sew_', '')}", None)
    return own or args.batch or MODELS[name][4]


def build(name: str, args, device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, int, int, int]:
    key, channels, size, classes, _ = MODELS[name]
    neuron = {"tau": 2.0, "v_threshold": 1.0, "sg_mode": "trsg", "mp_init": True, "backend": args.backend}
    net = create_model(key, num_classes=classes, in_channels=channels, T=args.T, norm=args.norm, neuron=neuron).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net, channels, size, classes


def bench_one(name: str, amp: str, channels_last: bool, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    batch = batch_for(name, args)
    row = {"model": name, "T": args.T, "batch": batch, "amp": amp, "channels_last": channels_last, "device": str(device)}
    cuda = device.type == "cuda"
    net = None
    try:
        net, channels, size, classes = build(name, args, device, channels_last)
        row["input"] = f"{channels}x{size}x{size}"
        row["params_M"] = sum(p.numel() for p in net.parameters()) / 1e6
        model = torch.compile(net) if args.compile else net
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        loss_fn = MeanCrossEntropy()
        dtype = AMP_DTYPES[amp]
        scaler = torch.amp.GradScaler(device.type, enabled=(dtype is torch.float16))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.randn(batch, channels, size, size, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, classes, (batch,), device=device)
        autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else nullcontext
        net.train()

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            with autocast():
                logits = model(x)
                loss = loss_fn(logits, y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            return loss.detach()

        for _ in range(args.warmup):
            step()
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            loss = step()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        loss = float(loss)
        ms = 1000 * statistics.median(times)
        mp = [float(m.mp_init_mean) for m in net.modules() if hasattr(m, "mp_init_mean")]
        row.update(
            ms_per_step=ms,
            images_per_s=batch / (ms / 1000),
            peak_mem_gb=(torch.cuda.max_memory_allocated(device) / 2**30) if cuda else None,
            loss=loss,
            finite=math.isfinite(loss) and all(math.isfinite(v) for v in mp),
            status="ok",
        )
    except torch.OutOfMemoryError:
        row.update(status="OOM", ms_per_step=None, images_per_s=None, peak_mem_gb=None)
    finally:
        del net
        if cuda:
            torch.cuda.empty_cache()
    return row


def format_table(rows: list[dict]) -> str:
    head = ("model", "input", "T", "batch", "amp", "ch-last", "ms/step", "img/s", "peak GB", "status")
    lines = []
    for r in rows:
        lines.append((
            r["model"], r.get("input", "?"), str(r["T"]), str(r["batch"]), r["amp"], "yes" if r["channels_last"] else "no",
            f"{r['ms_per_step']:.1f}" if r.get("ms_per_step") is not None else "-",
            f"{r['images_per_s']:.1f}" if r.get("images_per_s") is not None else "-",
            f"{r['peak_mem_gb']:.2f}" if r.get("peak_mem_gb") is not None else "-",
            r["status"] if r.get("finite", True) else "NON-FINITE",
        ))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)] if lines else [len(h) for h in head]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda but torch.cuda.is_available() is False; use --device cpu for the tiny check",
                  file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}")
    formats = {"off": [False], "on": [True], "both": [False, True]}[args.channels_last]
    rows = []
    for name in args.models:
        for amp in args.amp:
            for cl in formats:
                row = bench_one(name, amp, cl, args, device)
                rows.append(row)
                print(f"  {name} amp={amp} channels_last={cl}: {row['status']}"
                      + (f", {row['images_per_s']:.1f} img/s" if row.get("images_per_s") else ""), flush=True)
    print()
    print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    bad = [r for r in rows if r["status"] == "ok" and not r.get("finite", True)]
    if bad:
        print("error: non-finite loss or MP-Init mean in: " + ", ".join(f"{r['model']}/{r['amp']}" for r in bad),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
