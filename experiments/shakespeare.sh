#!/usr/bin/env bash
# tiny-shakespeare characters: 3-layer LSTM, GRU and layer-normalized LSTM (256 units, dropout
# 0.2 between layers), batch 32, 80 steps, Adam 2e-3 after clipping to 5, 5,000 steps each: the
# same budget for each cell type (r2rt, "Recurrent Neural Networks in Tensorflow II").
#
#   LSTMJAX_DATA_DIR=DIR experiments/shakespeare.sh    # DIR holds tinyshakespeare.txt
set -euo pipefail
here=$(dirname "$0")
for cell in lstm gru ln-lstm; do
  "$here/run.sh" "shakespeare-$cell" --preset "shakespeare-$cell" "$@"
done
