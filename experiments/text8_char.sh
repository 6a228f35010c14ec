#!/usr/bin/env bash
# text8 characters, the TF text8 LSTM tutorial (Udacity deep-learning assignment 6): a 1 x 128
# LSTM fed one-hot vectors of 27 symbols, batch 64, 10 unrollings, 150,000 steps, validated on the
# tutorial's split (the first 1,000 characters). With text8.head10M.txt (the first 10^7
# characters) in place of text8, training sees 9,999,000 characters instead of 99,999,000.
# Tutorial: validation perplexity about 3.5 (1.81 bits per character).
#
#   LSTMJAX_DATA_DIR=DIR experiments/text8_char.sh    # DIR holds text8 or text8.head10M.txt
set -euo pipefail
here=$(dirname "$0")
# the tutorial's optimizer: clip the global norm to 1.25, then Adagrad 0.9
"$here/run.sh" text8-char-adagrad --preset text8-char "$@"
# lstmjax's default chain: clip to 5, then Adam 2e-3
"$here/run.sh" text8-char-adam --preset text8-char --optim.optimizer adam \
  --optim.learning-rate 2e-3 --optim.max-grad-norm 5 "$@"
# the notebook's seed recipe: 1 x 64 LSTM, plain SGD 10.0 decayed by 0.1 every 5,000 steps, clip
# 1.25, 7,001 steps (preset text8-sgd)
"$here/run.sh" text8-sgd --preset text8-sgd "$@"
