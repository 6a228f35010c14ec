"""Engine "cudnn": an LSTM layer as one cuDNN call, through ``jax.experimental.rnn.lstm``.

Computes what :func:`lstmjax.cells.lstm_update` computes for a plain :class:`lstmjax.cells.LSTM`
layer (the TF1 ``BasicLSTMCell`` equations) with NVIDIA's fused kernel: the forward pass is
``cudnnRNNForward`` and the backward pass ``cudnnRNNBackwardData_v8`` and
``cudnnRNNBackwardWeights_v8`` (the ``jax.custom_vjp`` of ``jax.experimental.rnn.lstm``). Gradients
reach ``params`` through :func:`cudnn_weights`, a differentiable reshuffle. Reverse mode only: the
custom VJP has no forward-mode rule (``jax.jvp``, ``jax.jacfwd``) and its primitive no batching
rule (``jax.vmap``).

Weight layout (:func:`cudnn_weights`). lstmjax stores TF1's ``kernel: [I + H, 4H]`` (input rows,
then recurrent rows; gate columns i, j, f, o with j the candidate) and ``bias: [4H]``, and adds
``forget_bias`` to f in the math. cuDNN (documented in ``jax/experimental/rnn.py``) takes one flat
float32 vector ``(W_ih, W_hh, b_ih, b_hh)`` with ``W_ih: [4H, I]``, ``W_hh: [4H, H]`` and gate rows
i, f, g, o (g the candidate), and adds both biases. So ``W_ih = kernel[:I]`` and ``W_hh =
kernel[I:]`` with their column blocks reordered to i, f, j, o and transposed; ``b_ih`` is ``bias``
reordered the same way with ``forget_bias`` added to its f block; ``b_hh`` is zeros.

Semantics are those of the other engines (:func:`lstmjax.engines.run`): time-major ``xs: [T, B,
I]``, ``ys: [T, B, H]``, and with ``lengths`` zero outputs past each sequence's length and the
carry after its last valid step (the initial carry for length 0). cuDNN (jaxlib's call, padded
I/O with fill 0) returns the state after each sequence's last valid step and zero outputs past
it, but for a length of 0 it returns a zero state, not the initial one (seen on an H200), and
``jax.experimental.rnn.lstm_ref`` picks the state at step ``length - 1``, which for 0 is the last
step. So :func:`run_layer` relies on neither for the edge cases: it passes lengths clipped to
``[1, T]`` (``lengths=None``: T for every row), zeroes the inputs and the outputs past each length
itself, and selects the initial carry where the length is 0. The selects route every cotangent of
a masked step to zero (or, for a length-0 row, straight to the initial carry), whatever cuDNN
writes into its padding. Under ``jit`` the arrays around the call are pinned to row-major
layouts (:func:`_row_major`), which jaxlib's call assumes but does not declare.

Falls back to "fused" (:func:`supports` gives the reason) for: any backend but a GPU (cuDNN needs
an NVIDIA GPU); cells other than :class:`lstmjax.cells.LSTM` (GRU, SimpleRNN, LayerNormLSTM: this
call is LSTM-only); peepholes, a projection, ``cell_clip`` or ``proj_clip`` (not in the LSTM cuDNN
computes here); a ``dtype`` other than float32 (jaxlib fixes cuDNN's data and math type to
``CUDNN_DATA_FLOAT``, and ``jax.experimental.rnn.lstm`` raises NotImplementedError for bfloat16
precision: bfloat16 and float16 cannot go through it); the regularizer cells of
:mod:`lstmjax.regularizers`; ``reverse`` and ``resets`` (cuDNN's loop cannot zero or mask the
state between steps; a reversed layer
would need each sequence flipped within its length, not done here). ``unroll`` is ignored: the loop
is cuDNN's. JAX calls a ROCm GPU "gpu" too, where MIOpen orders the gates differently (jax's own
tests apply ``rnn.swap_lstm_gates`` there): not handled, and untested.

Precision: a float32 cuDNN LSTM may use TF32 tensor cores (Ampere and later), as XLA's float32
matmuls on a GPU do by default. Under ``jax.default_matmul_precision("float32")`` (or
``"highest"``) TF32 is off in cuDNN as in XLA, which exact comparisons with the other engines
need (:data:`FULL_FLOAT32_PRECISIONS` lists the values that turn it off). A precision cuDNN lacks
(``"bfloat16"``, ``"default"``, for which ``rnn.lstm`` would raise) gets TF32, the fastest it has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import rnn
from jax.experimental.layout import Layout, with_layout_constraint

from lstmjax.cells import LSTM, LSTMState
from lstmjax.convert import lstm_to_cudnn
from lstmjax.engines.loop import valid_steps

Array = jax.Array

FULL_FLOAT32_PRECISIONS = frozenset({
    "highest", "float32", "F32_F32_F32", "TF32_TF32_F32_X3", "BF16_BF16_F32_X6",
    "BF16_BF16_F32_X9"})
"""Values of ``jax_default_matmul_precision`` for which cuDNN runs without TF32."""


def supports(cell: Any, *, backend: str, lengths: bool, reverse: bool,
             resets: bool) -> str | None:
    """None if this engine runs ``cell`` with these options on ``backend``, else the reason."""
    del lengths  # supported
    if backend != "gpu":
        return f"cuDNN needs an NVIDIA GPU, the JAX backend is {backend!r}"
    if (why_not := _cell_reason(cell)) is not None:
        return why_not
    if reverse:
        return ("reverse is not wired to cuDNN (each sequence would need flipping within its "
                "length)")
    if resets:
        return "resets: cuDNN cannot zero the carry in the middle of a sequence"
    return None


def _cell_reason(cell: Any) -> str | None:
    """Why ``cell`` is not the LSTM cuDNN computes, or None if it is."""
    if not isinstance(cell, LSTM):
        return f"jax.experimental.rnn runs only lstmjax.cells.LSTM, not {type(cell).__name__}"
    extras = [name for name, on in [("use_peepholes", cell.use_peepholes),
                                    ("proj_size", cell.proj_size is not None),
                                    ("cell_clip", cell.cell_clip is not None),
                                    ("proj_clip", cell.proj_clip is not None)] if on]
    if extras:
        return f"cuDNN's LSTM has no {', '.join(extras)}"
    if jnp.dtype(cell.dtype) != jnp.float32:
        return (f"dtype {jnp.dtype(cell.dtype).name}: jax.experimental.rnn.lstm computes in "
                "float32 only (jaxlib sets CUDNN_DATA_FLOAT)")
    return None


def cudnn_weights(cell: LSTM, params: dict[str, Array]) -> Array:
    """``params`` of ``cell`` (TF1 layout) as cuDNN's flat weight vector, float32.

    Pure and differentiable: the gradient of a loss with respect to the flat vector flows back
    to ``kernel`` and ``bias``. The layout mapping is in the module docstring; the code is
    :func:`lstmjax.convert.lstm_to_cudnn`, the one copy of cuDNN's layout.

    Args:
      cell: a :class:`lstmjax.cells.LSTM` without peepholes, projection or clipping.
      params: ``kernel: [I + H, 4H]`` (gate columns i, j, f, o), ``bias: [4H]``.

    Returns:
      ``float32[4H * I + 4H * H + 8H]``: ``(W_ih, W_hh, b_ih, b_hh)`` flattened, gate rows
      i, f, g, o, as ``jax.experimental.rnn.unpack_lstm_weights`` reads it.
    """
    if (why_not := _cell_reason(cell)) is not None:
        raise ValueError(f"cudnn_weights cannot convert {cell!r}: {why_not}")
    return lstm_to_cudnn([(cell, params)])


def run_layer(cell: Any, params: Any, carry: Any, xs: Array, *, lengths: Array | None,
              reverse: bool, resets: Array | None, noise: Any, unroll: int,
              lstm: Callable[..., tuple[Array, Array, Array]] = rnn.lstm) -> tuple[Any, Array]:
    """One LSTM layer over ``xs: [T, B, I]`` (time-major); ``(LSTMState(c, h), ys: [T, B, H])``.

    Arguments as :func:`lstmjax.engines.run_layer`, checked by it; ``unroll`` is ignored.
    ``lstm`` is the call that runs the layer, ``jax.experimental.rnn.lstm`` (GPU only); any
    function with its signature and semantics will do, such as one over
    ``jax.experimental.rnn.lstm_ref``, which runs on every backend (the CPU tests use it).

    Raises:
      ValueError: a cell or option this engine does not run (see :func:`supports`);
        :func:`lstmjax.engines.run_layer` falls back to "fused" instead of calling it so.
    """
    del unroll, noise  # an LSTM draws no noise; a regularizer cell is not an LSTM
    why_not = supports(cell, backend="gpu", lengths=lengths is not None, reverse=reverse,
                       resets=resets is not None)
    if why_not is not None:
        raise ValueError(f"engine cudnn cannot run {cell!r}: {why_not}; call "
                         "lstmjax.run_layer, which falls back to another engine")
    num_steps, batch_size, input_size = xs.shape
    xs = xs.astype(jnp.float32)
    valid = valid_steps(lengths, num_steps)  # [T, B] or None
    if valid is None:
        seq_lengths = jnp.full((batch_size,), num_steps, jnp.int32)
    else:
        seq_lengths = jnp.clip(lengths.astype(jnp.int32), 1, num_steps)
        xs = jnp.where(valid[:, :, None], xs, jnp.zeros_like(xs))
    precision = ("highest" if jax.config.jax_default_matmul_precision in FULL_FLOAT32_PRECISIONS
                 else "tensorfloat32")
    ys, h_n, c_n = _row_major(lstm(
        *_row_major((jnp.swapaxes(xs, 0, 1),  # [B, T, I]
                     carry.h[None],  # [1, B, H]: one layer, one direction
                     carry.c[None])),
        cudnn_weights(cell, params),
        seq_lengths,
        input_size=input_size, hidden_size=cell.hidden_size, num_layers=1, dropout=0.0,
        bidirectional=False, precision=precision))
    ys = jnp.swapaxes(ys, 0, 1)  # [T, B, H]
    final = LSTMState(c=c_n[0], h=h_n[0])
    if valid is not None:
        ys = jnp.where(valid[:, :, None], ys, jnp.zeros_like(ys))
        started = (lengths > 0)[:, None]  # [B, 1]
        final = LSTMState(c=jnp.where(started, final.c, carry.c),
                          h=jnp.where(started, final.h, carry.h))
    return final, ys.astype(cell.dtype)


def _row_major(arrays: tuple[Array, ...]) -> tuple[Array, ...]:
    """``arrays`` laid out row-major in memory (and so their cotangents).

    jaxlib's cuDNN custom calls read and write row-major buffers but do not tell XLA so (jaxlib
    0.10.2 and 0.11.2 give them no operand or result layouts), and under ``jit`` XLA then turns a
    transpose next to the call into a layout change: a ``swapaxes`` before it handed cuDNN
    time-major data as batch-major (seen on an H200, with wrong outputs and gradients; eager calls
    were right).
    """
    return tuple(with_layout_constraint(a, Layout(tuple(range(a.ndim)))) for a in arrays)
