#!/usr/bin/env bash
# Anna Karenina characters, Udacity "intro-to-rnns": 2 x 512 LSTM, batch 100, 100 steps, dropout
# 0.5, Adam 1e-3 after clipping to 5, 20 epochs. Tutorial: training loss about 1.71 after 5.
#
#   LSTMJAX_DATA_DIR=DIR experiments/anna_char.sh    # DIR holds anna.txt
set -euo pipefail
"$(dirname "$0")/run.sh" anna-char --preset anna-char "$@"
