#!/usr/bin/env bash
# Run one of the paper's sweeps with Hydra's multirun.
#
#   multirun_sweeps/run.sh <sweep> [--smoke | --scale=<full|smoke|digits>] [hydra overrides...]
#
# sweeps: fig9, table1, table1_dvs, table2, table2_dvs, timesteps (multirun_sweeps/sweep/*.yaml)
# scale:  full (default; the paper's recipe on GPUs), smoke (digits on this CPU, ~1-2 s per job),
#         digits (the default digits setting, ~10 s per job)      (multirun_sweeps/scale/*.yaml)
#
# Outputs go to ./outputs/sweeps/<sweep>/<scale>/<job>/ (a fixed folder: a re-run skips the jobs
# whose status.json says finished and retries the others; a failed job does not stop the sweep, but
# the sweep exits 1 at the end). Two run.sh of the same sweep may run at once (two terminals; two
# machines where the shared file system supports flock): a job folder is locked by the process
# running it, the other skips it and waits for its result at the end.
# Extra arguments are Hydra overrides, e.g. `seed=1,2,3,4,5`, `trainer=ddp trainer.strategy=ddp_spawn`,
# `hydra/launcher=submitit_slurm`, `hydra.sweep.dir=/scratch/fig9`. Then: snn-aggregate <sweep dir>.
# Off the full scale, the sweep runs at nice 10 with one thread per job (OMP_NUM_THREADS=1).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
name="$1"; shift
if [[ ! -f "$here/sweep/$name.yaml" ]]; then
  echo "error: unknown sweep '$name'; allowed: $(cd "$here/sweep" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
  exit 2
fi
scale=full
args=()
for a in "$@"; do
  case "$a" in
    --smoke) scale=smoke ;;
    --scale=*) scale="${a#--scale=}" ;;
    *) args+=("$a") ;;
  esac
done
if [[ ! -f "$here/scale/$scale.yaml" ]]; then
  echo "error: unknown scale '$scale'; allowed: $(cd "$here/scale" && ls *.yaml | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
  exit 2
fi
python="${SNN_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python; fi
fi
cmd=("$python" -m snn_lightning.train -m --config-dir "$here" "+sweep=$name" "+scale=$scale" ${args[@]+"${args[@]}"})
if [[ "$scale" != full ]]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  cmd=(nice -n "${SNN_NICE:-10}" "${cmd[@]}")
fi
echo "+ ${cmd[*]}" >&2
exec "${cmd[@]}"
