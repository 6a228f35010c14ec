"""cuDNN, as ``jax.experimental.rnn`` holds its LSTM weights: one flat vector, per layer and
direction torch's layout (gate rows i, f, g, o). :func:`lstm_to_cudnn` is the one copy of that
layout; the "cudnn" engine hands cuDNN what it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax.cells import LSTM
from lstmjax.convert.layout import Layer, Params, as_array, no_extras
from lstmjax.convert.registry import converter
from lstmjax.convert.torch import lstm_to_torch_layer


def lstm_from_cudnn(weights: Any, *, input_size: int, hidden_size: int, num_layers: int = 1,
                    bidirectional: bool = False, reverse: bool = False
                    ) -> list[tuple[LSTM, Params]]:
    """``[(LSTM(H, forget_bias=0.0), params)]`` per layer of ``jax.experimental.rnn``'s weights.

    Args:
      weights: ``float32[N]``, the flat vector ``jax.experimental.rnn.lstm`` takes (its module
        docstring gives the layout; ``unpack_lstm_weights`` reads it): per layer and direction
        ``W_ih [4H, I]`` (layers after the first: ``I = H``, or ``2H`` if bidirectional) and
        ``W_hh [4H, H]``, then per layer and direction ``b_ih [4H]`` and ``b_hh [4H]``; gate rows
        i, f, g, o.
      input_size, hidden_size, num_layers, bidirectional: as given to ``rnn.lstm``.
      reverse: with ``bidirectional``, the reverse direction's layers (run them with
        ``reverse=True``; layer k > 0 reads both directions' outputs, forward first).
    """
    from jax.experimental import rnn

    weights = as_array(weights)
    size = rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)
    if weights.shape != (size,):
        raise ValueError(
            f"weights must be shaped [{size}] for input_size={input_size}, hidden_size="
            f"{hidden_size}, num_layers={num_layers}, bidirectional={bidirectional}, got "
            f"{list(weights.shape)}")
    if reverse and not bidirectional:
        raise ValueError("reverse=True reads the reverse direction of bidirectional weights; "
                         "pass bidirectional=True")
    unpacked = rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers,
                                       bidirectional)
    directions = 2 if bidirectional else 1
    importer = converter(LSTM, "cudnn").import_
    return [importer(dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                              (part[k] for part in unpacked), strict=True)))
            for k in range(int(reverse), num_layers * directions, directions)]


def lstm_to_cudnn(layers: Sequence[Layer], *, reverse_layers: Sequence[Layer] | None = None
                  ) -> jax.Array:
    """``jax.experimental.rnn``'s flat ``float32`` weights of a stack of ``[(LSTM, params)]``
    (with ``reverse_layers``, of a bidirectional stack); :func:`lstm_from_cudnn` reads them back
    exactly. ``b_ih`` is the LSTM's bias with its ``forget_bias`` added to the forget rows,
    ``b_hh`` zeros. LSTMs with peepholes, a projection or clipping are errors (not in cuDNN's
    LSTM), and so is every other cell. Differentiable: it is the layout the "cudnn" engine
    hands cuDNN."""
    if reverse_layers is None:
        pseudo_layers = list(layers)
    else:
        pseudo_layers = [layer for pair in zip(layers, reverse_layers, strict=True)
                         for layer in pair]
    torch_layers = [
        converter(cell, "cudnn", way="export").export(
            cell, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
        for cell, params in pseudo_layers]
    return jnp.concatenate(
        [layer[name].reshape(-1) for layer in torch_layers for name in ("weight_ih", "weight_hh")]
        + [layer[name] for layer in torch_layers for name in ("bias_ih", "bias_hh")])


def lstm_to_cudnn_layer(cell: LSTM, params: Params) -> dict[str, jax.Array]:
    """torch's layout (cuDNN's, per layer), for an LSTM that cuDNN's LSTM computes."""
    no_extras(cell, params, "cuDNN")
    return lstm_to_torch_layer(cell, params)
