"""Memory of a ResNet-19 training step: ours (default and ``memory="light"``) vs spikingjelly's LIFNode.

Run by ``benchmarks/run.sh`` (``make bench``); ``python benchmarks/bench_memory.py --help`` for knobs.

For T = 4, 8 and 16 at one batch size it prints, side by side in one process:

* bytes kept for backward by one step (saved-tensor hooks, each storage once: device-independent),
  in total and without the parameters (which every contender keeps alike);
* the step time (forward + backward + SGD step), contenders interleaved run by run so that a change
  in machine load hits all alike, and the light/default ratio;
* the peak RSS of a process that builds the network and runs two steps (each contender in its own
  subprocess, so the figure is its own), in total and above the RSS after imports, with glibc's
  mmap threshold fixed so that freed activations leave the RSS.

Then the largest batch whose saved-for-backward bytes fit a fixed budget (``--budget-gib``), from the
exact linear dependence on the batch (measured at two batch sizes).

Goal (issue 15): light ≤ 0.35× spikingjelly's saved bytes at ≤ 1.3× the default mode's step time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import sj_neuron_factory  # noqa: E402  (the one spikingjelly-in-our-network wrapper)

from snn_lightning.models import create_model  # noqa: E402
from snn_lightning.models.light import saved_bytes  # noqa: E402

CONTENDERS = ("spikingjelly", "ours", "ours-light")


def build(which: str, T: int):
    torch.manual_seed(0)
    neuron = sj_neuron_factory() if which == "spikingjelly" else None
    memory = "light" if which == "ours-light" else None
    net = create_model("resnet19", num_classes=10, in_channels=3, T=T, neuron=neuron, memory=memory)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    return net, opt


def make_step(net, opt, batch: int):
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    lossf = torch.nn.CrossEntropyLoss()

    def forward():
        return lossf(net(x).mean(0), y)

    def step():
        loss = forward()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return forward, step


def param_bytes(net) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def saved_of(which: str, T: int, batch: int) -> dict:
    net, opt = build(which, T)
    forward, _ = make_step(net, opt, batch)
    total, loss = saved_bytes(forward)
    del loss
    return {"saved_mib": total / 2**20, "saved_no_params_mib": (total - param_bytes(net)) / 2**20}


def vm_kib(field: str) -> int:
    """A field of /proc/self/status in KiB. VmHWM, unlike getrusage's ru_maxrss, starts afresh at exec:
    a child's ru_maxrss carries the RSS its parent had when it forked."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_one(which: str, T: int, batch: int) -> tuple[float, float]:
    """(peak RSS, peak RSS above the RSS after imports) in MiB of a fresh process running two steps."""
    code = (f"import bench_memory as b; base = b.vm_kib('VmRSS'); net, opt = b.build({which!r}, {T}); "
            f"_, step = b.make_step(net, opt, {batch}); step(); step(); "
            "peak = b.vm_kib('VmHWM'); print(peak / 1024, (peak - base) / 1024)")
    # A fixed mmap threshold: glibc's default one rises after every large free, after which freed
    # activations stay in the heap and RSS stops following what is alive (run.sh's benchmark setting,
    # a 1 GiB threshold, keeps everything in the heap on purpose: right for timing, wrong here).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent, env=env)
    peak, above = out.stdout.strip().splitlines()[-1].split()
    return float(peak), float(above)


def time_interleaved(T: int, batch: int, runs: int) -> dict:
    steps = {}
    for which in CONTENDERS:
        net, opt = build(which, T)
        steps[which] = make_step(net, opt, batch)[1]
        steps[which]()  # warm-up
    ts = {w: [] for w in CONTENDERS}
    cs = {w: [] for w in CONTENDERS}
    for _ in range(runs):
        for which, step in steps.items():
            t, c = time.perf_counter(), time.process_time()
            step()
            ts[which].append(time.perf_counter() - t)
            cs[which].append(time.process_time() - c)
    # CPU time of the process: on a shared machine it moves far less with the load than wall time
    return {w: {"median_s": statistics.median(ts[w]), "min_s": min(ts[w]), "cpu_median_s": statistics.median(cs[w])}
            for w in CONTENDERS}


def max_batch(which: str, T: int, budget: float) -> int:
    a, b = (saved_of(which, T, n)["saved_mib"] * 2**20 for n in (2, 4))
    per_sample = (b - a) / 2
    fixed = a - 2 * per_sample
    return int((budget - fixed) // per_sample)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--Ts", default="4,8,16")
    ap.add_argument("--runs", type=int, default=5, help="timed steps per contender and T (after one warm-up)")
    ap.add_argument("--budget-gib", type=float, default=4.0, help="saved-for-backward budget for the batch search")
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    res = {"threads": torch.get_num_threads(), "batch": a.batch, "rows": {}}
    print(f"ResNet-19 training step, batch {a.batch}, 32x32, {torch.get_num_threads()} thread(s)")
    print("| T | contender | saved MiB | w/o params | × spikingjelly | step s (median) | CPU s (median) "
          "| × ours default (CPU) | peak RSS MiB | above imports |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for T in (int(t) for t in a.Ts.split(",")):
        rss = {w: rss_one(w, T, a.batch) for w in CONTENDERS}
        saved = {w: saved_of(w, T, a.batch) for w in CONTENDERS}
        times = time_interleaved(T, a.batch, a.runs)
        for w in CONTENDERS:
            r = {**saved[w], **times[w], "peak_rss_mib": rss[w][0], "peak_rss_above_imports_mib": rss[w][1]}
            r["vs_sj_saved"] = saved[w]["saved_mib"] / saved["spikingjelly"]["saved_mib"]
            r["vs_default_time"] = times[w]["median_s"] / times["ours"]["median_s"]
            r["vs_default_cpu"] = times[w]["cpu_median_s"] / times["ours"]["cpu_median_s"]
            res["rows"][f"T{T}/{w}"] = r
            print(f"| {T} | {w} | {r['saved_mib']:.1f} | {r['saved_no_params_mib']:.1f} | {r['vs_sj_saved']:.3f} | "
                  f"{r['median_s']:.2f} | {r['cpu_median_s']:.2f} | {r['vs_default_cpu']:.2f} | {r['peak_rss_mib']:.0f} | "
                  f"{r['peak_rss_above_imports_mib']:.0f} |", flush=True)
    budget = a.budget_gib * 2**30
    res["max_batch"] = {w: max_batch(w, 4, budget) for w in CONTENDERS}
    print(f"\nLargest batch at T=4 whose saved-for-backward bytes fit {a.budget_gib:g} GiB: "
          + ", ".join(f"{w} {n}" for w, n in res["max_batch"].items()))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
