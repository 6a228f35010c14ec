"""What the formats share: the :data:`Layer` every importer returns, :func:`as_array`, shape
checks, and the one mapping between lstmjax's fused layout and the split layout of torch, cuDNN,
flax and Equinox (an input kernel ``[I, G]``, a recurrent kernel ``[H, G]`` and biases, gates
i, f, g, o for an LSTM and r, z, n for a GRU)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.cells import GRU, LSTM, LayerCell

Params = dict[str, jax.Array]
Layer = tuple[LayerCell, Params]
"""``(cell, params)``: one layer, what every importer returns."""


def as_array(value: Any) -> jax.Array:
    """A JAX array from a NumPy or JAX array or a torch tensor."""
    if hasattr(value, "detach"):
        value = np.asarray(value.detach().cpu().numpy())
    return jnp.asarray(value)


def require_shape(ok: bool, name: str, layout: str, value: jax.Array) -> None:
    """A ValueError naming ``name``, its expected ``layout`` and its shape, unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be shaped {layout}, got {list(value.shape)}")


def split_rows(kernel: jax.Array, recurrent_rows: int) -> tuple[jax.Array, jax.Array]:
    """``(input rows, recurrent rows)`` of a TF-layout kernel ``[I + R, G]``."""
    inputs = kernel.shape[0] - recurrent_rows
    return kernel[:inputs], kernel[inputs:]


def no_extras(cell: LSTM, params: Params, target: str, *, projection: bool = False) -> None:
    """A ValueError if the LSTM has what ``target`` lacks: peepholes, clipping, and a projection
    unless ``projection``."""
    extras = [name for name, on in (("peepholes", "peephole_i" in params),
                                    ("cell_clip", cell.cell_clip is not None),
                                    ("proj_clip", cell.proj_clip is not None),
                                    ("proj_size", "proj_kernel" in params and not projection))
              if on]
    if extras:
        raise ValueError(f"{target}'s LSTM has no {', '.join(extras)}: {cell!r} has no {target} "
                         "form")


def lstm_from_split(input_kernel: jax.Array, recurrent_kernel: jax.Array, bias: jax.Array, *,
                    proj_kernel: jax.Array | None = None) -> tuple[LSTM, Params]:
    """``(LSTM(H, forget_bias=0.0, proj_size=P), params)`` of ``input_kernel [I, 4H]``,
    ``recurrent_kernel [P, 4H]`` and ``bias [4H]`` (gates i, f, g, o; g is lstmjax's j), and
    ``proj_kernel [H, P]`` if given."""
    kernel = jnp.concatenate([input_kernel, recurrent_kernel])  # [I + P, 4H]
    params = {"kernel": _reorder(kernel, "ifgo", "igfo"), "bias": _reorder(bias, "ifgo", "igfo")}
    if proj_kernel is not None:
        params["proj_kernel"] = proj_kernel
    proj_size = None if proj_kernel is None else proj_kernel.shape[1]
    return LSTM(bias.shape[0] // 4, forget_bias=0.0, proj_size=proj_size), params


def lstm_to_split(cell: LSTM, params: Params) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(input_kernel [I, 4H], recurrent_kernel [P, 4H], bias [4H])``, gates i, f, g, o, of an
    LSTM; ``cell.forget_bias`` is added to the forget gate's bias (these formats have no such
    constant)."""
    input_kernel, recurrent_kernel = split_rows(_reorder(params["kernel"], "igfo", "ifgo"),
                                                cell.output_size)
    bias = params["bias"]
    if cell.forget_bias:
        i, j, f, o = jnp.split(bias, 4)
        bias = jnp.concatenate([i, j, f + jnp.asarray(cell.forget_bias, f.dtype), o])
    return input_kernel, recurrent_kernel, _reorder(bias, "igfo", "ifgo")


def gru_from_split(input_kernel: jax.Array, recurrent_kernel: jax.Array, input_bias: jax.Array,
                   recurrent_bias: jax.Array) -> tuple[GRU, Params]:
    """``(GRU(H, reset_after=True), params)`` of ``input_kernel [I, 3H]``, ``recurrent_kernel
    [H, 3H]``, ``input_bias [3H]`` and ``recurrent_bias [3H]`` (gates r, z, n; z is lstmjax's
    u). The recurrent candidate bias, inside the reset product, is the
    ``candidate_recurrent_bias``; the others are summed."""
    hidden = recurrent_kernel.shape[0]
    gates, candidate = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
    return GRU(hidden, reset_after=True), {
        "gate_kernel": jnp.concatenate([input_kernel[:, gates], recurrent_kernel[:, gates]]),
        "gate_bias": input_bias[gates] + recurrent_bias[gates],
        "candidate_kernel": jnp.concatenate([input_kernel[:, candidate],
                                             recurrent_kernel[:, candidate]]),
        "candidate_bias": input_bias[candidate],
        "candidate_recurrent_bias": recurrent_bias[candidate],
    }


def gru_to_split(cell: GRU, params: Params, target: str
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(input_kernel [I, 3H], recurrent_kernel [H, 3H], input_bias [3H], recurrent_bias
    [3H])``, gates r, z, n, of a ``GRU(H, reset_after=True)``: the summed gate bias on the
    input side, zeros beside the candidate's recurrent bias. TF1's ``reset_after=False`` is an
    error naming ``target``."""
    if not cell.reset_after:
        raise ValueError(f"{target} resets after the recurrent matmul: {cell!r} (TF1's "
                         f"reset_after=False) has no {target} form")
    kernel = jnp.concatenate([params["gate_kernel"], params["candidate_kernel"]], axis=1)
    input_kernel, recurrent_kernel = split_rows(kernel, cell.hidden_size)
    gate_bias = params["gate_bias"]
    return (input_kernel, recurrent_kernel,
            jnp.concatenate([gate_bias, params["candidate_bias"]]),
            jnp.concatenate([jnp.zeros_like(gate_bias), params["candidate_recurrent_bias"]]))


def _reorder(a: jax.Array, source: str, target: str) -> jax.Array:
    """The last axis's equal blocks reordered from the gate names in ``source`` to ``target``:
    ``_reorder(a, "ifgo", "igfo")`` takes torch's/cuDNN's/flax's i, f, g, o to lstmjax's i, j=g,
    f, o."""
    blocks = dict(zip(source, jnp.split(a, len(source), axis=-1), strict=True))
    return jnp.concatenate([blocks[g] for g in target], axis=-1)
