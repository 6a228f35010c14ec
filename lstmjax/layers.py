"""Layers composed of :func:`lstmjax.run_layer`: stacks, both directions, and one step at a time.

Every function here runs each layer through :func:`~lstmjax.engines.run_layer`, so every engine
("fused", "native", "cudnn" included) serves stacked and bidirectional layers, and the framework
modules (:mod:`lstmjax.nnx`, :mod:`lstmjax.linen`, :mod:`lstmjax.equinox`) are thin shells over
these functions.

* :func:`run_stack`: L layers, the outputs of one the inputs of the next, with an optional
  function between layers (dropout); a layer may be bidirectional (a pair of cells).
* :func:`run_bidirectional`: a forward and a backward layer over the same inputs, outputs merged.
  The backward direction gets its own resets (:func:`lstmjax.reverse_resets`), so packed
  documents are read backwards document by document.
* :func:`step_layer`, :func:`step_stack`: one time step, the acting path of a policy: equal to
  :func:`~lstmjax.engines.run_layer` at T = 1 with the same reset semantics, so stepping T times
  gives the rollout's outputs.
* :func:`last_valid`: the output at each sequence's last valid step (the classifier's input).
* :func:`flip_within_lengths`: reverse each sequence within its length (flax's reversed order).

Carries are given per layer (None: zeros) and come back per layer, in the cells' structures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax.cells import check_layer_arguments, step_noise
from lstmjax.engines import reverse_resets, run_layer
from lstmjax.engines.loop import checked_lengths, checked_resets, reset_carry

Array = jax.Array
Merge = Callable[[Array, Array], Array]
Between = Callable[[int, Array], Array]
Keys = Sequence[Array | None] | Callable[[int], Array | None]


def concatenate(ys_forward: Array, ys_backward: Array) -> Array:
    """The default merge of :func:`run_bidirectional`: both directions' features side by side,
    ``[..., P_fw + P_bw]``, forward first (TF's ``bidirectional_dynamic_rnn``, torch, flax)."""
    return jnp.concatenate([ys_forward, ys_backward], axis=-1)


def run_stack(
    cells: Sequence[Any],
    params: Sequence[Any],
    carries: Sequence[Any] | None,
    xs: Array,
    *,
    engine: str = "auto",
    unroll: int = 1,
    lengths: Array | None = None,
    resets: Array | None = None,
    between: Between | None = None,
    keys: Keys | None = None,
    merge: Merge = concatenate,
    remat_chunk: int | None = None,
    time_major: bool = True,
) -> tuple[tuple[Any, ...], Array]:
    """Run L recurrent layers, each over the whole window, layer l's outputs layer l+1's inputs.

    Args:
      cells: L entries, each a cell (:class:`lstmjax.cells.RecurrentCell`) or a ``(forward,
        backward)`` pair of cells: a bidirectional layer (:func:`run_bidirectional`, its
        outputs merged by ``merge``), as torch's ``LSTM(bidirectional=True, num_layers=L)``.
      params: L entries, layer l's ``cells[l].param_shapes(I_l)`` (a pair for a pair).
      carries: L initial carries (None, or a None entry: zeros; plain tuples and 16-bit carries
        as :func:`~lstmjax.engines.run_layer` takes them; a pair, or None, for a pair).
      xs: ``float[T, B, I]`` (``[B, T, I]`` if not ``time_major``).
      engine, unroll, lengths, resets, remat_chunk, time_major: as
        :func:`~lstmjax.engines.run_layer`, for every layer.
      between: ``between(l, ys) -> ys``, applied to layer l's outputs before layer l+1 reads
        them (dropout between layers), for l < L-1; ``ys`` in the layout of ``xs``.
      keys: the randomness of regularizer cells (:mod:`lstmjax.regularizers`; ``run_layer``'s
        ``key``): L keys (None entries: none), or a function ``keys(l)`` called just before
        layer l runs, so a caller that draws them and the dropout masks of ``between`` from one
        stream keeps its order. None: evaluation.
      merge: how a bidirectional layer merges its directions (default: concatenated features).

    Returns:
      ``(final_carries, ys)``: a tuple of L final carries and the last layer's outputs
      ``[T, B, P_L]`` (``[B, T, P_L]`` if not ``time_major``).
    """
    num_layers = len(cells)
    carries = [None] * num_layers if carries is None else list(carries)
    key_of = _key_of(keys, num_layers)
    for name, values in (("params", params), ("carries", carries)):
        if len(values) != num_layers:
            raise ValueError(f"{name} must have one entry per cell ({num_layers}), got "
                             f"{len(values)}")
    final = []
    for layer, (cell, layer_params, carry) in enumerate(zip(cells, params, carries)):
        if layer and between is not None:
            xs = between(layer - 1, xs)
        options = {"engine": engine, "unroll": unroll, "lengths": lengths, "resets": resets,
                   "remat_chunk": remat_chunk, "time_major": time_major, "key": key_of(layer)}
        if isinstance(cell, tuple | list):
            carry, xs = run_bidirectional(cell, layer_params, carry, xs, merge=merge, **options)
        else:
            carry, xs = run_layer(cell, layer_params, carry, xs, **options)
        final.append(carry)
    return tuple(final), xs


def _key_of(keys: Keys | None, num_layers: int) -> Callable[[int], Array | None]:
    """``keys`` (a sequence, a function or None) as a function of the layer index."""
    if keys is None:
        return lambda layer: None
    if callable(keys):
        return keys
    keys = list(keys)
    if len(keys) != num_layers:
        raise ValueError(f"keys must have one entry per cell ({num_layers}), got {len(keys)}")
    return keys.__getitem__


def run_bidirectional(
    cells: tuple[Any, Any],
    params: tuple[Any, Any],
    carries: tuple[Any, Any] | None,
    xs: Array,
    *,
    engine: str = "auto",
    unroll: int = 1,
    lengths: Array | None = None,
    resets: Array | None = None,
    merge: Merge = concatenate,
    remat_chunk: int | None = None,
    time_major: bool = True,
    key: Array | None = None,
) -> tuple[tuple[Any, Any], Array]:
    """A forward and a backward layer over ``xs``, their outputs merged step by step.

    The backward layer runs ``reverse=True``: each sequence is read from its last valid step
    (``lengths``) to its first, its outputs kept in input order, as TF's
    ``bidirectional_dynamic_rnn`` and torch's packed bidirectional LSTM do. ``resets`` mark
    document starts, as for a forward layer; the backward layer gets the document ends
    (:func:`lstmjax.reverse_resets`), so each document is read backwards on its own.

    Args:
      cells, params: ``(forward, backward)`` cells and their parameters.
      carries: ``(forward, backward)`` initial carries, or None (zeros).
      xs: ``float[T, B, I]`` (``[B, T, I]`` if not ``time_major``).
      engine, unroll, lengths, remat_chunk, time_major: as :func:`~lstmjax.engines.run_layer`.
      resets: optional ``bool[T, B]`` (``[B, T]`` if not ``time_major``), True at each
        document's first step.
      merge: ``merge(ys_forward, ys_backward) -> ys``; the default concatenates the features.
      key: the randomness of regularizer cells, split between the two directions; None:
        evaluation.

    Returns:
      ``((final_forward, final_backward), ys)``, ``ys`` the merge of ``[T, B, P_fw]`` and
      ``[T, B, P_bw]`` (batch-major if not ``time_major``). The backward final carry is its
      carry after step 0.
    """
    carry_fw, carry_bw = (None, None) if carries is None else carries
    num_steps, batch_size = jnp.shape(xs)[:2] if time_major else jnp.shape(xs)[1::-1]
    if resets is not None:
        resets = checked_resets(resets, num_steps, batch_size, time_major)
        lengths = checked_lengths(lengths, batch_size, num_steps)
        backward_resets = reverse_resets(resets, lengths)
        if not time_major:
            resets, backward_resets = resets.T, backward_resets.T
    else:
        backward_resets = None
    key_fw, key_bw = (None, None) if key is None else jax.random.split(key)
    options = {"engine": engine, "unroll": unroll, "lengths": lengths,
               "remat_chunk": remat_chunk, "time_major": time_major}
    carry_fw, ys_fw = run_layer(cells[0], params[0], carry_fw, xs, resets=resets, key=key_fw,
                                **options)
    carry_bw, ys_bw = run_layer(cells[1], params[1], carry_bw, xs, resets=backward_resets,
                                reverse=True, key=key_bw, **options)
    return (carry_fw, carry_bw), merge(ys_fw, ys_bw)


def step_layer(cell: Any, params: Any, carry: Any, x: Array, *, reset: Array | None = None,
               key: Array | None = None) -> tuple[Any, Array]:
    """One step of a layer: :func:`~lstmjax.engines.run_layer` at T = 1.

    Args:
      cell, params: as for ``run_layer``.
      carry: the carry entering the step (None: zeros; plain tuples and 16-bit carries as
        ``run_layer`` takes them).
      x: ``float[B, I]``, this step's inputs.
      reset: optional ``bool[B]``: zero the carry of sequence b before this step (an episode or
        document starts here), as ``run_layer``'s ``resets[t]``.
      key: a regularizer cell's randomness for this step, as ``run_layer``'s ``key`` at T = 1.

    Returns:
      ``(carry, y)`` with ``y: [B, P]``, the carry in ``cell.zero_carry``'s structure and dtypes.
    """
    carry = check_layer_arguments(cell, params, carry, x)
    if reset is not None:
        reset = checked_resets(jnp.asarray(reset)[None], 1, x.shape[0], True)[0]
    noise = None if key is None else cell.noise(key, 1, x.shape[0])
    if noise is None:
        return cell.step(params, reset_carry(carry, reset), x)
    noise = jax.lax.stop_gradient(step_noise(noise, jax.tree.map(lambda a: a[0], noise.steps)))
    return cell.step(params, reset_carry(carry, reset), x, noise)


def step_stack(cells: Sequence[Any], params: Sequence[Any], carries: Sequence[Any] | None,
               x: Array, *, reset: Array | None = None, between: Between | None = None,
               keys: Keys | None = None) -> tuple[tuple[Any, ...], Array]:
    """One step of a stack: :func:`run_stack` at T = 1.

    Args:
      cells, params: as for :func:`run_stack`.
      carries: L carries (None: zeros).
      x: ``float[B, I]``.
      reset: optional ``bool[B]``: zero every layer's carry of sequence b before this step.
      between: as for :func:`run_stack`, on ``[B, P_l]`` outputs.
      keys: as for :func:`run_stack`.

    Returns:
      ``(carries, y)``: the L carries after the step and the last layer's ``y: [B, P_L]``.
    """
    carries = [None] * len(cells) if carries is None else list(carries)
    if len(params) != len(cells) or len(carries) != len(cells):
        raise ValueError(f"params and carries must have one entry per cell ({len(cells)}), got "
                         f"{len(params)} and {len(carries)}")
    key_of = _key_of(keys, len(cells))
    final = []
    for layer, (cell, layer_params, carry) in enumerate(zip(cells, params, carries)):
        if isinstance(cell, tuple | list):
            raise ValueError(f"layer {layer} is bidirectional: its backward direction reads the "
                             "future, so it cannot be stepped")
        if layer and between is not None:
            x = between(layer - 1, x)
        carry, x = step_layer(cell, layer_params, carry, x, reset=reset, key=key_of(layer))
        final.append(carry)
    return tuple(final), x


def last_valid(ys: Array, lengths: Array | None = None, *, time_major: bool = True) -> Array:
    """Each sequence's output at its last valid step: ``ys[lengths[b] - 1, b]``.

    Args:
      ys: ``[T, B, P]`` (``[B, T, P]`` if not ``time_major``).
      lengths: ``int[B]`` in [1, T], or None (every sequence has T steps).

    Returns:
      ``[B, P]``. A sequence of length 0 has no valid step: its row is zeros.
    """
    if not time_major:
        ys = jnp.swapaxes(ys, 0, 1)
    num_steps, batch_size = ys.shape[:2]
    if lengths is None:
        return ys[-1]
    lengths = checked_lengths(lengths, batch_size, num_steps)
    last = jnp.take_along_axis(ys, jnp.maximum(lengths - 1, 0)[None, :, None], axis=0)[0]
    return jnp.where((lengths > 0)[:, None], last, jnp.zeros_like(last))


def flip_within_lengths(ys: Array, lengths: Array | None = None, *,
                        time_major: bool = True) -> Array:
    """Each sequence's first ``lengths[b]`` steps in reverse order; the steps after stay put.

    The outputs of a ``reverse=True`` layer (:func:`~lstmjax.engines.run_layer`, in input order)
    in the order they were computed, as flax's ``nn.RNN(reverse=True, keep_order=False)`` returns
    them (flax's ``flip_sequences``, which also reverses the padding among itself).

    Args:
      ys: ``[T, B, ...]`` (``[B, T, ...]`` if not ``time_major``).
      lengths: ``int[B]`` in [0, T], or None (every sequence has T steps: a plain flip).

    Returns:
      ``ys`` reordered: ``out[t, b] = ys[lengths[b] - 1 - t, b]`` for ``t < lengths[b]``, else
      ``ys[t, b]``.
    """
    time_axis = 0 if time_major else 1
    if lengths is None:
        return jnp.flip(ys, axis=time_axis)
    num_steps, batch_size = ys.shape[:2] if time_major else ys.shape[1::-1]
    lengths = checked_lengths(lengths, batch_size, num_steps)
    steps = jnp.arange(num_steps, dtype=lengths.dtype)[:, None]  # [T, 1]
    index = jnp.where(steps < lengths[None], lengths[None] - 1 - steps, steps)  # [T, B]
    if not time_major:
        index = index.T
    return jnp.take_along_axis(ys, index.reshape(index.shape + (1,) * (ys.ndim - 2)),
                               axis=time_axis)


__all__ = ["concatenate", "flip_within_lengths", "last_valid", "run_bidirectional", "run_stack",
           "step_layer", "step_stack"]
