#!/usr/bin/env bash
# Benchmarks of the fused LIF path side by side with spikingjelly and snnTorch (`make bench`).
#
# The comparison libraries go into their own folder, benchmarks/.bench_venv (git-ignored), with
# `pip install --target ... --no-deps`, on top of the project's .venv: spikingjelly 2.0.0 would
# otherwise pull torchaudio and a new torch. Nothing is installed into .venv itself.
#
# Environment knobs:
#   BENCH_RUNS=9            measured runs per contender (>= 7)
#   BENCH_SKIP_RESNET=1     only the LIF layer table
#   BENCH_SKIP_STARTUP=1    no cold/warm-start snn-train runs (bench_startup.py, about 3 minutes)
#   BENCH_THREADS=2         torch threads for (b) and (c) (OMP_NUM_THREADS)
#   BENCH_LIF_THREADS="1 2" thread counts for the LIF layer table (a)
#   BENCH_RESNET_RUNS=9, BENCH_RESNET_ROUNDS=3   ResNet-19 runs, pooled over alternating rounds
#   BENCH_SYSTEM_MALLOC=1   keep glibc's default allocator thresholds (see below)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SITE=benchmarks/.bench_venv
RUNS=${BENCH_RUNS:-9}
export OMP_NUM_THREADS=${BENCH_THREADS:-2}

if ! PYTHONPATH=$SITE $PY -c "import spikingjelly, snntorch, loguru" 2>/dev/null; then
    echo "installing spikingjelly 2.0.0 and snnTorch 1.0.0 into $SITE"
    $PY -m pip install --quiet --disable-pip-version-check --target "$SITE" --no-deps \
        spikingjelly==2.0.0 snntorch==1.0.0 "loguru>=0.7,<1"
fi
export PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"

# glibc hands buffers of several MiB straight back to the kernel and faults them in again on the
# next allocation; on this VM that costs ~1 ms per MiB and swamps a 16 MiB elementwise kernel
# (one 16 MiB `x + x` measured 30 ms instead of 1 ms). Keeping freed memory in the heap measures the
# kernels instead of the page faults. Every contender runs under the same setting.
if [ "${BENCH_SYSTEM_MALLOC:-0}" != "1" ]; then
    export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1073741824}
    export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-17179869184}
fi

rm -f benchmarks/.bench_venv/results/*.json
# the benchmark's compiled kernels in a persistent cache of their own (one folder per torch version and
# thread count inside: neurons/kernels/inductor_cache.py)
export SNN_LIGHTNING_INDUCTOR_CACHE=${SNN_LIGHTNING_INDUCTOR_CACHE:-$PWD/$SITE/inductor_cache}
$PY benchmarks/bench.py info
# (a) at 1 thread (per-core efficiency; steady on a shared machine) and at the machine's 2 threads
for th in ${BENCH_LIF_THREADS:-1 2}; do
    echo "== (a) one LIF layer [4, 32, 128, 16, 16], forward+backward, $th thread(s) =="
    OMP_NUM_THREADS=$th $PY benchmarks/bench.py lif --runs "$RUNS"
done

# the default neuron's cold vs warm start in a default `snn-train` run (background compile, persistent cache)
if [ "${BENCH_SKIP_STARTUP:-0}" != "1" ]; then
    echo "== (a') default snn-train: auto-compile off / cold cache / warm cache =="
    $PY benchmarks/bench_startup.py
fi

if [ "${BENCH_SKIP_RESNET:-0}" != "1" ]; then
    # (b) needs the model zoo; skip with a note if it isn't there yet
    if $PY -c "from snn_lightning.models import create_model" 2>/dev/null; then
        echo "== (b) ResNet-19 training step, T=4, batch 16, 32x32 =="
        $PY benchmarks/bench.py resnet --batch 16 --runs "${BENCH_RESNET_RUNS:-9}" --rounds "${BENCH_RESNET_ROUNDS:-3}" --warmup 1 --share
    else
        echo "snn_lightning.models.create_model not available: ResNet-19 benchmark skipped"
    fi
fi

echo "== (c) GPU =="
$PY benchmarks/bench.py gpu --runs "$RUNS"

echo "== (d) memory (ResNet-19, T=4/8/16) and (e) CPU threads on a busy machine ==" && $PY benchmarks/bench_memory.py --json $SITE/results/memory.json && $PY benchmarks/bench_threads.py
$PY benchmarks/bench.py report > /dev/null
echo "wrote benchmarks/results.md"
