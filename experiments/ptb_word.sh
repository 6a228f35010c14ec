#!/usr/bin/env bash
# Penn Treebank words, Zaremba, Sutskever & Vinyals 2014 (TF's ptb_word_lm.py): SGD 1.0 on the
# loss summed over time, clipped, decayed per epoch. Published valid / test perplexity: small
# 120.7 / 114.5, medium 86.2 / 82.7, large 82.2 / 78.4. Each size also with lstmjax's default
# chain (clip to 5, then Adam 2e-3 on the mean loss).
#
#   LSTMJAX_DATA_DIR=DIR experiments/ptb_word.sh small|medium|large    # DIR holds ptb.*.txt
set -euo pipefail
here=$(dirname "$0")
size=$1
shift
"$here/run.sh" "ptb-$size-sgd" --preset "ptb-$size" "$@"
"$here/run.sh" "ptb-$size-adam" --preset "ptb-$size" --optim.optimizer adam \
  --optim.learning-rate 2e-3 --optim.max-grad-norm 5 --optim.schedule constant \
  --train.loss-scale mean "$@"
