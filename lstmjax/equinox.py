"""Equinox modules over any lstmjax cell and engine: :class:`RNN`, :class:`Bidirectional`,
:class:`Stack` (Equinox is an optional dependency; only this module imports it).

``lstmjax.equinox.RNN(lstmjax.LSTM(64), in_features, key=key)``: the cell's parameters are the
field ``rnn.params`` (a dict in the cell's layout, :mod:`lstmjax.cells`); the cell, engine and
layout are static fields, so ``eqx.filter_jit`` and ``eqx.filter_grad`` see the parameters as
the module's arrays. The call is flax ``nn.RNN``'s (see :class:`lstmjax.linen.RNN`), batched
(no ``jax.vmap`` needed, unlike Equinox's own cells), and runs :func:`lstmjax.run_layer`,
:func:`lstmjax.run_bidirectional` or :func:`lstmjax.run_stack`.

Regularizer cells (:mod:`lstmjax.regularizers`) switch as ``eqx.nn.Dropout`` does: in training
(an RNN's ``inference`` field False, the default) the call takes ``key=``, the cell's
randomness, and without one is an error; ``inference=True`` in the call, or the field set by
``eqx.nn.inference_mode(model)``, runs the cell without a key (evaluation). A plain cell needs
neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax

from lstmjax import adapters
from lstmjax.layers import concatenate, run_bidirectional, run_stack
from lstmjax.regularizers import draws_noise

Array = jax.Array


def _noise_key(owner: str, rnns: Sequence[RNN], key: Array | None, inference: bool | None
               ) -> Array | None:
    """``key`` for the cells of ``rnns`` (an RNN, or a Bidirectional's two) in training; None in
    inference (the call's ``inference``, else the RNNs' field, which must agree) or for plain
    cells; a ValueError for a regularizer cell in training without a key."""
    if not any(draws_noise(rnn.cell) for rnn in rnns):
        return None
    if (adapters.shared_option(owner, rnns, "inference") if inference is None else inference):
        return None
    if key is None:
        raise ValueError(f"{owner} over a regularizer cell draws its masks from key= in "
                         "training; pass key=..., or inference=True (or "
                         "eqx.nn.inference_mode(model)) to evaluate")
    return key


class RNN(eqx.Module):
    """One recurrent layer of ``cell`` over the time axis, flax ``nn.RNN``'s call with lstmjax cells.

    Differences with ``flax.linen.RNN`` (whose call this follows): those listed on
    :class:`lstmjax.linen.RNN`. Unlike Equinox's own cells, the call is batched (no ``jax.vmap``)
    and runs the whole sequence; a plain-tuple carry is in lstmjax's field order, an LSTM's
    ``(c, h)`` (Equinox's ``LSTMCell`` takes ``(h, c)``).

    A regularizer cell (:mod:`lstmjax.regularizers`) takes ``key=`` in training; ``inference``
    (the call's, else the field that ``eqx.nn.inference_mode`` sets) runs it without one.

    Args:
      cell: an lstmjax cell.
      in_features: I, the inputs' features.
      key: the key of ``cell.init``.
      engine: a key of :data:`lstmjax.ENGINES` or ``"auto"``.
      time_major: inputs ``[T, B, I]`` instead of ``[B, T, I]`` (and so outputs, resets).
      inference: run a regularizer cell in evaluation form (no key); as ``eqx.nn.Dropout``'s.
    """

    params: dict[str, Array]
    cell: Any = eqx.field(static=True)
    in_features: int = eqx.field(static=True)
    engine: str = eqx.field(static=True)
    time_major: bool = eqx.field(static=True)
    inference: bool

    def __init__(self, cell: Any, in_features: int, *, key: Array, engine: str = "auto",
                 time_major: bool = False, inference: bool = False):
        self.cell = adapters.checked_layer(cell, in_features, engine)
        self.in_features, self.engine, self.time_major = in_features, engine, time_major
        self.inference = inference
        self.params = cell.init(key, in_features)

    def cell_params(self) -> dict[str, Array]:
        return self.params

    def noise_key(self, key: Array | None, inference: bool | None) -> Array | None:
        """The cell's key for one call: ``key`` in training, None in inference or for a plain
        cell."""
        return _noise_key("RNN", (self,), key, inference)

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, reverse: bool = False, keep_order: bool = False,
                 return_carry: bool = False, key: Array | None = None,
                 inference: bool | None = None) -> Any:
        """Run the layer over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Arguments and returns as :meth:`lstmjax.linen.RNN.__call__`: ``ys: [B, T, P]``, or
        ``(final_carry, ys)`` with ``return_carry``. ``key``: a regularizer cell's randomness,
        required in training; ``inference``: True runs the cell without (None: the field).
        """
        adapters.checked_features("RNN", self.in_features, xs)
        return adapters.run_rnn(self.cell, self.params, initial_carry, xs, engine=self.engine,
                                time_major=self.time_major, seq_lengths=seq_lengths, resets=resets,
                                reverse=reverse, keep_order=keep_order, return_carry=return_carry,
                                key=self.noise_key(key, inference))


class Bidirectional(adapters.Directions, eqx.Module):
    """Two :class:`RNN` over the same inputs, forward and backward, outputs merged step by step.

    flax ``nn.Bidirectional``'s semantics through :func:`lstmjax.run_bidirectional`, with the
    differences listed on :class:`lstmjax.linen.Bidirectional`; the engine, ``time_major`` and
    ``in_features`` are the two RNNs', which must agree.

    Regularizer cells: in training ``key=`` is split between the directions
    (:func:`lstmjax.run_bidirectional`); ``inference`` as :class:`RNN`'s, the two RNNs' fields
    agreeing.

    Args:
      forward, backward: :class:`RNN` modules.
      merge: ``merge(ys_forward, ys_backward) -> ys``; the default concatenates the features.
    """

    forward: RNN
    backward: RNN
    merge: adapters.Merge = eqx.field(static=True)

    def __init__(self, forward: RNN, backward: RNN, merge: adapters.Merge = concatenate):
        adapters.check_directions(forward, backward, RNN)
        self.forward, self.backward, self.merge = forward, backward, merge

    def noise_key(self, key: Array | None, inference: bool | None) -> Array | None:
        """The cells' key for one call: ``key`` in training, None in inference or for plain
        cells."""
        return _noise_key("Bidirectional", (self.forward, self.backward), key, inference)

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, return_carry: bool = False,
                 key: Array | None = None, inference: bool | None = None) -> Any:
        """Arguments and returns as :meth:`lstmjax.linen.Bidirectional.__call__`; ``key`` and
        ``inference`` as :meth:`RNN.__call__`."""
        adapters.checked_features("Bidirectional", self.in_features, xs)
        carry, ys = run_bidirectional(self.cell, self.cell_params(), initial_carry, xs,
                                      engine=self.engine, lengths=seq_lengths, resets=resets,
                                      merge=self.merge, time_major=self.time_major,
                                      key=self.noise_key(key, inference))
        return (carry, ys) if return_carry else ys


class Stack(eqx.Module):
    """Layers (:class:`RNN` and :class:`Bidirectional`) one after the other, with dropout between.

    torch ``nn.LSTM(num_layers=L, dropout=p)``'s dropout: on each layer's outputs but the last's,
    by ``eqx.nn.Dropout`` (a ``key`` per call; ``inference=True`` or ``eqx.nn.inference_mode``
    turns it off, and the layers' regularizer cells with it). Through :func:`lstmjax.run_stack`:
    every layer must use one engine and one ``time_major``, the Bidirectional layers one merge,
    and each layer's ``in_features`` must be the previous layer's output features.

    Args:
      layers: :class:`RNN` and :class:`Bidirectional` modules.
      dropout: drop probability between layers.
    """

    layers: tuple[RNN | Bidirectional, ...]
    dropout: eqx.nn.Dropout

    def __init__(self, layers: Sequence[RNN | Bidirectional], dropout: float = 0.0):
        adapters.check_layers(layers, RNN, Bidirectional)
        self.layers = tuple(layers)
        self.dropout = eqx.nn.Dropout(adapters.checked_rate(dropout))

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, return_carry: bool = False,
                 key: Array | None = None, inference: bool | None = None) -> Any:
        """Run the layers over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Args:
          initial_carry: one carry per layer (a pair for a Bidirectional layer), or None (zeros).
          seq_lengths, resets: as for :meth:`RNN.__call__`, for every layer.
          return_carry: also return the tuple of final carries, one per layer.
          key: the dropout key (one mask per layer boundary is drawn from it), and with a
            regularizer cell its randomness too (then split in two: the dropout's, and one key
            per layer); required in training when dropout is on or a cell is a regularizer.
          inference: no dropout and regularizer cells in evaluation form if True; None takes
            the Dropout's and each layer's own ``inference`` field.

        Returns:
          The last layer's ``ys``, or ``(final_carries, ys)``.
        """
        adapters.checked_features("Stack", self.layers[0].in_features, xs)
        cell_keys = [None] * len(self.layers)
        if key is not None and any(draws_noise(layer.cell) for layer in self.layers):
            key, cells_key = jax.random.split(key)
            cell_keys = jax.random.split(cells_key, len(self.layers))
        cell_keys = [layer.noise_key(k, inference) for layer, k in zip(self.layers, cell_keys)]
        between = None
        if self.dropout.p > 0:
            keys = [None] * len(self.layers) if key is None else jax.random.split(key,
                                                                                 len(self.layers))

            def between(layer: int, ys: Array) -> Array:
                return self.dropout(ys, key=keys[layer], inference=inference)

        carries, ys = run_stack([layer.cell for layer in self.layers],
                                [layer.cell_params() for layer in self.layers], initial_carry,
                                xs, lengths=seq_lengths, resets=resets, between=between,
                                keys=cell_keys, **adapters.stack_options(self.layers))
        return (carries, ys) if return_carry else ys


__all__ = ["RNN", "Bidirectional", "Stack"]
