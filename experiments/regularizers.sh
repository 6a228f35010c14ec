#!/usr/bin/env bash
# The regularizers on a 2-core CPU, each against its committed plain run (experiments/RESULTS.md):
#
# * shakespeare-lstm-zoneout: the tiny-shakespeare 3 x 256 LSTM (shakespeare-lstm) with zoneout,
#   Krueger et al. 2016's character-level rates (0.5 on c, 0.05 on h);
# * ptb-small-regularized: PTB small (2 x 200, 13 epochs, SGD; ptb-small-sgd) with variational
#   dropout 0.25 on the input and every layer's output, embedding dropout 0.1 and weight drop
#   0.25 on the recurrent kernels (AWD-LSTM's three, at rates scaled down for the 200-unit model).
#
#   LSTMJAX_DATA_DIR=DIR experiments/regularizers.sh [zoneout|ptb]    # both by default
# Each run resumes from its latest checkpoint when called again.
set -euo pipefail
here=$(dirname "$0")
which=${1:-all}
if [[ $which == all || $which == zoneout ]]; then
  "$here/run.sh" shakespeare-lstm-zoneout --preset shakespeare-lstm \
    --model.zoneout-cell 0.5 --model.zoneout-hidden 0.05
fi
if [[ $which == all || $which == ptb ]]; then
  "$here/run.sh" ptb-small-regularized --preset ptb-small \
    --model.dropout 0.25 --model.variational --model.embed-dropout 0.1 --model.weight-drop 0.25
fi
