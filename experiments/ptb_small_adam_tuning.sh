#!/usr/bin/env bash
# PTB small with lstmjax's default chain (clip the global norm, then Adam, on the mean loss per
# token): the learning rate and the clip tuned on validation, one epoch (2,323 steps) each, beside
# ptb-small-adam (lr 2e-3, clip 5: valid 219.8 after one epoch). lr 5e-3 came out worse (256.1),
# so the next learning rate tried is lower, 1e-3 (a run at 1e-2 was stopped after 141 steps and
# removed). ptb-small-adam's gradient norm stays near 0.27, so a clip of 5 never acts: the clip
# tried is 0.1, which acts at every step.
# The best setting (lr 2e-3, clip 0.1) then trains on to the recipe's 13 epochs as
# ptb-small-adam-tuned: a copy of its one-epoch run directory (checkpoints included), resumed, so
# that the tuning run stays as it was scored. At a constant rate, resuming after epoch 1 trains
# the same steps as one 13-epoch run.
#
#   LSTMJAX_DATA_DIR=DIR experiments/ptb_small_adam_tuning.sh    # DIR holds ptb.*.txt
set -euo pipefail
here=$(dirname "$0")
chain=(--preset ptb-small --optim.optimizer adam --optim.schedule constant --train.loss-scale mean)
for setting in "5e-3 5" "1e-3 5" "2e-3 0.1"; do
  read -r lr clip <<< "$setting"
  "$here/run.sh" "ptb-small-adam-lr$lr-clip$clip" "${chain[@]}" --optim.learning-rate "$lr" \
    --optim.max-grad-norm "$clip" --train.num-epochs 1 "$@"
done
best=ptb-small-adam-tuned
if [[ ! -d "$here/runs/$best" ]]; then
  cp -r "$here/runs/ptb-small-adam-lr2e-3-clip0.1" "$here/runs/$best"
  rm -f "$here/runs/$best/train.lock"
fi
"$here/run.sh" "$best" "${chain[@]}" --optim.learning-rate 2e-3 --optim.max-grad-norm 0.1 \
  --train.num-epochs 13 "$@"
