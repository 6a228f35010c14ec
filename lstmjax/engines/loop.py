"""The generic loop over time: :func:`run` iterates any pure step function over the time axis.

Two engines run the same pure step function ``step(params, carry, x) -> (carry, y)``:

* ``"scan"``: ``jax.lax.scan`` (TensorFlow's ``dynamic_rnn`` / ``tf.scan``). The compiled program
  holds one step, or ``unroll`` copies of it; its size does not grow with T.
* ``"static"``: a Python loop over the T steps (TensorFlow's ``static_rnn``). The program holds T
  copies of the step, so tracing and compiling grow with T, and XLA may fuse across steps.

Both take the same arguments and give the same outputs and gradients. Layer engines, which see
the cell and not only its step, are in the other modules of :mod:`lstmjax.engines`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._checks import require_choice, require_positive_int

Array = jax.Array
GenericEngine = Literal["scan", "static"]
GENERIC_ENGINES: tuple[str, ...] = get_args(GenericEngine)
Step = Callable[[Any, Any, Any], tuple[Any, Any]]


def run(
    step: Step,
    params: Any,
    carry: Any,
    xs: Any,
    *,
    engine: GenericEngine = "scan",
    unroll: int = 1,
    lengths: Array | None = None,
    reverse: bool = False,
    resets: Array | None = None,
    time_major: bool = True,
    checked: bool = False,
) -> tuple[Any, Any]:
    """Run ``step`` over the time axis of ``xs``.

    Semantics, for each sequence b of the batch:

    * forward (``reverse=False``): steps t = 0, 1, ..., T-1; ``ys[t]`` is the output of step t;
    * ``reverse=True``: steps t = T-1, ..., 0, and ``ys[t]`` is still the output for input ``xs[t]``
      (outputs keep the input's time order);
    * ``lengths``: sequence b has ``lengths[b]`` valid steps (TF ``dynamic_rnn``'s
      ``sequence_length``). At steps t >= lengths[b] its carry is left unchanged and its output is
      zero, so the final carry is the carry after its last valid step (after step 0 when reversed,
      which starts at step lengths[b]-1: TF's ``reverse_sequence`` convention). A sequence of length
      0 returns its initial carry. Lengths above T count as T.
    * ``resets``: where ``resets[t, b]`` is True, sequence b's carry is zeroed before step t (packed
      documents, episode boundaries); the step then starts from zeros, and so does its gradient.
      Resets at steps t >= lengths[b] are ignored, as those steps are. "Before" is in the order
      the steps run: with ``reverse=True`` a per-document backward pass needs resets at each
      document's last step, not its first (:func:`reverse_resets` converts).

    Args:
      step: pure function ``step(params, carry, x_t) -> (carry, y_t)`` on one time step; ``carry``
        must come back with the structure, shapes and dtypes it went in with.
      params: pytree passed unchanged to every step.
      carry: initial carry pytree, leaves ``[B, ...]``.
      xs: inputs, a pytree whose leaves are ``[T, B, ...]`` (``[B, T, ...]`` if not ``time_major``).
      engine: ``"scan"`` or ``"static"``.
      unroll: steps per iteration of the scan loop (``lax.scan(unroll=...)``), a positive int;
        ``"static"`` always unrolls all T steps and ignores it.
      lengths: optional ``int[B]`` valid steps per sequence.
      reverse: run from the last step to the first.
      resets: optional ``bool[T, B]`` (``[B, T]`` if not ``time_major``), see above.
      time_major: whether ``xs``, ``resets`` and the returned ``ys`` are time-major.
      checked: the caller has already checked the step's carry, ``lengths`` and ``resets``
        (time-major), as :func:`~lstmjax.engines.run_layer` does once per layer; otherwise one
        step is traced first to check that it keeps the carry's shapes and dtypes, and
        ``lengths`` and ``resets`` are checked here.

    Returns:
      ``(final_carry, ys)``, ``ys`` a pytree of ``[T, B, ...]`` leaves (``[B, T, ...]`` if not
      ``time_major``).

    Raises:
      ValueError: unknown engine, bad unroll, inputs without a time and batch axis, lengths of the
        wrong shape or outside [0, T] (checked when concrete), or a step that changes the carry's
        structure, shape or dtype.
    """
    require_choice("engine", engine, GENERIC_ENGINES)
    require_positive_int("unroll", unroll)
    leaves = jax.tree.leaves(xs)
    if not leaves or any(jnp.ndim(leaf) < 2 for leaf in leaves):
        layout = "[T, B, ...]" if time_major else "[B, T, ...]"
        shapes = [jnp.shape(leaf) for leaf in leaves]
        raise ValueError(f"xs must have leaves of rank >= 2 shaped {layout}, got shapes {shapes}")
    if not time_major:
        xs = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), xs)
    num_steps, batch_size = jnp.shape(jax.tree.leaves(xs)[0])[:2]
    if any(jnp.shape(leaf)[:2] != (num_steps, batch_size) for leaf in jax.tree.leaves(xs)):
        raise ValueError("all leaves of xs must share their time and batch sizes")
    if not checked:
        _check_carry(step, params, carry, jax.tree.map(lambda a: a[0], xs))
        lengths = checked_lengths(lengths, batch_size, num_steps)
        resets = checked_resets(resets, num_steps, batch_size, time_major)
    per_step = (xs, resets, valid_steps(lengths, num_steps))
    body = guarded_step(step, params)

    if engine == "scan":
        carry, ys = jax.lax.scan(lambda c, inputs: body(c, *inputs), carry, per_step,
                                 reverse=reverse, unroll=unroll)
    else:
        inputs = _unstack(per_step, num_steps)
        outputs = [None] * num_steps
        for t in reversed(range(num_steps)) if reverse else range(num_steps):
            carry, outputs[t] = body(carry, *inputs[t])
        ys = jax.tree.map(lambda *ys_t: jnp.stack(ys_t), *outputs)

    if not time_major:
        ys = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), ys)
    return carry, ys


def reverse_resets(resets: Array | None, lengths: Array | None = None) -> Array | None:
    """The resets of a backward pass over the documents that forward ``resets`` start.

    Forward, ``resets[t, b]`` marks the first step of a document: its carry is zeroed before that
    step. A backward pass (``reverse=True``) meets each document at its last step, so its carry
    must be zeroed there: at step t when step t + 1 starts a document. The last step of the
    window (or of sequence b's ``lengths[b]`` valid steps) gets none: the backward pass starts
    there from its initial carry.

    Args:
      resets: ``bool[T, B]`` (time-major), True at each document's first step; or None.
      lengths: optional ``int[B]`` valid steps per sequence.

    Returns:
      ``bool[T, B]``, True at each document's last step but the sequence's last; None for None.
    """
    if resets is None:
        return None
    ends = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])])
    if lengths is None:
        return ends
    return ends & (jnp.arange(resets.shape[0])[:, None] + 1 < lengths[None, :])


def _select(condition: Array, new: Any, old: Any) -> Any:
    """``where(condition[b], new, old)`` leaf by leaf, ``condition: bool[B]``."""
    def select(a, b):
        return jnp.where(condition.reshape(condition.shape + (1,) * (jnp.ndim(a) - 1)), a, b)

    return jax.tree.map(select, new, old)


def reset_carry(carry: Any, reset: Array | None) -> Any:
    """``carry`` with the sequences where ``reset: bool[B]`` is True set to zero."""
    if reset is None:
        return carry
    return _select(reset, jax.tree.map(jnp.zeros_like, carry), carry)


def guarded_step(step: Step, params: Any) -> Callable[..., Any]:
    """``body(carry, x_t, reset_t, valid_t) -> (carry, y_t)``: ``step`` after zeroing the carry
    where ``reset_t: bool[B]`` is True, keeping the carry and zeroing the output where
    ``valid_t: bool[B]`` is False. None for either means none reset, all valid."""

    def body(carry, x, reset, valid):
        new_carry, y = step(params, reset_carry(carry, reset), x)
        if valid is None:
            return new_carry, y
        return (_select(valid, new_carry, carry),
                _select(valid, y, jax.tree.map(jnp.zeros_like, y)))

    return body


def valid_steps(lengths: Array | None, num_steps: int) -> Array | None:
    """``bool[T, B]``, True where step t of sequence b is valid (``t < lengths[b]``); None for None."""
    if lengths is None:
        return None
    return jnp.arange(num_steps, dtype=jnp.int32)[:, None] < lengths[None, :]


def checked_resets(resets: Any, num_steps: int, batch_size: int, time_major: bool) -> Array | None:
    """``resets`` as a time-major ``bool[T, B]``, or None; a ValueError names a bad shape."""
    if resets is None:
        return None
    resets = jnp.asarray(resets)
    layout = (num_steps, batch_size) if time_major else (batch_size, num_steps)
    if resets.shape != layout or resets.dtype != jnp.bool_:
        raise ValueError(
            f"resets must be bool{list(layout)} ({'time' if time_major else 'batch'}-major, "
            f"True where a sequence starts afresh), got {resets.dtype}{list(resets.shape)}"
        )
    return resets if time_major else resets.T


def checked_lengths(lengths: Any, batch_size: int, num_steps: int) -> Array | None:
    if lengths is None:
        return None
    lengths = jnp.asarray(lengths)
    if lengths.shape != (batch_size,) or not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(
            f"lengths must be int[{batch_size}] (one length per sequence), got "
            f"{lengths.dtype}{list(lengths.shape)}"
        )
    if not isinstance(lengths, jax.core.Tracer):
        concrete = np.asarray(lengths)
        low = int(concrete.min(initial=num_steps))
        high = int(concrete.max(initial=0))
        if low < 0 or high > num_steps:
            raise ValueError(
                f"lengths must lie in [0, T={num_steps}], got values in [{low}, {high}]"
            )
    return lengths


def _check_carry(step: Step, params: Any, carry: Any, x: Any) -> None:
    """Raise a ValueError if one step changes the carry's structure, shapes or dtypes."""
    new_carry = jax.eval_shape(lambda c: step(params, c, x)[0], carry)
    want = jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), carry)
    got = jax.tree.map(lambda a: (a.shape, a.dtype), new_carry)
    if jax.tree.structure(carry) != jax.tree.structure(new_carry) or want != got:
        raise ValueError(
            f"the step returns a carry {got} unlike the carry it was given {want}; pass a carry "
            "made by the cell's zero_carry(batch_size), in the cell's compute dtype"
        )


def _unstack(xs: Any, num_steps: int) -> list[Any]:
    """Split time-major ``xs`` into a list of T per-step pytrees, once.

    ``jnp.unstack`` differentiates into one concatenation, where T separate ``xs[t]`` slices would
    each transpose into a full-size pad and add.
    """
    leaves, treedef = jax.tree.flatten(xs)
    per_leaf = [jnp.unstack(leaf) for leaf in leaves]
    return [jax.tree.unflatten(treedef, [steps[t] for steps in per_leaf]) for t in range(num_steps)]
