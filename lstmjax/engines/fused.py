"""Engine "fused": a recurrent layer computed as cuDNN computes it, in JAX.

Forward: the input projection of all T steps is one matmul, ``x_proj = xs @ W_x`` over the
``T * B`` rows (``[T, B, I] @ [I, G]``); the loop then carries only the bias, the recurrent
matmuls and the gate math (the cell's ``update``).

Backward (a ``jax.custom_vjp``): a reverse loop that computes only the recurrent cotangents. Per
step it differentiates the gate math, replaying the recurrent matmul outputs saved by the forward
loop (so no matmul is recomputed), and sends ``d_out @ W_h^T`` back to the previous state. The
weight gradients are not accumulated in the loop: the loop emits each recurrent matmul's input
and output cotangent per step, and after it ``dW_h = lhs^T @ d_out``, ``dW_x = xs^T @ d_x_proj``,
``db = sum(d_x_proj)`` and ``dxs = d_x_proj @ W_x^T`` are one matmul (or sum) each over the
``T * B`` rows. The small parameters (peepholes, layer-norm scales and shifts, GRU's recurrent
bias) get one cotangent per step, summed after the loop.

Saved for the backward pass, per step: the carry entering it and the outputs of its recurrent
matmuls, besides ``x_proj`` (``[T, B, G]``); the gate activations are recomputed from them, an
elementwise cost (see ``benchmarks/NOTES.md`` for the measurements behind that choice).

Supports every cell of :mod:`lstmjax.cells` with all their options, initial carries and their
gradients, ``lengths``, ``reverse``, ``resets``, and the regularizer cells that wrap them
(:mod:`lstmjax.regularizers`), whose noise it hands to ``layer_weights`` and, a step at a time,
to ``update``: the backward pass differentiates ``update``, so it covers them.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax.cells import LayerCell, LayerWeights, Noise, add_bias, step_noise
from lstmjax.engines.loop import guarded_step, valid_steps

Array = jax.Array


def supports(cell: Any, **options: Any) -> str | None:
    """None if this engine runs ``cell`` (any options), else the reason it cannot."""
    del options
    if not isinstance(cell, LayerCell):
        return (f"{type(cell).__name__} does not implement lstmjax.cells.LayerCell "
                "(layer_weights, cast_weights, update, matmul, step_with_weights)")
    return None


def run_layer(cell: Any, params: Any, carry: Any, xs: Array, *, lengths: Array | None,
              reverse: bool, resets: Array | None, noise: Noise | None,
              unroll: int) -> tuple[Any, Array]:
    """One layer over ``xs: [T, B, I]`` (time-major); ``(final_carry, ys: [T, B, P])``.

    Arguments as :func:`lstmjax.engines.run_layer`, checked by it.
    """
    weights = cell.cast_weights(cell.layer_weights(params, noise))
    valid = valid_steps(lengths, xs.shape[0])
    return _fused(cell, reverse, unroll, weights, carry, xs, valid, resets, noise)


def _guarded_update(cell: Any, weights: LayerWeights, other: Any, noise: Noise | None,
                    recurrent: Any):
    """The cell's step on projected inputs, as the generic loop guards it (resets, lengths).

    The input bias is added here, per step, rather than to all of ``x_proj`` before the loop:
    one pass less over ``[T, B, G]`` (``benchmarks/NOTES.md``)."""

    def step(_, carry, inputs):
        x_proj, steps = inputs
        x_proj = add_bias(x_proj, weights.input_bias)
        new_carry, y = cell.update(other, carry, x_proj, recurrent, step_noise(noise, steps))
        return new_carry, y.astype(cell.dtype)

    return guarded_step(step, None)


def _forward(cell, reverse, unroll, weights, carry, xs, valid, resets, noise, *, save=True):
    """The forward pass and (with ``save``) the per-step residuals of the backward pass."""
    x_proj = cell.matmul(xs, weights.input_kernel)  # [T, B, G]: one matmul over the T * B rows
    kernels = {name: kernel.astype(cell.dtype) for name, kernel in weights.recurrent.items()}

    def body(carry, inputs):
        x_proj_t, steps_t, reset_t, valid_t = inputs
        outputs = {}

        def recurrent(lhs, name):
            outputs[name] = cell.matmul(lhs, kernels[name])
            return outputs[name]

        step = _guarded_update(cell, weights, weights.other, noise, recurrent)
        new_carry, y = step(carry, (x_proj_t, steps_t), reset_t, valid_t)
        return new_carry, (y, carry, outputs) if save else (y, None, None)

    steps = None if noise is None else noise.steps
    final, (ys, carries, outputs) = jax.lax.scan(
        body, carry, (x_proj, steps, resets, valid), reverse=reverse, unroll=unroll)
    return (final, ys), (weights, xs, x_proj, carries, outputs, valid, resets, noise)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fused(cell, reverse, unroll, weights, carry, xs, valid, resets, noise):
    """The layer without residuals (inference); differentiated through _forward/_backward."""
    return _forward(cell, reverse, unroll, weights, carry, xs, valid, resets, noise,
                    save=False)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _replay(cell, lhs, output, kernel_t):
    """``lhs @ kernel`` as the forward pass computed it (``output``); its VJP sends
    ``d @ kernel_t`` (``kernel_t = kernel^T``) to ``lhs`` and ``d`` itself to ``output``, so the
    caller collects each step's cotangent."""
    del lhs, kernel_t
    return output


def _replay_forward(cell, lhs, output, kernel_t):
    del lhs
    return output, kernel_t


def _replay_backward(cell, kernel_t, cotangent):
    return cell.matmul(cotangent, kernel_t), cotangent, None


_replay.defvjp(_replay_forward, _replay_backward)


def _backward(cell, reverse, unroll, residuals, cotangents):
    weights, xs, x_proj, carries, outputs, valid, resets, noise = residuals
    d_final, d_ys = cotangents
    # Transposed once, outside the loop: a transposed operand inside it is repacked at every step
    # by XLA:CPU's matmul (benchmarks/NOTES.md).
    kernels_t = {name: _materialized(kernel.T.astype(cell.dtype))
                 for name, kernel in weights.recurrent.items()}

    def body(d_carry, inputs):
        carry, x_proj_t, steps_t, outputs_t, reset_t, valid_t, d_y = inputs

        def replayed_step(other, carry, x_proj_t, outputs_t):
            lhs = {}

            def recurrent(operand, name):
                lhs[name] = operand
                return _replay(cell, operand, outputs_t[name], kernels_t[name])

            step = _guarded_update(cell, weights, other, noise, recurrent)
            return step(carry, (x_proj_t, steps_t), reset_t, valid_t), lhs

        _, pullback, lhs = jax.vjp(replayed_step, weights.other, carry, x_proj_t, outputs_t,
                                   has_aux=True)
        d_other, d_previous, d_x_proj, d_outputs = pullback((d_carry, d_y))
        # Where the gates are x_proj + recurrent(h) (LSTMs, RNN), both cotangents are one traced
        # array: emit it once, not twice [T, B, G] (benchmarks/NOTES.md).
        d_outputs = {name: None if d is d_x_proj else d for name, d in d_outputs.items()}
        return d_previous, (d_other, d_x_proj, d_outputs, lhs)

    d_carry, (d_other, d_x_proj, d_outputs, lhs) = jax.lax.scan(
        body, d_final, (carries, x_proj, None if noise is None else noise.steps, outputs, resets,
                        valid, d_ys),
        reverse=not reverse, unroll=unroll)
    d_outputs = {name: d_x_proj if d is None else d for name, d in d_outputs.items()}

    def rows(a):  # [T, B, F] -> [T * B, F]
        return a.reshape(-1, a.shape[-1])

    d_x_proj_rows = rows(d_x_proj)
    d_weights = LayerWeights(
        input_kernel=cell.matmul(rows(xs).T, d_x_proj_rows).astype(weights.input_kernel.dtype),
        input_bias=None if weights.input_bias is None else
        jnp.sum(d_x_proj_rows, axis=0).astype(weights.input_bias.dtype),
        recurrent={name: cell.matmul(rows(lhs[name]).T, rows(d_outputs[name])).astype(kernel.dtype)
                   for name, kernel in weights.recurrent.items()},
        other=jax.tree.map(lambda d, w: jnp.sum(d, axis=0).astype(w.dtype), d_other, weights.other),
    )
    d_xs = cell.matmul(d_x_proj_rows, weights.input_kernel.T).reshape(xs.shape).astype(xs.dtype)
    return d_weights, d_carry, d_xs, None, None, None


def _materialized(array: Array) -> Array:
    """``array`` computed here, not folded into its consumer (an optimization barrier)."""
    return jax.lax.optimization_barrier(array)


_fused.defvjp(_forward, _backward)
