"""Flax Linen modules over any lstmjax cell and engine: :class:`RNN`, :class:`Bidirectional`,
:class:`Stack`.

``lstmjax.linen.RNN(lstmjax.LSTM(64))`` replaces ``flax.linen.RNN(flax.linen.LSTMCell(64))``:
batch-major ``[B, T, I]`` inputs by default, flax's call keywords (``initial_carry``,
``seq_lengths``, ``reverse``, ``keep_order``, ``return_carry``). The modules only create the
parameters, one ``"cell"`` entry per cell (``variables["params"]["cell"]`` in the cell's layout,
:mod:`lstmjax.cells`), and call :func:`lstmjax.run_layer`, :func:`lstmjax.run_bidirectional` or
:func:`lstmjax.run_stack`; the math is the cells'.

Regularizer cells (:mod:`lstmjax.regularizers`) switch as ``nn.Dropout`` does, by the call's
``deterministic``: False (training) draws the cell's key with ``self.make_rng("dropout")`` (so
``apply(..., rngs={"dropout": key})``), True (evaluation) runs the cell without one, and None is
an error for such a cell. A plain cell ignores ``deterministic`` and draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstmjax import adapters
from lstmjax._checks import require_choice
from lstmjax.engines import ENGINE_NAMES
from lstmjax.layers import concatenate, run_bidirectional, run_stack
from lstmjax.regularizers import draws_noise

Array = jax.Array


def _needs_deterministic(what: str) -> ValueError:
    return ValueError(f"{what} needs deterministic=False (training, with a 'dropout' rng) or "
                      "True (evaluation)")


def _noise_key(module: nn.Module, owner: str, cell: Any, deterministic: bool | None
               ) -> Array | None:
    """The key of a regularizer cell's masks: ``module.make_rng("dropout")`` in training, None
    in evaluation or for a plain cell (or a pair); a ValueError if ``deterministic`` is None
    with a regularizer cell."""
    if not draws_noise(cell):
        return None
    if deterministic is None:
        raise _needs_deterministic(f"{owner} over a regularizer cell")
    return None if deterministic else module.make_rng("dropout")


class RNN(nn.Module):
    """One recurrent layer of ``cell`` over the time axis, flax ``nn.RNN``'s call with lstmjax cells.

    Parameters: ``{"cell": cell.init(key, I)}``, I read off the inputs at ``init``.

    Differences with ``flax.linen.RNN``:

    * ``cell`` is an lstmjax cell (:class:`lstmjax.cells.RecurrentCell`, e.g. ``lstmjax.LSTM(H)``),
      not a flax module; flax LSTM and GRU weights convert with
      :func:`lstmjax.convert.lstm_from_flax` / ``gru_from_flax`` (flax's LSTM is
      ``LSTM(H, forget_bias=0.0)``).
    * ``reverse``, ``keep_order`` and ``return_carry`` are call arguments only and ``time_major`` a
      module attribute only (flax has both, the call overriding the attribute).
    * ``initial_carry=None`` is zeros (``cell.zero_carry``; flax asks its cell's
      ``initialize_carry``, also zeros for its LSTM and GRU) and there is no ``init_key``;
      ``initial_carry`` may be positional, and a plain tuple is read in the carry's field order
      (an LSTM's ``(c, h)``, flax's order).
    * With ``seq_lengths``, outputs at padded steps (``t >= seq_lengths[b]``) are zeros. flax runs
      the cell on over the padding and returns those outputs (with ``reverse=True`` and
      ``keep_order=False``, the padding's outputs reversed among themselves). The final carry is
      the carry after the last valid step in both (after step 0 when reversed); for a sequence of
      length 0 it is the initial carry here, flax's carry after the last padded step.
    * ``resets`` (``bool[B, T]``, ``[T, B]`` if ``time_major``) zero a sequence's carry before a
      step (packed documents); flax has none.
    * ``engine`` picks how the layer runs (:data:`lstmjax.ENGINES`, ``"auto"`` by default); flax
      always runs ``nn.scan``, with its ``unroll``, ``variable_axes``, ``variable_broadcast``,
      ``variable_carry`` and ``split_rngs``, which have no counterpart: the cell is a pure
      function of its parameters (no variables, no rngs in the loop) and ``"auto"`` picks unroll.
    * One batch axis and one feature axis: ``xs: [B, T, I]`` (flax takes several leading batch
      axes, and cells with several feature axes such as ``ConvLSTMCell``).
    * ``deterministic`` switches a regularizer cell (:mod:`lstmjax.regularizers`) between
      training (False, rng ``"dropout"``) and evaluation (True); flax's cells have none.

    Attributes:
      cell: an lstmjax cell.
      engine: a key of :data:`lstmjax.ENGINES` or ``"auto"``.
      time_major: inputs ``[T, B, I]`` instead of ``[B, T, I]`` (and so outputs, resets).
    """

    cell: Any
    engine: str = "auto"
    time_major: bool = False

    def __post_init__(self):
        adapters.checked_cell(self.cell)
        require_choice("engine", self.engine, ENGINE_NAMES)
        super().__post_init__()

    @nn.compact
    def cell_params(self, in_features: int) -> dict[str, Array]:
        """The cell's parameters for ``in_features`` inputs (created at ``init``)."""
        return self.param("cell", self.cell.init, in_features)

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, reverse: bool = False, keep_order: bool = False,
                 return_carry: bool = False, deterministic: bool | None = None) -> Any:
        """Run the layer over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Args:
          initial_carry: shaped like ``cell.zero_carry(B)``; None is zeros.
          seq_lengths: optional ``int[B]`` valid steps per sequence.
          resets: optional ``bool[B, T]`` (``[T, B]`` if ``time_major``), True where a sequence
            starts afresh: its carry is zeroed before that step, in the order the steps run.
          reverse: run from each sequence's last valid step to its first.
          keep_order: with ``reverse``, return the outputs in input order; without, in the order
            they were computed (flax's default).
          return_carry: also return the final carry.
          deterministic: for a regularizer cell (required): False draws its masks from the
            ``"dropout"`` rng (training), True runs it without (evaluation). Ignored otherwise.

        Returns:
          ``ys: [B, T, P]`` (``[T, B, P]`` if ``time_major``), or ``(final_carry, ys)``.
        """
        params = self.cell_params(jnp.shape(xs)[-1])
        return adapters.run_rnn(self.cell, params, initial_carry, xs, engine=self.engine,
                                time_major=self.time_major, seq_lengths=seq_lengths, resets=resets,
                                reverse=reverse, keep_order=keep_order, return_carry=return_carry,
                                key=_noise_key(self, "RNN", self.cell, deterministic))


class Bidirectional(nn.Module):
    """Two :class:`RNN` over the same inputs, forward and backward, outputs merged step by step.

    flax ``nn.Bidirectional``'s semantics: the backward layer runs reversed and keeps the input
    order; through :func:`lstmjax.run_bidirectional`. Parameters: ``{"forward": {"cell": ...},
    "backward": {"cell": ...}}``.

    Differences with ``flax.linen.Bidirectional``: the attributes are ``forward``, ``backward`` and
    ``merge`` (flax: ``forward_rnn``, ``backward_rnn``, ``merge_fn``); ``time_major`` and the
    engine come from the two RNNs, which must agree; ``return_carry`` is a call argument only,
    with no ``init_key``, ``reverse`` or ``keep_order``; ``resets`` mark document starts and the
    backward layer is given the document ends (:func:`lstmjax.reverse_resets`); and the
    differences of :class:`RNN` (zeros at padded steps, lstmjax cells, one batch axis).

    Attributes:
      forward, backward: :class:`RNN` modules.
      merge: ``merge(ys_forward, ys_backward) -> ys``; the default concatenates the features.
    """

    forward: RNN
    backward: RNN
    merge: adapters.Merge = concatenate

    @property
    def cell(self) -> tuple[Any, Any]:
        """The ``(forward, backward)`` cells."""
        return self.forward.cell, self.backward.cell

    @property
    def engine(self) -> str:
        return adapters.shared_option("Bidirectional", (self.forward, self.backward), "engine")

    @property
    def time_major(self) -> bool:
        return adapters.shared_option("Bidirectional", (self.forward, self.backward), "time_major")

    def cell_params(self, in_features: int) -> tuple[dict[str, Array], dict[str, Array]]:
        """The ``(forward, backward)`` cells' parameters."""
        return self.forward.cell_params(in_features), self.backward.cell_params(in_features)

    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, return_carry: bool = False,
                 deterministic: bool | None = None) -> Any:
        """Run both directions over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Args:
          initial_carry: ``(forward, backward)`` carries, or None (zeros).
          seq_lengths, resets: as for :meth:`RNN.__call__`; ``resets`` mark document starts.
          return_carry: also return the ``(forward, backward)`` final carries.
          deterministic: as for :meth:`RNN.__call__`, required if either cell is a regularizer;
            in training one key, split between the directions.

        Returns:
          ``ys``, the merge of both directions' ``[B, T, P]``, or ``(final_carries, ys)``.
        """
        params = self.cell_params(jnp.shape(xs)[-1])
        carry, ys = run_bidirectional(self.cell, params, initial_carry, xs, engine=self.engine,
                                      lengths=seq_lengths, resets=resets, merge=self.merge,
                                      time_major=self.time_major,
                                      key=_noise_key(self, "Bidirectional", self.cell,
                                                     deterministic))
        return (carry, ys) if return_carry else ys


class Stack(nn.Module):
    """Layers (:class:`RNN` and :class:`Bidirectional`) one after the other, with dropout between.

    torch ``nn.LSTM(num_layers=L, dropout=p)``'s dropout: on each layer's outputs but the last's.
    Through :func:`lstmjax.run_stack`, so every layer must use one engine and one ``time_major``,
    and the Bidirectional layers one merge. Parameters: ``{"layers_0": ..., "layers_1": ...}``,
    each layer's; each layer's input features follow from the one before.

    Attributes:
      layers: :class:`RNN` and :class:`Bidirectional` modules.
      dropout: drop probability between layers (``nn.Dropout``, rng ``"dropout"``).
    """

    layers: Sequence[RNN | Bidirectional]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, xs: Array, initial_carry: Any = None, *, seq_lengths: Array | None = None,
                 resets: Array | None = None, return_carry: bool = False,
                 deterministic: bool | None = None) -> Any:
        """Run the layers over ``xs: float[B, T, I]`` (``[T, B, I]`` if ``time_major``).

        Args:
          initial_carry: one carry per layer (a pair for a Bidirectional layer), or None (zeros).
          seq_lengths, resets: as for :meth:`RNN.__call__`, for every layer.
          return_carry: also return the tuple of final carries, one per layer.
          deterministic: no dropout and regularizer cells in evaluation form; False draws the
            masks from the ``"dropout"`` rng, a regularizer cell's key just before its layer
            runs. Required when ``dropout > 0`` or a layer's cell is a regularizer.

        Returns:
          The last layer's ``ys``, or ``(final_carries, ys)``.
        """
        options = adapters.stack_options(self.layers)
        adapters.checked_rate(self.dropout)
        between = None
        if self.dropout > 0:
            if deterministic is None:
                raise _needs_deterministic(f"Stack(dropout={self.dropout})")
            drop = nn.Dropout(self.dropout, deterministic=deterministic)

            def between(layer: int, ys: Array) -> Array:
                del layer
                return drop(ys)
        params, in_features = [], jnp.shape(xs)[-1]
        for layer in self.layers:
            params.append(layer.cell_params(in_features))
            in_features = adapters.out_features(layer.cell, options["merge"])
        carries, ys = run_stack([layer.cell for layer in self.layers], params, initial_carry, xs,
                                lengths=seq_lengths, resets=resets, between=between,
                                keys=lambda layer: _noise_key(self, "Stack", self.layers[layer].cell,
                                                              deterministic),
                                **options)
        return (carries, ys) if return_carry else ys


__all__ = ["RNN", "Bidirectional", "Stack"]
