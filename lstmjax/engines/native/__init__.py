"""Engine "native": a recurrent layer's whole loop over time in one XLA FFI call on the CPU.

The algorithm is the fused engine's (:mod:`lstmjax.engines.fused`), with the loop moved out of
XLA: XLA:CPU runs each step of a ``lax.scan`` as a series of thunks (a dot, small fusions split
over its thread pool, waits), about 100-250 µs a step whatever the step's work
(``benchmarks/NOTES.md``). Here the loop is C++ (``recurrence.cc`` beside this file):

* forward: XLA computes the input projection ``x_proj = xs @ W_x`` of all T steps as one matmul,
  then one custom call runs the T steps: per step one GEMM (two for the TF1 GRU) adds
  ``h @ W_h`` into the gate buffer (``x_proj``'s own buffer, aliased), and one vectorized pass
  does the gate math and writes the activations over the pre-activations;
* backward (a ``jax.custom_vjp``): one custom call runs the T steps in reverse, turning the saved
  activations into the gates' pre-activation cotangents in place, with one GEMM per step (two
  for the TF1 GRU) for the previous state's cotangent; after it, XLA computes ``dW_h``,
  ``dW_x``, the biases and ``dxs`` as one matmul or sum each over the ``T * B`` rows.

Saved for the backward pass: the activations ``[T * B, G]`` (in ``x_proj``'s buffer), the
recurrent matmul's operand per step ``[T, B, H]`` and one more ``[T, B, H]`` array per cell (the
LSTM's cell state entering each step; the cuDNN-form GRU's ``h @ W_hn + b_hn``; the TF1 GRU's
``r * h``).

Runs :class:`lstmjax.cells.LSTM` (``forget_bias``, ``cell_clip``; not peepholes or projection),
:class:`~lstmjax.cells.GRU` in both forms and :class:`~lstmjax.cells.SimpleRNN`, in float32 or
float64, with initial carries and their gradients, ``lengths``, ``reverse``, ``resets``,
``remat_chunk`` (around the calls) and ``jax.vmap`` (the calls run once per vmapped element),
wrapped in :class:`~lstmjax.regularizers.RecurrentDropout` (its mask is the kernel's state mask)
or :class:`~lstmjax.regularizers.WeightDrop` (the kernel gets the masked recurrent kernel).
Anything else, :class:`~lstmjax.regularizers.Zoneout` included, falls back to ``"fused"`` with
the reason (:func:`supports`).

Threads: each call splits the H units over the cores of the process (a forward LSTM step is one
parallel phase: each thread does its units' four gate columns of the recurrent product, then
their gate math), with worker threads of its own that sleep between calls; XLA's threads wait for
the call meanwhile. ``LSTMJAX_NATIVE_THREADS`` caps the threads per call. The per-step products
use the recurrent kernel packed once per call (``recurrence.cc``; ``benchmarks/NOTES.md`` has the
measurements behind both choices). The kernel is compiled when lstmjax is installed
(``setup.py``); where that failed (no C++ compiler), the engine stays listed and
:func:`supports` gives the reason.
"""

from __future__ import annotations

import ctypes
import functools
import os
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.cells import GRU, LSTM, LayerWeights, LSTMState, Noise, SimpleRNN
from lstmjax.engines.loop import valid_steps
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout

Array = jax.Array

_LSTM, _GRU, _GRU_RESET_AFTER, _RNN = range(4)  # the kernel's cell kinds (recurrence.cc: Cell)
_FORWARD, _BACKWARD = "lstmjax_recurrence_forward", "lstmjax_recurrence_backward"


class _Library(NamedTuple):
    """The loaded kernel's ``path``, or (``path`` None) the ``error`` that says why there is
    none."""

    path: pathlib.Path | None
    error: str | None


@functools.cache
def _library() -> _Library:
    """Load the compiled kernel once, set its thread cap and register its FFI targets."""
    here = pathlib.Path(__file__).parent
    built = sorted(here.glob("_recurrence*.so"))
    if not built:
        return _Library(None, "the native kernel was not built when lstmjax was installed (it "
                              "needs a C++17 compiler: install g++ and reinstall lstmjax, e.g. "
                              "pip install -e .)")
    threads = os.environ.get("LSTMJAX_NATIVE_THREADS", "0")
    if not threads.isdigit():
        raise ValueError(f"LSTMJAX_NATIVE_THREADS must be a whole number of threads (0: one per "
                         f"core), got {threads!r}")
    try:
        library = ctypes.CDLL(str(built[0]))
        library.lstmjax_native_set_threads.argtypes = [ctypes.c_int]
        library.lstmjax_native_set_threads(int(threads))
        jax.ffi.register_ffi_target(_FORWARD, jax.ffi.pycapsule(library.LstmjaxRecurrenceForward),
                                    platform="cpu")
        jax.ffi.register_ffi_target(_BACKWARD,
                                    jax.ffi.pycapsule(library.LstmjaxRecurrenceBackward),
                                    platform="cpu")
    except (OSError, AttributeError) as error:
        return _Library(None, f"the native kernel {built[0].name} failed to load: {error}")
    return _Library(built[0], None)


def available() -> str | None:
    """None if the kernel is built and loads, else the reason it does not."""
    return _library().error


def _kind(cell: Any) -> int | None:
    """The kernel's cell kind for ``cell`` (these classes exactly, not subclasses), else None."""
    if type(cell) is LSTM:
        return _LSTM
    if type(cell) is GRU:
        return _GRU_RESET_AFTER if cell.reset_after else _GRU
    if type(cell) is SimpleRNN:
        return _RNN
    return None


def supports(cell: Any, *, backend: str, **options: Any) -> str | None:
    """None if this engine runs ``cell`` on ``backend`` (every option), else the reason."""
    del options
    if backend != "cpu":
        return f"a CPU kernel, and the backend is {backend}"
    wrappers = []
    while isinstance(cell, RecurrentDropout | WeightDrop | Zoneout):
        wrappers.append(type(cell))
        cell = cell.cell
    if Zoneout in wrappers:
        return "the native kernel has no zoneout (it mixes the old and the new state per step)"
    if wrappers.count(RecurrentDropout) > 1:
        return "the native kernel takes one recurrent-dropout mask"
    if _kind(cell) is None:
        return f"no native kernel for {type(cell).__name__} (LSTM, GRU and SimpleRNN have one)"
    if isinstance(cell, LSTM) and (cell.use_peepholes or cell.proj_size is not None):
        return "the native LSTM kernel has no peepholes or projection"
    if isinstance(cell, LSTM) and cell.cell_clip is not None and not cell.cell_clip > 0:
        return f"cell_clip={cell.cell_clip} is not positive"
    if jnp.dtype(cell.dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return f"the native kernel computes in float32 or float64, not {jnp.dtype(cell.dtype)}"
    return available()


def run_layer(cell: Any, params: Any, carry: Any, xs: Array, *, lengths: Array | None,
              reverse: bool, resets: Array | None, noise: Noise | None,
              unroll: int) -> tuple[Any, Array]:
    """One layer over ``xs: [T, B, I]`` (time-major); ``(final_carry, ys: [T, B, H])``.

    Arguments as :func:`lstmjax.engines.run_layer`, checked by it; ``unroll`` has no meaning
    here.
    """
    del unroll
    _library()  # registers the FFI targets before the first call is traced
    weights = cell.cast_weights(cell.layer_weights(params, noise))  # weight drop's masks in
    state_mask = None
    while isinstance(cell, RecurrentDropout | WeightDrop):
        own, noise = cell.parts(noise)
        if isinstance(cell, RecurrentDropout) and own is not None:
            state_mask = own.window
        cell = cell.cell
    valid = valid_steps(lengths, xs.shape[0])
    return _native(cell, reverse, weights, carry, xs, _or_empty(valid, jnp.bool_),
                   _or_empty(resets, jnp.bool_), _or_empty(state_mask, cell.dtype))


def _or_empty(array: Array | None, dtype: Any) -> Array:
    """``array`` in ``dtype``, or the kernel's "not given": an empty array."""
    return jnp.zeros((0,), dtype) if array is None else jnp.asarray(array).astype(dtype)


def _kernels(cell: Any, weights: LayerWeights) -> tuple[Array, Array, Array]:
    """The kernel's ``w1``, ``w2`` and ``rbias`` (see recurrence.cc) in the compute dtype."""
    dtype, rec, empty = cell.dtype, weights.recurrent, jnp.zeros((0,), cell.dtype)
    if _kind(cell) == _GRU:
        return rec["gates"].astype(dtype), rec["candidate"].astype(dtype), empty
    if _kind(cell) == _GRU_RESET_AFTER:
        return (rec["hidden"].astype(dtype), empty,
                weights.other["candidate_recurrent_bias"].astype(dtype))
    return rec["kernel"].astype(dtype), empty, empty


def _carry_parts(cell: Any, carry: Any) -> tuple[Array, Array]:
    """``(h, c)``; ``c`` empty for a cell whose carry is h alone."""
    if isinstance(carry, LSTMState) or _kind(cell) == _LSTM:
        return carry[1], carry[0]
    return carry, jnp.zeros((0,), carry.dtype)


def _forward(cell, reverse, weights, carry, xs, valid, resets, mask):
    dtype = jnp.dtype(cell.dtype)
    steps, batch = xs.shape[:2]
    hidden = cell.hidden_size
    # [T * B, G]: one matmul over the T * B rows, kept 2-D (XLA copies an aliased operand that
    # reaches the call through a reshape)
    x_proj = cell.matmul(xs.reshape(steps * batch, -1), weights.input_kernel)
    w1, w2, rbias = _kernels(cell, weights)
    h0, c0 = _carry_parts(cell, carry)
    sequence = jax.ShapeDtypeStruct((steps, batch, hidden), dtype)
    state = jax.ShapeDtypeStruct((batch, hidden), dtype)
    empty = jax.ShapeDtypeStruct((0,), dtype)
    is_lstm, kind = _kind(cell) == _LSTM, _kind(cell)
    call = jax.ffi.ffi_call(
        _FORWARD,
        (jax.ShapeDtypeStruct(x_proj.shape, dtype), sequence, state, state if is_lstm else empty,
         sequence, empty if kind == _RNN else sequence),
        input_output_aliases={0: 0}, vmap_method="sequential")
    acts, ys, h, c, h_in, aux = call(
        x_proj, weights.input_bias.astype(dtype), w1, w2, rbias, h0, c0, valid, resets, mask,
        cell=np.int32(kind), reverse=np.int32(reverse),
        forget_bias=np.float64(getattr(cell, "forget_bias", 0.0)),
        cell_clip=np.float64(getattr(cell, "cell_clip", None) or -1.0))
    final = LSTMState(c, h) if is_lstm else h
    return (final, ys), (weights, xs, acts, h_in, aux, valid, resets, mask)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _native(cell, reverse, weights, carry, xs, valid, resets, mask):
    """The layer; differentiated through _forward/_backward."""
    return _forward(cell, reverse, weights, carry, xs, valid, resets, mask)[0]


def _backward(cell, reverse, residuals, cotangents):
    weights, xs, acts, h_in, aux, valid, resets, mask = residuals
    d_final, d_ys = cotangents
    dtype, kind = jnp.dtype(cell.dtype), _kind(cell)
    w1, w2, _ = _kernels(cell, weights)
    d_h, d_c = _carry_parts(cell, d_final)
    state = jax.ShapeDtypeStruct(d_h.shape, dtype)
    empty = jax.ShapeDtypeStruct((0,), dtype)
    call = jax.ffi.ffi_call(
        _BACKWARD,
        (jax.ShapeDtypeStruct(acts.shape, dtype), state, state if kind == _LSTM else empty,
         jax.ShapeDtypeStruct(h_in.shape, dtype) if kind == _GRU_RESET_AFTER else empty),
        input_output_aliases={0: 0}, vmap_method="sequential")
    d_gates, d_h0, d_c0, d_hn = call(
        acts, h_in, aux, w1, w2, d_ys.astype(dtype), d_h.astype(dtype), d_c.astype(dtype),
        valid, resets, mask, cell=np.int32(kind), reverse=np.int32(reverse),
        cell_clip=np.float64(getattr(cell, "cell_clip", None) or -1.0))

    def rows(a):  # [T, B, F] (or [T * B, F]) -> [T * B, F]
        return a.reshape(-1, a.shape[-1])

    def weight_grad(lhs, d_out, like):  # lhs^T @ d_out over the T * B rows
        return cell.matmul(rows(lhs).T, rows(d_out)).astype(like.dtype)

    hidden = cell.hidden_size
    rec, other = weights.recurrent, {}
    if kind == _GRU:
        d_rec = {"gates": weight_grad(h_in, d_gates[..., :2 * hidden], rec["gates"]),
                 "candidate": weight_grad(aux, d_gates[..., 2 * hidden:], rec["candidate"])}
    elif kind == _GRU_RESET_AFTER:
        d_out = jnp.concatenate([d_gates[..., :2 * hidden], rows(d_hn)], axis=-1)
        d_rec = {"hidden": weight_grad(h_in, d_out, rec["hidden"])}
        bias = weights.other["candidate_recurrent_bias"]
        other["candidate_recurrent_bias"] = jnp.sum(rows(d_hn), axis=0).astype(bias.dtype)
    else:
        d_rec = {"kernel": weight_grad(h_in, d_gates, rec["kernel"])}
    d_gate_rows = d_gates  # [T * B, G]
    d_weights = LayerWeights(
        input_kernel=weight_grad(xs, d_gates, weights.input_kernel),
        input_bias=jnp.sum(d_gate_rows, axis=0).astype(weights.input_bias.dtype),
        recurrent=d_rec, other=other)
    d_xs = cell.matmul(d_gate_rows, weights.input_kernel.T).reshape(xs.shape).astype(xs.dtype)
    d_carry = LSTMState(d_c0, d_h0) if kind == _LSTM else d_h0
    return d_weights, d_carry, d_xs, None, None, None


_native.defvjp(_forward, _backward)
