"""The loop over time: :func:`run` is the only place in lstmjax that iterates over time steps.

Two engines run the same pure step function ``step(params, carry, x) -> (carry, y)``:

* ``"scan"``: ``jax.lax.scan`` (TensorFlow's ``dynamic_rnn`` / ``tf.scan``). The compiled program
  holds one step, or ``unroll`` copies of it; its size does not grow with T.
* ``"static"``: a Python loop over the T steps (TensorFlow's ``static_rnn``). The program holds T
  copies of the step, so tracing and compiling grow with T, and XLA may fuse across steps.

Both take the same arguments and give the same outputs and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax._checks import require_choice, require_positive_int

Array = jax.Array
Engine = Literal["scan", "static"]
ENGINES: tuple[str, ...] = get_args(Engine)
Step = Callable[[Any, Any, Any], tuple[Any, Any]]


def run(
    step: Step,
    params: Any,
    carry: Any,
    xs: Any,
    *,
    engine: Engine = "scan",
    unroll: int = 1,
    lengths: Array | None = None,
    reverse: bool = False,
    time_major: bool = True,
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
      time_major: whether ``xs`` and the returned ``ys`` are time-major.

    Returns:
      ``(final_carry, ys)``, ``ys`` a pytree of ``[T, B, ...]`` leaves (``[B, T, ...]`` if not
      ``time_major``).

    Raises:
      ValueError: unknown engine, bad unroll, inputs without a time and batch axis, lengths of the
        wrong shape or outside [0, T] (checked when concrete), or a step that changes the carry's
        structure, shape or dtype.
    """
    require_choice("engine", engine, ENGINES)
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
    _check_carry(step, params, carry, jax.tree.map(lambda a: a[0], xs))
    body = _masked(step, params, _checked_lengths(lengths, batch_size, num_steps))

    if engine == "scan":
        times = jnp.arange(num_steps, dtype=jnp.int32)
        carry, ys = jax.lax.scan(
            lambda c, inputs: body(c, *inputs), carry, (xs, times), reverse=reverse,
            unroll=unroll,
        )
    else:
        inputs = _unstack(xs, num_steps)
        outputs = [None] * num_steps
        for t in reversed(range(num_steps)) if reverse else range(num_steps):
            carry, outputs[t] = body(carry, inputs[t], t)
        ys = jax.tree.map(lambda *ys_t: jnp.stack(ys_t), *outputs)

    if not time_major:
        ys = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), ys)
    return carry, ys


def bidirectional(
    steps: tuple[Step, Step],
    params: tuple[Any, Any],
    carries: tuple[Any, Any],
    xs: Any,
    **run_kwargs: Any,
) -> tuple[tuple[Any, Any], Array]:
    """Run a forward and a backward recurrence over ``xs`` and concatenate their outputs.

    The backward direction is :func:`run` with ``reverse=True`` (with ``lengths``, each sequence is
    read backwards from its last valid step), as TF's ``bidirectional_dynamic_rnn``.

    Args:
      steps, params, carries: ``(forward, backward)`` pairs of step functions, their parameters and
        their initial carries.
      xs: inputs as for :func:`run`.
      **run_kwargs: ``engine``, ``unroll``, ``lengths``, ``time_major``, passed to :func:`run`.

    Returns:
      ``((forward_carry, backward_carry), ys)`` with ``ys: [T, B, Y_fw + Y_bw]`` (or batch-major).
    """
    if "reverse" in run_kwargs:
        raise ValueError("bidirectional runs both directions; do not pass reverse")
    carry_fw, ys_fw = run(steps[0], params[0], carries[0], xs, **run_kwargs)
    carry_bw, ys_bw = run(steps[1], params[1], carries[1], xs, reverse=True, **run_kwargs)
    return (carry_fw, carry_bw), jnp.concatenate([ys_fw, ys_bw], axis=-1)


def _masked(step: Step, params: Any, lengths: Array | None) -> Callable[[Any, Any, Any], Any]:
    """``body(carry, x_t, t)``: ``step`` with carries frozen and outputs zeroed past ``lengths``."""
    if lengths is None:
        return lambda carry, x, t: step(params, carry, x)

    def body(carry, x, t):
        new_carry, y = step(params, carry, x)
        valid = t < lengths  # bool[B]

        def keep(new, old):
            return jnp.where(valid.reshape(valid.shape + (1,) * (jnp.ndim(new) - 1)), new, old)

        return (
            jax.tree.map(keep, new_carry, carry),
            jax.tree.map(lambda y_t: keep(y_t, jnp.zeros_like(y_t)), y),
        )

    return body


def _checked_lengths(lengths: Any, batch_size: int, num_steps: int) -> Array | None:
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
