#!/usr/bin/env bash
# Train (or resume) one recipe into experiments/runs/NAME, keeping its console output and wall time.
#
#   experiments/run.sh NAME [lstmjax train options...]
#
# The run directory keeps what RESULTS.md is made from: config.json, vocab.json, metrics.jsonl,
# train.log (console output: per-epoch validation, final numbers, the sample) and wall.txt (one
# line per invocation: seconds, host, jax backend). Checkpoints stay out of git; calling the same
# command again resumes from the latest one.
set -euo pipefail
name=$1
shift
dir="$(dirname "$0")/runs/$name"
mkdir -p "$dir"
start=$(date +%s)
status=0
lstmjax train --workdir "$dir" "$@" 2>&1 | tee -a "$dir/train.log" || status=$?
# a call that fails or is stopped still spent its time: the run's wall time counts it
backend=$(python -c "import jax; print(jax.default_backend(), jax.devices()[0].device_kind)")
echo "$(( $(date +%s) - start )) s on $(hostname) ($(nproc) cores, $backend)" >> "$dir/wall.txt"
exit $status
