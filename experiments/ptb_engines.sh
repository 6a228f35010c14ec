#!/usr/bin/env bash
# The "engine" row: the PTB small SGD recipe (preset ptb-small) for its first 1,000 steps with each
# way of running a layer: "scan" (lax.scan over one step), "fused" (the input matmul hoisted out
# of the loop, a hand-written backward pass) and "auto" (what lstmjax picks for the backend and
# hidden size; on a 2-core AMD EPYC VM at H=200, scan). The same seed and data, so the validation curves
# (every 250 steps) should agree to float32 rounding; the runs' tokens/s give the speed ratio.
#
#   LSTMJAX_DATA_DIR=DIR experiments/ptb_engines.sh    # DIR holds ptb.*.txt
set -euo pipefail
here=$(dirname "$0")
for engine in scan fused auto; do
  "$here/run.sh" "ptb-small-engine-$engine" --preset ptb-small --model.engine "$engine" \
    --train.max-steps 1000 --train.eval-every 250 --train.sample-length 0 "$@"
done
