#!/usr/bin/env bash
# `make gpu-check`: the GPU paths the CPU test suite cannot reach, on one CUDA GPU in under 5 minutes.
#   1. a few bf16-mixed steps of ResNet-19 through snn-train (Lightning AMP, MP-Init under autocast),
#      then a few 16-mixed (fp16 + GradScaler) steps of the same;
#   2. a 1-GPU DDP run: trainer=ddp trainer.devices=1 (NCCL process group, SyncBatchNorm conversion,
#      DistributedSampler) on digits, short;
#   3. the throughput benchmark (ResNet-19 CIFAR-shape and ResNet-34 ImageNet-shape, T=4, fp32 and bf16).
# Every run must finish with finite loss and finite MP-Init running means; outputs go to
# $GPU_CHECK_DIR (default outputs/gpu_check/<time>). Exits 2 at once when no CUDA GPU is usable.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${GPU_CHECK_DIR:-outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
START=$(date +%s)

if ! why=$("$PY" - <<'EOF' 2>&1
import sys
try:
    import torch
except Exception as e:  # noqa: BLE001
    print(f"torch cannot be imported ({type(e).__name__}: {e})")
    sys.exit(1)
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) sees no CUDA device")
    sys.exit(1)
print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
); then
    echo "error: gpu-check needs a CUDA GPU: $why" >&2
    exit 2
fi
echo "gpu-check on: $why"
echo "outputs: $OUT"
mkdir -p "$OUT"

# common overrides: CSV logs only (no wandb), no progress bar in the log
COMMON=(logger=csv "~callbacks.progress_bar" trainer.log_every_n_steps=5)

run_train() {  # name, overrides...
    local name=$1
    shift
    echo
    echo "=== $name: snn-train $*"
    local t0=$(date +%s)
    if ! timeout "$STEP_TIMEOUT" "$PY" -m snn_lightning.train "${COMMON[@]}" "$@" "hydra.run.dir=$OUT/$name" \
        >"$OUT/$name.log" 2>&1; then
        tail -n 30 "$OUT/$name.log" >&2
        echo "error: gpu-check step '$name' failed (log: $OUT/$name.log)" >&2
        exit 1
    fi
    grep -E "final test accuracy|run folder" "$OUT/$name.log" || true
    echo "($(($(date +%s) - t0)) s)"
}

# 1. AMP: ResNet-19 on digits upsampled to 32x32 (in the package, no download)
AMP_STEPS=(model=resnet19 data.image_size=32 batch_size=64 trainer=gpu trainer.max_epochs=1
    ++trainer.limit_train_batches=15 ++trainer.limit_val_batches=2 ++trainer.limit_test_batches=2)
run_train amp_bf16 "${AMP_STEPS[@]}" trainer.precision=bf16-mixed
run_train amp_fp16 "${AMP_STEPS[@]}" trainer.precision=16-mixed

# 2. DDP on one GPU (NCCL, SyncBatchNorm), digits, a few batches
run_train ddp_1gpu trainer=ddp trainer.devices=1 debug=smoke

# every run finished, with finite metrics and finite, non-zero MP-Init running means on the GPU
"$PY" - "$OUT" amp_bf16 amp_fp16 ddp_1gpu <<'EOF'
import json, math, sys
from pathlib import Path
import torch

out, names = Path(sys.argv[1]), sys.argv[2:]
bad = []
for name in names:
    run = out / name
    status = json.loads((run / "status.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    mp = {k: float(v) for k, v in ckpt["state_dict"].items() if k.endswith("mp_init_mean")}
    precision = ckpt["hyper_parameters"]["config"]["trainer"].get("precision")
    finite = all(math.isfinite(v) for v in metrics.values()) and all(math.isfinite(v) for v in mp.values())
    print(f"{name:9s} status={status['status']} precision={precision} test/acc={metrics.get('test/acc', float('nan')):.4f} "
          f"MP-Init layers={len(mp)} finite={finite} nonzero={sum(v != 0.0 for v in mp.values())}")
    if status["status"] != "finished" or not finite or not mp or not any(v != 0.0 for v in mp.values()):
        bad.append(name)
if bad:
    print(f"error: gpu-check runs with a failed status or non-finite / all-zero MP-Init means: {', '.join(bad)}",
          file=sys.stderr)
    sys.exit(1)
EOF

# 3. throughput
echo
echo "=== throughput: benchmarks/bench_throughput.py"
if ! timeout "$STEP_TIMEOUT" "$PY" benchmarks/bench_throughput.py --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"; then
    echo "error: gpu-check step 'throughput' failed (log: $OUT/throughput.log)" >&2
    exit 1
fi

echo
echo "gpu-check passed in $(($(date +%s) - START)) s; outputs in $OUT"
