"""Cost of the gradient telemetry and of the operation count, side by side with plain steps in one process.

    python benchmarks/bench_telemetry.py                          # small_cnn and resnet19, CPU, 1 thread
    python benchmarks/bench_telemetry.py --device cuda --clock wall

Training: plain steps (forward, backward, SGD step) alternate with recorded steps, where a
``GradientRecorder`` is attached around the same step and its summary is turned into metrics (what
the telemetry callback does on a recording step). The overhead at a recording frequency of one step in
E is (median recorded − median plain) / (E · median plain). Evaluation: an evaluation forward with an
``OperationCounter`` attached (what ``OperationCountCallback`` does to every evaluation batch) against
the same forward without.

CPU runs use the process's CPU time by default (``--clock cpu``), which other jobs disturb much less
than wall time.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from snn_lightning.energy import OperationCounter
from snn_lightning.models import create_model
from snn_lightning.telemetry import GradientRecorder, gradient_metrics

MODELS = {
    # name: (create_model kwargs, input shape [C, H, W], batch, T)
    "small_cnn": (dict(name="small_cnn", channels=32), (1, 8, 8), 64, 4),
    "resnet19": (dict(name="resnet19"), (3, 8, 8), 16, 2),
}


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(name: str, steps: int, every: int, device: str, clock) -> dict:
    kw, shape, batch, T = MODELS[name]
    torch.manual_seed(0)
    net = create_model(num_classes=10, in_channels=shape[0], T=T, **kw).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    rec = GradientRecorder(net.neuron_layers())

    def step(record: bool) -> float:
        _sync(device)
        t0 = clock()
        if record:
            rec.reset()
            rec.attach()
        loss = torch.nn.functional.cross_entropy(net(x).mean(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if record:
            rec.record_parameters()
            rec.detach()
            metrics = gradient_metrics(rec.summary())
            assert metrics
        opt.step()
        _sync(device)
        return clock() - t0

    for _ in range(3):
        step(False), step(True)
    plain, recorded = [], []
    for i in range(steps):
        for record in (False, True) if i % 2 == 0 else (True, False):
            (recorded if record else plain).append(step(record))
    p, r = statistics.median(plain), statistics.median(recorded)

    net.eval()
    ev, cnt = [], []
    with torch.no_grad():
        for _ in range(max(3, steps // 4)):
            _sync(device)
            t0 = clock()
            net(x)
            _sync(device)
            ev.append(clock() - t0)
            t0 = clock()
            with OperationCounter(net) as counter:  # what OperationCountCallback adds to an evaluation batch
                net(x)
            counter.result()
            _sync(device)
            cnt.append(clock() - t0)
    net.train()
    e, c = statistics.median(ev), statistics.median(cnt)
    return {"model": name, "plain_ms": 1e3 * p, "recorded_ms": 1e3 * r, "record_step_ratio": r / p,
            "overhead_at_every": (r - p) / (every * p), "eval_forward_ms": 1e3 * e, "count_ms": 1e3 * c, "count_ratio": c / e}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--every", type=int, default=50, help="recording frequency (the callback's every_n_steps default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"device={args.device} clock={args.clock} every_n_steps={args.every}")
    print("| model | plain step (ms) | recorded step (ms) | recorded/plain | overhead at every_n_steps | eval forward (ms) | counted eval forward (ms) | counted/plain |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        r = bench(name, args.steps, args.every, args.device, clock)
        print(f"| {r['model']} | {r['plain_ms']:.1f} | {r['recorded_ms']:.1f} | {r['record_step_ratio']:.3f} | "
              f"{100 * r['overhead_at_every']:.2f}% | {r['eval_forward_ms']:.1f} | {r['count_ms']:.1f} | {r['count_ratio']:.2f} |")


if __name__ == "__main__":
    main()
