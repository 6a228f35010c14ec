"""Regularizers as cells that wrap cells: recurrent (variational) dropout, zoneout, weight drop.

Each wrapper implements :class:`lstmjax.cells.LayerCell` by delegating to the cell it wraps, with
the same parameters (``init``, ``param_shapes``: a wrapped cell's checkpoint and converters are
the inner cell's), so every engine runs it: the generic engines through ``step_with_weights``,
"fused" through ``update`` (its backward pass differentiates ``update``, so it covers every
wrapper), "native" where its kernel has the operation (recurrent dropout, weight drop), and
:func:`lstmjax.resolve` says which engine takes over otherwise. Wrappers nest:
``Zoneout(WeightDrop(LSTM(650), 0.2), 0.1, 0.05)``.

Randomness comes from an explicit key: ``run_layer(cell, params, carry, xs, key=key)`` draws the
wrapper's :class:`~lstmjax.cells.Noise` once, outside the loop (``cell.noise(key, T, B)``), and
the engines hand it to the cell (the window's part whole, the per-step part one step at a time),
so one key gives the same masks, and the same numbers, on every engine. Without a key (evaluation,
sampling) there is no noise: recurrent dropout and weight drop are the identity (inverted
dropout: masks are scaled by ``1 / (1 - rate)`` in training) and zoneout is its expectation.

* :class:`RecurrentDropout` (Gal & Ghahramani 2016): one mask per sequence on the recurrent state
  entering every step (h of an LSTM, never c; the whole state of a GRU or RNN).
* :class:`Zoneout` (Krueger et al. 2016): in training, each unit of the state keeps its previous
  value with probability ``cell_rate`` (an LSTM's c) or ``hidden_rate`` (h, or a GRU's or RNN's
  state), a new mask at every step; in evaluation, the expectation ``rate * old + (1 - rate) *
  new``.
* :class:`WeightDrop` (Merity et al. 2017, DropConnect on the recurrent kernels): one mask per
  window on every recurrent kernel (an LSTM's projection excepted), shared by the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax.cells import (
    LayerCell,
    LayerWeights,
    LSTMState,
    Noise,
    Params,
    Recurrent,
    Steps,
    mask_state,
)

Array = jax.Array


def _split(key: Array | None, count: int) -> list[Array | None]:
    return [None] * count if key is None else list(jax.random.split(key, count))


def _keep_mask(key: Array, rate: float, shape: tuple[int, ...], dtype: Any) -> Array:
    """Inverted dropout: ``bernoulli(1 - rate) / (1 - rate)`` in ``dtype``."""
    keep = 1.0 - rate
    kept = jax.random.bernoulli(key, keep, shape)
    return kept.astype(dtype) / jnp.asarray(keep, dtype)


class _FromCell:
    """A member a wrapper takes unchanged from the cell it wraps: ``wrapper.name`` is
    ``wrapper.cell.name`` (a value, such as ``hidden_size``, or a bound method, such as
    ``init``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, wrapper: Any, owner: type | None = None) -> Any:
        return self if wrapper is None else getattr(wrapper.cell, self.name)


@dataclasses.dataclass(frozen=True)
class Wrapper(Steps):
    """What every wrapper delegates to the cell it wraps (``step`` and ``step_with_weights`` are
    :class:`lstmjax.cells.Steps`', over the wrapper's own ``update``). Subclasses add their randomness in
    ``own_noise`` and use it in ``layer_weights`` and/or ``update``; their noise is
    ``Noise(window=(own, inner), steps=(own, inner))``."""

    cell: LayerCell

    def __post_init__(self):
        if not isinstance(self.cell, LayerCell):
            raise ValueError(f"{type(self).__name__} wraps a lstmjax.cells.LayerCell (layer_weights, "
                             f"update, ...), got {self.cell!r}")

    # -- the wrapped cell's, unchanged ---------------------------------------------------------
    hidden_size = _FromCell()
    output_size = _FromCell()
    dtype = _FromCell()
    param_dtype = _FromCell()
    state_dtype = _FromCell()
    init = _FromCell()
    param_shapes = _FromCell()
    zero_carry = _FromCell()
    matmul = _FromCell()
    project_inputs = _FromCell()
    cast_weights = _FromCell()

    # -- randomness ---------------------------------------------------------------------------
    def noise(self, key: Array, num_steps: int, batch_size: int) -> Noise:
        """``Noise(window=(own, inner), steps=(own, inner))``. Around a wrapper, the key is split
        between the two; around a plain cell, which draws nothing, this wrapper draws from
        ``key`` itself."""
        own_key, inner_key = jax.random.split(key) if isinstance(self.cell, Wrapper) else (
            key, None)
        own_window, own_steps = self.own_noise(own_key, num_steps, batch_size)
        inner = None if inner_key is None else self.cell.noise(inner_key, num_steps, batch_size)
        inner_window, inner_steps = (None, None) if inner is None else inner
        return Noise((own_window, inner_window), (own_steps, inner_steps))

    def own_noise(self, key: Array, num_steps: int, batch_size: int) -> tuple[Any, Any]:
        raise NotImplementedError

    @staticmethod
    def parts(noise: Noise | None) -> tuple[Any, Noise | None]:
        """``(own, inner)``: this wrapper's ``Noise(window, steps)`` parts (None in evaluation)
        and the inner cell's :class:`Noise` (None if it has none)."""
        if noise is None:
            return None, None
        (own_window, inner_window), (own_steps, inner_steps) = noise
        inner = None if inner_window is None and inner_steps is None else Noise(inner_window,
                                                                                inner_steps)
        return Noise(own_window, own_steps), inner

    def layer_weights(self, params: Params, noise: Noise | None = None) -> LayerWeights:
        return self.cell.layer_weights(params, self.parts(noise)[1])

    def update(self, other: Mapping[str, Array], carry: Any, x_proj: Array, recurrent: Recurrent,
               noise: Noise | None = None) -> tuple[Any, Array]:
        return self.cell.update(other, carry, x_proj, recurrent, self.parts(noise)[1])


@dataclasses.dataclass(frozen=True)
class _DropWrapper(Wrapper):
    """A wrapper that drops with one probability, ``rate`` in [0, 1) (1 would drop everything
    and divide by zero)."""

    rate: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"rate is a drop probability in [0, 1), got {self.rate!r}")


@dataclasses.dataclass(frozen=True)
class RecurrentDropout(_DropWrapper):
    """Variational dropout on the recurrence (Gal & Ghahramani 2016; Keras ``recurrent_dropout``,
    TF1 ``DropoutWrapper(state_keep_prob)``): the state entering every step multiplied by one
    mask per sequence, ``bernoulli(1 - rate) / (1 - rate)`` of shape ``[B, P]`` (an LSTM's h,
    never c; a GRU's or RNN's whole state). Evaluation: the identity.

    Attributes:
      cell: the wrapped cell.
      rate: drop probability in [0, 1).
    """

    def own_noise(self, key, num_steps, batch_size):
        """Window: the ``[B, P]`` mask, in the state dtype."""
        del num_steps
        return _keep_mask(key, self.rate, (batch_size, self.output_size), self.state_dtype), None

    def update(self, other, carry, x_proj, recurrent, noise=None):
        own, inner = self.parts(noise)
        if own is not None:
            carry = mask_state(carry, own.window)
        return self.cell.update(other, carry, x_proj, recurrent, inner)


@dataclasses.dataclass(frozen=True)
class Zoneout(Wrapper):
    """Zoneout (Krueger et al. 2016): units of the state keep their previous value at random.

    With the wrapped cell's new state ``new`` from the previous ``old``, per step and unit::

        training:    state = d * old + (1 - d) * new,   d ~ bernoulli(rate), a new d every step
        evaluation:  state = rate * old + (1 - rate) * new

    ``cell_rate`` applies to an LSTM's c, ``hidden_rate`` to its h (and output) or to a GRU's
    or RNN's state. The output is the zoned-out h.

    Attributes:
      cell: the wrapped cell.
      cell_rate: probability that a unit of c keeps its value (LSTM carries only).
      hidden_rate: probability that a unit of h keeps its value.
    """

    cell_rate: float = 0.0
    hidden_rate: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        for name in ("cell_rate", "hidden_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)!r}")
        if self.cell_rate and not has_cell_state(self.cell):
            raise ValueError(f"cell_rate zones out an LSTM's c, and {self.cell!r} has no c; use "
                             "hidden_rate")

    def _rates(self) -> Any:
        """The keep probabilities in the carry's structure: ``LSTMState(cell_rate, hidden_rate)``
        or ``hidden_rate``."""
        if has_cell_state(self.cell):
            return LSTMState(self.cell_rate, self.hidden_rate)
        return self.hidden_rate

    def own_noise(self, key, num_steps, batch_size):
        """Steps: where each unit keeps its value, ``[T, B, H]`` for c and ``[T, B, P]`` for h,
        in the state dtype (1.0: keep)."""
        dtype = self.state_dtype
        carry = jax.eval_shape(lambda: self.zero_carry(batch_size))
        keys = _split(key, len(jax.tree.leaves(carry)))
        leaves = [jax.random.bernoulli(k, rate, (num_steps, *a.shape)).astype(dtype)
                  for k, rate, a in zip(keys, jax.tree.leaves(self._rates()),
                                        jax.tree.leaves(carry))]
        return None, jax.tree.unflatten(jax.tree.structure(carry), leaves)

    def update(self, other, carry, x_proj, recurrent, noise=None):
        own, inner = self.parts(noise)
        new_carry, _ = self.cell.update(other, carry, x_proj, recurrent, inner)
        if own is None:  # evaluation: the expectation
            new_carry = jax.tree.map(lambda old, new, rate: rate * old + (1 - rate) * new,
                                     carry, new_carry, self._rates())
        else:
            new_carry = jax.tree.map(lambda old, new, keep: keep * old + (1 - keep) * new,
                                     carry, new_carry, own.steps)
        return new_carry, new_carry.h if isinstance(new_carry, LSTMState) else new_carry


@dataclasses.dataclass(frozen=True)
class WeightDrop(_DropWrapper):
    """DropConnect on the recurrent kernels (Wan et al. 2013; AWD-LSTM's weight drop, Merity et
    al. 2017): every recurrent kernel (an LSTM's ``W_h``, a GRU's; not a projection) multiplied
    by a mask ``bernoulli(1 - rate) / (1 - rate)`` of its own shape, drawn once per window and
    shared by the batch. Evaluation: the identity.

    Attributes:
      cell: the wrapped cell.
      rate: drop probability in [0, 1).
    """

    def _dropped(self, input_size: int) -> dict[str, tuple[int, ...]]:
        """The recurrent kernels it masks, by name, with their shapes."""
        template = jax.eval_shape(lambda: self.cell.layer_weights(
            {name: jnp.zeros(shape) for name, shape in self.param_shapes(input_size).items()}))
        return {name: kernel.shape for name, kernel in template.recurrent.items()
                if name != "proj_kernel"}

    def own_noise(self, key, num_steps, batch_size):
        """Window: ``{kernel name: mask}``, each in the parameter dtype. The recurrent kernels'
        shapes do not depend on the input size, so any input size gives them."""
        del num_steps, batch_size
        shapes = self._dropped(1)
        keys = dict(zip(shapes, _split(key, len(shapes)), strict=True))
        return {name: _keep_mask(keys[name], self.rate, shape, self.param_dtype)
                for name, shape in shapes.items()}, None

    def layer_weights(self, params, noise=None):
        own, inner = self.parts(noise)
        weights = self.cell.layer_weights(params, inner)
        if own is None:
            return weights
        masked = {name: kernel * own.window[name].astype(kernel.dtype) if name in own.window
                  else kernel for name, kernel in weights.recurrent.items()}
        return weights._replace(recurrent=masked)


WRAPPERS: dict[str, type[Wrapper]] = {
    "recurrent_dropout": RecurrentDropout,
    "zoneout": Zoneout,
    "weight_drop": WeightDrop,
}
"""The regularizers, by name: cells that wrap a cell."""


def has_cell_state(cell: Any) -> bool:
    """Whether ``cell``'s carry is an :class:`~lstmjax.cells.LSTMState` (a c beside h); shapes
    only, no arrays made."""
    return isinstance(jax.eval_shape(lambda: cell.zero_carry(1)), LSTMState)


def draws_noise(cell: Any) -> bool:
    """Whether ``cell``, or either cell of a ``(forward, backward)`` pair, is a regularizer: its
    masks come from a key in training, and without one it runs in its evaluation form. A caller
    (the language model, the framework modules) draws a key only for such a cell."""
    return any(isinstance(c, Wrapper) for c in (cell if isinstance(cell, tuple) else (cell,)))


def innermost(cell: Any) -> Any:
    """The cell that ``cell``'s wrappers wrap (``cell`` itself if it is no wrapper)."""
    while isinstance(cell, Wrapper):
        cell = cell.cell
    return cell


__all__ = ["WRAPPERS", "RecurrentDropout", "WeightDrop", "Wrapper", "Zoneout", "draws_noise",
           "has_cell_state", "innermost"]
