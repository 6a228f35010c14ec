"""Flax NNX modules over any lstmjax cell and engine: :class:`RNN`, :class:`Bidirectional`,
:class:`Stack`.

``lstmjax.nnx.RNN(lstmjax.LSTM(64), in_features, rngs=rngs)``: the cell's parameters are
``nnx.Param`` leaves in ``rnn.params`` (a dict in the cell's layout, :mod:`lstmjax.cells`), so
``nnx.state``, ``nnx.split``/``merge``, ``nnx.jit`` and ``nnx.Optimizer`` see them; the call is
flax ``nn.RNN``'s (see :class:`lstmjax.linen.RNN`) and runs :func:`lstmjax.run_layer`,
:func:`lstmjax.run_bidirectional` or :func:`lstmjax.run_stack`.

Regularizer cells (:mod:`lstmjax.regularizers`) switch as ``nnx.Dropout`` does: an RNN over one
keeps a ``"dropout"`` stream and a ``deterministic`` attribute (False: training), which
``model.train()``, ``model.eval()`` and ``nnx.view(model, deterministic=...)`` set; in training
each call draws the cell's key from the stream, in evaluation the cell runs without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from lstmjax import adapters
from lstmjax.layers import concatenate, run_bidirectional, run_stack
from lstmjax.regularizers import draws_noise

Array = jax.Array


class RNN(nnx.Module):
    """One recurrent layer of ``cell`` over the time axis, flax ``nn.RNN``'s call with lstmjax cells.

    Parameters: ``self.params = {name: nnx.Param}`` from ``cell.init(rngs.params(),
    in_features)``.

    A regularizer cell (:mod:`lstmjax.regularizers`) draws its masks in training: the layer keeps
    ``self.rngs = rngs["dropout"].fork()`` (the ``default`` stream if there is no ``dropout``
    one, as ``nnx.Dropout``) and draws a key from it at each call while ``self.deterministic``
    is False (the default; ``model.train()``/``model.eval()`` switch it). A plain cell draws
    nothing.

    Differences with ``flax.linen.RNN`` and ``flax.nnx.RNN`` (whose call this follows): those
    listed on :class:`lstmjax.linen.RNN`.

    Args:
      cell: an lstmjax cell.
      in_features: I, the inputs' features.
      rngs: ``nnx.Rngs`` with a ``params`` stream, and a ``dropout`` one for a regularizer cell.
      engine: a key of :data:`lstmjax.ENGINES` or ``"auto"``.
      time_major: inputs ``[T, B, I]`` instead of ``[B, T, I]`` (and so outputs, resets).
    """

    def __init__(self, cell: Any, in_features: int, *, rngs: nnx.Rngs, engine: str = "auto",
                 time_major: bool = False):
        self.cell = adapters.checked_layer(cell, in_features, engine)
        self.in_features, self.engine, self.time_major = in_features, engine, time_major
        self.params = nnx.data({name: nnx.Param(value) for name, value
                                in cell.init(rngs.params(), in_features).items()})
        self.deterministic = False
        self.rngs = nnx.data(None)
        if draws_noise(cell):
            try:
                self.rngs = rngs["dropout"].fork()
            except KeyError:
                raise ValueError(f"RNN({cell!r}) draws its masks from a 'dropout' stream: pass "
                                 "rngs=nnx.Rngs(params=..., dropout=...)") from None

    def set_view(self, deterministic: bool | None = None) -> None:
        """For ``nnx.view``: ``deterministic=True`` runs a regularizer cell in evaluation form."""
        if deterministic is not None:
            self.deterministic = deterministic

    def noise_key(self) -> Array | None:
        """The cell's key for one call: drawn from ``self.rngs`` in training, None in evaluation
        or for a plain cell."""
        return None if self.rngs is None or self.deterministic else self.rngs()

    def cell_params(self) -> dict[str, Array]:
        """The cell's parameters as arrays."""
        return {name: param[...] for name, param in self.params.items()}

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, reverse: bool = False, keep_order: bool = False,
                 return_carry: bool = False) -> Any:
        """Run the layer over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Arguments and returns as :meth:`lstmjax.linen.RNN.__call__`: ``ys: [B, T, P]``, or
        ``(final_carry, ys)`` with ``return_carry``.
        """
        adapters.checked_features("RNN", self.in_features, xs)
        return adapters.run_rnn(self.cell, self.cell_params(), initial_carry, xs,
                                engine=self.engine, time_major=self.time_major,
                                seq_lengths=seq_lengths, resets=resets, reverse=reverse,
                                keep_order=keep_order, return_carry=return_carry,
                                key=self.noise_key())


class Bidirectional(adapters.Directions, nnx.Module):
    """Two :class:`RNN` over the same inputs, forward and backward, outputs merged step by step.

    flax ``nn.Bidirectional``'s semantics through :func:`lstmjax.run_bidirectional`, with the
    differences listed on :class:`lstmjax.linen.Bidirectional`; the engine, ``time_major`` and
    ``in_features`` are the two RNNs', which must agree.

    Regularizer cells: in training one key per call, drawn from the stream of the first
    direction over a regularizer cell (forward, else backward) and split between the two by
    :func:`lstmjax.run_bidirectional`; the directions' ``deterministic`` (``model.train()``,
    ``model.eval()``) must agree.

    Args:
      forward, backward: :class:`RNN` modules.
      merge: ``merge(ys_forward, ys_backward) -> ys``; the default concatenates the features.
    """

    def __init__(self, forward: RNN, backward: RNN, merge: adapters.Merge = concatenate):
        adapters.check_directions(forward, backward, RNN)
        self.forward, self.backward, self.merge = forward, backward, merge

    def noise_key(self) -> Array | None:
        """The cells' key for one call (see the class): None in evaluation or for plain cells."""
        noisy = [layer for layer in (self.forward, self.backward) if draws_noise(layer.cell)]
        if not noisy or adapters.shared_option("Bidirectional", noisy, "deterministic"):
            return None
        return noisy[0].noise_key()

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, return_carry: bool = False) -> Any:
        """Arguments and returns as :meth:`lstmjax.linen.Bidirectional.__call__`."""
        adapters.checked_features("Bidirectional", self.in_features, xs)
        carry, ys = run_bidirectional(self.cell, self.cell_params(), initial_carry, xs,
                                      engine=self.engine, lengths=seq_lengths, resets=resets,
                                      merge=self.merge, time_major=self.time_major,
                                      key=self.noise_key())
        return (carry, ys) if return_carry else ys


class Stack(nnx.Module):
    """Layers (:class:`RNN` and :class:`Bidirectional`) one after the other, with dropout between.

    torch ``nn.LSTM(num_layers=L, dropout=p)``'s dropout: on each layer's outputs but the last's,
    by ``nnx.Dropout`` (``model.train()`` and ``model.eval()`` switch it, and the layers'
    regularizer cells, each layer drawing its key from its own stream just before it runs,
    :meth:`RNN.noise_key`). Through
    :func:`lstmjax.run_stack`: every layer must use one engine and one ``time_major``, the
    Bidirectional layers one merge, and each layer's ``in_features`` must be the previous layer's
    output features.

    Args:
      layers: :class:`RNN` and :class:`Bidirectional` modules.
      dropout: drop probability between layers.
      rngs: ``nnx.Rngs`` with a ``dropout`` stream; required when ``dropout > 0``.
    """

    def __init__(self, layers: Sequence[RNN | Bidirectional], dropout: float = 0.0, *,
                 rngs: nnx.Rngs | None = None):
        adapters.check_layers(layers, RNN, Bidirectional)
        if adapters.checked_rate(dropout) > 0 and rngs is None:
            raise ValueError(f"Stack(dropout={dropout}) draws its masks from rngs: pass "
                             "rngs=nnx.Rngs(dropout=...)")
        self.layers = nnx.List(layers)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, return_carry: bool = False) -> Any:
        """Run the layers over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Args:
          initial_carry: one carry per layer (a pair for a Bidirectional layer), or None (zeros).
          seq_lengths, resets: as for :meth:`RNN.__call__`, for every layer.
          return_carry: also return the tuple of final carries, one per layer.

        Returns:
          The last layer's ``ys``, or ``(final_carries, ys)``.
        """
        adapters.checked_features("Stack", self.layers[0].in_features, xs)
        between = None if self.dropout.rate == 0 else lambda layer, ys: self.dropout(ys)
        carries, ys = run_stack([layer.cell for layer in self.layers],
                                [layer.cell_params() for layer in self.layers], initial_carry,
                                xs, lengths=seq_lengths, resets=resets, between=between,
                                keys=lambda layer: self.layers[layer].noise_key(),
                                **adapters.stack_options(self.layers))
        return (carries, ys) if return_carry else ys


__all__ = ["RNN", "Bidirectional", "Stack"]
