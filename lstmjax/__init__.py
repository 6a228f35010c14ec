"""lstmjax: recurrent networks in JAX, with one loop over time and two engines to run it.

Shape legend, used in every docstring:
  B batch size, T time steps per window, I input features, E embedding size, H hidden units,
  P projected output units (LSTM ``proj_size``; P = H without projection), L layers,
  V vocabulary size.

Layers of the library:
  cells    LSTM, GRU, SimpleRNN, LayerNormLSTM: parameter layout + pure ``step``.
  engines  ``run``: the only loop over time ("scan" = lax.scan, "static" = Python unrolling).
  model    RNNLanguageModel: embedding or one-hot input, L cells with dropout between, dense head.
  convert  weights from TensorFlow 1 cells, the TF text8 tutorial and torch.nn.LSTM/GRU/RNN.

Importing lstmjax does no work beyond importing jax and flax: no device queries, no file reads.
"""

from lstmjax.cells import (
    GRU,
    LSTM,
    LayerNormLSTM,
    LSTMState,
    SimpleRNN,
    gru_step,
    layer_norm_lstm_step,
    lstm_step,
    simple_rnn_step,
)
from lstmjax.config import ModelConfig
from lstmjax.engines import ENGINES, bidirectional, run
from lstmjax.model import RNNLanguageModel, make_cells, zero_carry

__all__ = [
    "ENGINES",
    "GRU",
    "LSTM",
    "LSTMState",
    "LayerNormLSTM",
    "ModelConfig",
    "RNNLanguageModel",
    "SimpleRNN",
    "bidirectional",
    "gru_step",
    "layer_norm_lstm_step",
    "lstm_step",
    "make_cells",
    "run",
    "simple_rnn_step",
    "zero_carry",
]
