"""lstmjax: recurrent networks in JAX: cells, engines that run a layer over time, a language model.

Shape legend, used in every docstring:
  B batch size, T time steps per window, I input features, E embedding size, H hidden units,
  P projected output units (LSTM ``proj_size``; P = H without projection), L layers,
  V vocabulary size.

Layers of the library:
  cells    LSTM, GRU, SimpleRNN, LayerNormLSTM (registry ``CELLS``): parameter layout, the split
           into input and recurrent weights, the gate math as one pure function each.
  engines  ``run_layer`` (a layer, by the registry ``ENGINES``: "scan", "static", "fused",
           "native", "cudnn", and the "auto" choice) and ``run`` (any step function, "scan" or
           "static").
  regularizers
           ``RecurrentDropout``, ``Zoneout``, ``WeightDrop``: cells that wrap cells, their masks
           drawn from an explicit key (``run_layer(..., key=)``), so every engine runs them.
  layers   ``run_stack``, ``run_bidirectional``, ``step_layer``, ``step_stack``, ``last_valid``:
           layers composed of ``run_layer``, on every engine.
  nnx, linen, equinox
           ``RNN``, ``Bidirectional`` and ``Stack`` modules for Flax NNX, Flax Linen and Equinox
           (``lstmjax.nnx.RNN(...)``; each imported on first use).
  model    RNNLanguageModel: embedding or one-hot input, L cells with dropout between, dense head.
  convert  weights from and to TensorFlow 1, PyTorch, flax (Linen, NNX), Equinox and cuDNN, as
           (cell, params) per layer; one registry, ``convert.CONVERTERS``.
  data     the corpus registry (``data.CORPORA``), DataConfig, vocabularies, truncated-BPTT
           windows.
  steps    TrainState, the jitted train and eval steps, evaluate.
  build    build_trainer(config, steps_per_epoch, ...) -> Trainer (model, optimizer, train step,
           fresh or restored state: training and the benchmarks) and load_params(config, ...)
           -> TrainedModel (a checkpoint's parameters alone: eval, sample, export).
  rundir   the run directory: its files, the checkpoint payload, the resume rules.
  parallel the device mesh of data parallelism (Placement) and the launch of several processes.
  train    the train(config, workdir) loop and its pieces; trained: eval and sample of a run
           directory; metrics: perplexity, bits, the metric log; results: summaries and curves
           of run directories; sample (generation), presets, cli and commands.
  checkpoint
           orbax's save, restore and fall-back; integrity: what a step must hold to be restored;
           save_errors: a refused save as one error; orbax_compat: orbax 0.12 workarounds.

Importing lstmjax does no work beyond importing jax and flax: no device queries, no file reads.
The training names (``evaluate``, ``generate``, ``load_corpus``, ``Checkpoints``, ...) are
imported on first use, so orbax and the data code load only when needed; the loop itself is
``lstmjax.train.train(config, workdir)``.
"""

import importlib

from lstmjax.cells import (
    CELLS,
    GRU,
    LSTM,
    LayerCell,
    LayerNormLSTM,
    LayerWeights,
    LSTMState,
    RecurrentCell,
    SimpleRNN,
    gru_update,
    layer_norm_lstm_update,
    lstm_update,
    simple_rnn_update,
)
from lstmjax.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from lstmjax.engines import ENGINE_NAMES, ENGINES, resolve, reverse_resets, run, run_layer
from lstmjax.layers import (
    last_valid,
    run_bidirectional,
    run_stack,
    step_layer,
    step_stack,
)
from lstmjax.model import RNNLanguageModel, make_cells, zero_carry
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout

_LAZY = {
    "CheckpointSaveError": "lstmjax.checkpoint",
    "Checkpoints": "lstmjax.checkpoint",
    "Corpus": "lstmjax.data",
    "DamagedCheckpointError": "lstmjax.checkpoint",
    "PRESETS": "lstmjax.presets",
    "TrainState": "lstmjax.steps",
    "Vocab": "lstmjax.data",
    "evaluate": "lstmjax.steps",
    "generate": "lstmjax.sample",
    "lm_from_tf": "lstmjax.interop",
    "lm_from_torch": "lstmjax.interop",
    "lm_to_tf": "lstmjax.interop",
    "lm_to_torch": "lstmjax.interop",
    "load_corpus": "lstmjax.data",
    "load_run": "lstmjax.trained",
    "make_optimizer": "lstmjax.optim",
    "make_train_step": "lstmjax.steps",
}


_ADAPTERS = ("equinox", "linen", "nnx")  # modules for each framework; equinox is optional


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _ADAPTERS:
        return importlib.import_module(f"lstmjax.{name}")
    raise AttributeError(f"module 'lstmjax' has no attribute {name!r}")


__all__ = [
    *_LAZY,
    "Config",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "CELLS",
    "ENGINES",
    "ENGINE_NAMES",
    "GRU",
    "LSTM",
    "LSTMState",
    "LayerCell",
    "LayerNormLSTM",
    "LayerWeights",
    "ModelConfig",
    "RNNLanguageModel",
    "RecurrentCell",
    "RecurrentDropout",
    "SimpleRNN",
    "WeightDrop",
    "Zoneout",
    "gru_update",
    "layer_norm_lstm_update",
    "lstm_update",
    "last_valid",
    "make_cells",
    "resolve",
    "reverse_resets",
    "run",
    "run_bidirectional",
    "run_layer",
    "run_stack",
    "simple_rnn_update",
    "step_layer",
    "step_stack",
    "zero_carry",
]
