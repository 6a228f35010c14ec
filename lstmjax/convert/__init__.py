"""Weight import and export: cells trained with TensorFlow 1, PyTorch, flax, Equinox or cuDNN.

Every importer takes the source's arrays (NumPy, JAX, torch tensors, a flax parameter dict or NNX
state, an Equinox module) and returns ``(cell, params)`` per layer: the lstmjax cell whose options
match the weights (hidden size, projection, peepholes, reset form, ``forget_bias``) and its
parameters, so ``lstmjax.run_layer(cell, params, carry, xs)`` gives the source's outputs. The
functions are jnp code, so they also run under ``jax.grad``: gradients can be taken in the source
layout.

===============================  ====================================  ==============================
function                         source layout                         returns
===============================  ====================================  ==============================
``lstm_from_tf``                 TF1 ``BasicLSTMCell`` / ``LSTMCell``   ``(LSTM(H, forget_bias=<given>,
                                 ``kernel [I+P, 4H]`` (i, j, f, o),     use_peepholes, proj_size),
                                 ``bias [4H]``, ``w_{i,f,o}_diag [H]``,  params)``
                                 ``projection/kernel [H, P]``
``gru_from_tf``                  TF1 ``GRUCell`` ``gates/kernel``       ``(GRU(H), params)``
                                 ``[I+H, 2H]`` (r, u), ``gates/bias``,  (``reset_after=False``)
                                 ``candidate/kernel [I+H, H]``,
                                 ``candidate/bias``
``simple_rnn_from_tf``           TF1 ``BasicRNNCell`` ``kernel``,       ``(SimpleRNN(H), params)``
                                 ``bias``
``layer_norm_lstm_from_tf``      r2rt's layer-normalized LSTM:          ``(LayerNormLSTM(H,
                                 ``kernel [I+H, 4H]`` (i, j, f, o),     forget_bias=<given>,
                                 ``{i,j,f,o,new_h}/layer_norm/          layer_norm_cell), params)``
                                 {scale,shift} [H]``
``layers_from_tf``               a dict ``{variable name: array}`` of   ``[(cell, params)]`` per layer,
                                 a TF1 cell or ``MultiRNNCell`` stack   the cell read off the scope
                                 (``.../cell_0/basic_lstm_cell/         and the weights; ``scope=``
                                 kernel``)                              picks a stack
``bidirectional_from_tf``        ``bidirectional_rnn/fw/...`` and       ``(fw layers, bw layers)``;
                                 ``.../bw/...``                         run bw with ``reverse=True``
``lstm_from_tf_tutorial``        the TF text8 tutorial's 8 matrices     ``(LSTM(H, forget_bias=0.0),
                                 and 4 biases (``input_gate_i [I,H]``,  params)``
                                 ``input_gate_o [H,H]``,
                                 ``input_gate_b [1,H]``, ...)
``lstm_from_torch``              ``torch.nn.LSTM`` state dict           ``[(LSTM(H, forget_bias=0.0,
                                 (``weight_ih_l{k} [4H, I]`` i, f, g,   proj_size), params)]``
                                 o; ``weight_hh_l{k}``, ``bias_ih_l{k}``,
                                 ``bias_hh_l{k}``, ``weight_hr_l{k}``)
``gru_from_torch``               ``torch.nn.GRU`` state dict (r, z, n)  ``[(GRU(H, reset_after=True),
                                                                       params)]``
``simple_rnn_from_torch``        ``torch.nn.RNN`` state dict (tanh)     ``[(SimpleRNN(H), params)]``
``layers_from_torch``            any of the three, the module type      ``[(cell, params)]``
                                 read off the shapes
``lstm_from_cudnn``              ``jax.experimental.rnn``'s flat        ``[(LSTM(H, forget_bias=0.0),
                                 vector (per layer and direction        params)]`` of one direction
                                 ``W_ih, W_hh`` then all ``b_ih,
                                 b_hh``; gates i, f, g, o)
``lstm_from_flax``               flax ``nn.LSTMCell`` /                 ``(LSTM(H, forget_bias=0.0),
                                 ``nn.OptimizedLSTMCell`` params        params)``
                                 (``ii, if, ig, io`` kernels ``[I, H]``,
                                 ``hi, ...`` kernels and biases), NNX
                                 ``nnx.LSTMCell`` (``if_``),
                                 ``nnx.OptimizedLSTMCell``
                                 (``dense_i [I, 4H]``, ``dense_h``)
``gru_from_flax``                flax ``nn.GRUCell`` (``ir, iz, in``    ``(GRU(H, reset_after=True),
                                 with biases, ``hr, hz``, ``hn`` with   params)``
                                 bias) or ``nnx.GRUCell`` (``dense_i
                                 [I, 3H]`` with bias, ``dense_h``)
``lstm_from_equinox``            ``eqx.nn.LSTMCell`` (``weight_ih``     ``(LSTM(H, forget_bias=0.0),
                                 ``[4H, I]`` i, f, g, o, ``weight_hh``,  params)``
                                 ``bias``)
``gru_from_equinox``             ``eqx.nn.GRUCell`` (r, z, n; ``bias``,  ``(GRU(H, reset_after=True),
                                 ``bias_n``)                            params)``
===============================  ====================================  ==============================

TensorFlow's LSTM ``forget_bias`` is added inside the forget sigmoid and is not stored in the
weights: the TF importers take it (``forget_bias=``, the value the TF cell was built with; TF's
default is 1.0), and an LSTM without it is an error. The other sources have no such constant, so
their cells come with ``forget_bias=0.0``. PyTorch's and cuDNN's two biases are summed where
lstmjax keeps one, except the GRU's recurrent candidate bias, which the reset gate multiplies.

Export goes the other way: :func:`layers_to_tf` writes a ``MultiRNNCell`` stack's TF1 variables,
:func:`layers_to_torch` a torch state dict, :func:`lstm_to_cudnn` cuDNN's flat vector, and
:func:`lstm_to_flax` / :func:`gru_to_flax` a flax Linen cell's parameters (which
``nn.OptimizedLSTMCell`` shares); reading any of them back gives the same cell and parameters bit
for bit. An LSTM's ``forget_bias`` is folded into the exported forget bias where the target has no
such constant. Whole language models (embedding, stack, softmax) and files are in
:mod:`lstmjax.interop`.

:data:`CONVERTERS` is the one table of what converts to what: ``(cell class, format) ->
Converter(import_, export)``, one layer each way. A cell class that it does not list (a user's
cell, a subclass) is an error naming the cell and the format, never another cell's layout.

One module per format (:mod:`~lstmjax.convert.tf`, :mod:`~lstmjax.convert.torch`,
:mod:`~lstmjax.convert.cudnn`, :mod:`~lstmjax.convert.flax`, :mod:`~lstmjax.convert.equinox`)
over :mod:`~lstmjax.convert.layout`, what they share; :mod:`~lstmjax.convert.registry` holds
:class:`Converter` and the lookup, and the entries are listed below, once. Importing this package
imports none of the optional frameworks (torch, tensorflow, equinox, ``flax.nnx``).
"""

from lstmjax.cells import GRU, LSTM, LayerNormLSTM, SimpleRNN
from lstmjax.convert import cudnn, tf, torch
from lstmjax.convert.cudnn import lstm_from_cudnn, lstm_to_cudnn
from lstmjax.convert.equinox import gru_from_equinox, lstm_from_equinox
from lstmjax.convert.flax import gru_from_flax, gru_to_flax, lstm_from_flax, lstm_to_flax
from lstmjax.convert.layout import Layer, Params, as_array
from lstmjax.convert.registry import CONVERTERS, Converter, converter, supported
from lstmjax.convert.tf import (
    TUTORIAL_CREATION_ORDER,
    TFCell,
    bidirectional_from_tf,
    gru_from_tf,
    layer_norm_lstm_from_tf,
    layers_from_tf,
    layers_to_tf,
    lstm_from_tf,
    lstm_from_tf_tutorial,
    simple_rnn_from_tf,
)
from lstmjax.convert.torch import (
    gru_from_torch,
    is_torch_rnn_key,
    layers_from_torch,
    layers_to_torch,
    lstm_from_torch,
    simple_rnn_from_torch,
)

CONVERTERS.update({
    (LSTM, "tf"): Converter(tf.lstm_from_tf_cell, tf.lstm_to_tf_cell),
    (GRU, "tf"): Converter(tf.gru_from_tf_cell, tf.gru_to_tf_cell),
    (SimpleRNN, "tf"): Converter(tf.simple_rnn_from_tf_cell, tf.simple_rnn_to_tf_cell),
    (LayerNormLSTM, "tf"): Converter(tf.layer_norm_lstm_from_tf_cell,
                                     tf.layer_norm_lstm_to_tf_cell),
    (LSTM, "torch"): Converter(torch.lstm_from_torch_layer, torch.lstm_to_torch_layer),
    (GRU, "torch"): Converter(torch.gru_from_torch_layer, torch.gru_to_torch_layer),
    (SimpleRNN, "torch"): Converter(torch.simple_rnn_from_torch_layer,
                                    torch.simple_rnn_to_torch_layer),
    (LSTM, "cudnn"): Converter(torch.lstm_from_torch_layer, cudnn.lstm_to_cudnn_layer),
    (LSTM, "flax"): Converter(lstm_from_flax, lstm_to_flax),
    (GRU, "flax"): Converter(gru_from_flax, gru_to_flax),
    (LSTM, "equinox"): Converter(lstm_from_equinox, None),
    (GRU, "equinox"): Converter(gru_from_equinox, None),
})

__all__ = [
    "CONVERTERS",
    "TUTORIAL_CREATION_ORDER",
    "Converter",
    "Layer",
    "Params",
    "TFCell",
    "as_array",
    "bidirectional_from_tf",
    "converter",
    "gru_from_equinox",
    "gru_from_flax",
    "gru_from_tf",
    "gru_from_torch",
    "gru_to_flax",
    "is_torch_rnn_key",
    "layer_norm_lstm_from_tf",
    "layers_from_tf",
    "layers_from_torch",
    "layers_to_tf",
    "layers_to_torch",
    "lstm_from_cudnn",
    "lstm_from_equinox",
    "lstm_from_flax",
    "lstm_from_tf",
    "lstm_from_tf_tutorial",
    "lstm_from_torch",
    "lstm_to_cudnn",
    "lstm_to_flax",
    "simple_rnn_from_tf",
    "simple_rnn_from_torch",
    "supported",
]
