"""Recurrent cells: a parameter initializer and one pure step function each.

A cell is a frozen dataclass of hyper-parameters with three methods:

* ``init(key, input_size) -> params``: a dict of arrays in the layout documented on the class;
* ``step(params, carry, x) -> (carry, y)``: one time step for a batch, ``x: float[B, I]``;
* ``zero_carry(batch_size) -> carry``: the all-zero state.

The math of each cell is a module-level function (``lstm_step``, ``gru_step``, ``simple_rnn_step``,
``layer_norm_lstm_step``) that works on plain arrays, so it can be tested, jitted, differentiated and
vmapped without any framework. ``step`` only checks shapes (at trace time), casts to the compute
dtype and calls it. The loop over time is elsewhere (:func:`lstmjax.engines.run`).

Layouts follow TensorFlow 1 (``tf.nn.rnn_cell``): every kernel takes the concatenation ``[x, h]``
(input rows first, then recurrent rows) and fused gates are split along the last axis. Converters from
other layouts live in :mod:`lstmjax.convert`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax._checks import require_positive_int

Array = jax.Array
Params = dict[str, Array]
Initializer = Callable[[Array, tuple[int, ...], Any], Array]


class LSTMState(NamedTuple):
    """Carry of the LSTM cells: memory cell ``c: float[B, H]`` and output ``h: float[B, P]``.

    ``P`` is the projection size when the LSTM projects its output, else ``H``. The field order
    (c, h) is TensorFlow's ``LSTMStateTuple`` order.
    """

    c: Array
    h: Array


# ---------------------------------------------------------------------------------------------
# The math: pure functions on arrays.
# ---------------------------------------------------------------------------------------------


def lstm_step(
    params: Mapping[str, Array],
    carry: LSTMState,
    x: Array,
    *,
    forget_bias: float,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
) -> tuple[LSTMState, Array]:
    """One LSTM step, TF1 ``LSTMCell`` / ``BasicLSTMCell`` equations.

    With ``[i, j, f, o] = [x, h] @ kernel + bias`` (gate order i, j, f, o; ``j`` is the candidate)::

        c' = sigmoid(f + forget_bias + p_f * c) * c + sigmoid(i + p_i * c) * tanh(j)
        c' = clip(c', -cell_clip, cell_clip)                  # if cell_clip
        m  = sigmoid(o + p_o * c') * tanh(c')
        h' = clip(m @ proj_kernel, -proj_clip, proj_clip)     # if projected, else h' = m

    The peephole terms ``p_* * c`` are present only if ``params`` holds ``peephole_i``,
    ``peephole_f`` and ``peephole_o`` (Gers & Schmidhuber 2000; Sak et al. 2014 for projection).

    Args:
      params: ``kernel: [I + P, 4H]``, ``bias: [4H]``; optional ``peephole_i/f/o: [H]`` and
        ``proj_kernel: [H, P]``.
      carry: ``LSTMState(c: [B, H], h: [B, P])``.
      x: ``[B, I]``.
      forget_bias: added to the forget pre-activation, not stored (TF: 1.0 by default).
      cell_clip, proj_clip: optional clipping of ``c'`` and of the projected output.

    Returns:
      ``(LSTMState(c', h'), h')`` with ``c': [B, H]``, ``h': [B, P]``.
    """
    c, h = carry
    gates = jnp.concatenate([x, h], axis=-1) @ params["kernel"] + params["bias"][None]  # [B, 4H]
    i, j, f, o = jnp.split(gates, 4, axis=-1)
    peepholes = "peephole_i" in params
    if peepholes:
        i = i + params["peephole_i"][None] * c
        f = f + params["peephole_f"][None] * c
    new_c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
    if cell_clip is not None:
        new_c = jnp.clip(new_c, -cell_clip, cell_clip)
    if peepholes:
        o = o + params["peephole_o"][None] * new_c
    new_h = jax.nn.sigmoid(o) * jnp.tanh(new_c)
    if "proj_kernel" in params:
        new_h = new_h @ params["proj_kernel"]  # [B, P]
        if proj_clip is not None:
            new_h = jnp.clip(new_h, -proj_clip, proj_clip)
    return LSTMState(new_c, new_h), new_h


def gru_step(
    params: Mapping[str, Array], h: Array, x: Array, *, reset_after: bool
) -> tuple[Array, Array]:
    """One GRU step (Cho et al. 2014), in the TF1 or the cuDNN/PyTorch form.

    With ``[r, u] = sigmoid([x, h] @ gate_kernel + gate_bias)`` (gate order r, u) and the candidate
    kernel split by rows into ``W_x = candidate_kernel[:I]`` and ``W_h = candidate_kernel[I:]``::

        reset_after=False (TF1 GRUCell):   n = tanh([x, r * h] @ candidate_kernel + candidate_bias)
        reset_after=True  (cuDNN, torch):  n = tanh(x @ W_x + candidate_bias
                                                    + r * (h @ W_h + candidate_recurrent_bias))
        h' = u * h + (1 - u) * n

    Args:
      params: ``gate_kernel: [I + H, 2H]``, ``gate_bias: [2H]``, ``candidate_kernel: [I + H, H]``,
        ``candidate_bias: [H]``, and with ``reset_after`` also ``candidate_recurrent_bias: [H]``.
      h: ``[B, H]``.
      x: ``[B, I]``.
      reset_after: where the reset gate applies (see above).

    Returns:
      ``(h', h')``, each ``[B, H]``.
    """
    gates = jax.nn.sigmoid(
        jnp.concatenate([x, h], axis=-1) @ params["gate_kernel"] + params["gate_bias"][None]
    )  # [B, 2H]
    r, u = jnp.split(gates, 2, axis=-1)
    kernel = params["candidate_kernel"]
    if reset_after:
        input_size = x.shape[-1]
        recurrent = h @ kernel[input_size:] + params["candidate_recurrent_bias"][None]
        candidate = jnp.tanh(x @ kernel[:input_size] + params["candidate_bias"][None] + r * recurrent)
    else:
        candidate = jnp.tanh(
            jnp.concatenate([x, r * h], axis=-1) @ kernel + params["candidate_bias"][None]
        )
    new_h = u * h + (1 - u) * candidate
    return new_h, new_h


def simple_rnn_step(params: Mapping[str, Array], h: Array, x: Array) -> tuple[Array, Array]:
    """One step of the Elman RNN, TF1 ``BasicRNNCell``: ``h' = tanh([x, h] @ kernel + bias)``.

    Args:
      params: ``kernel: [I + H, H]``, ``bias: [H]``.
      h: ``[B, H]``.
      x: ``[B, I]``.

    Returns:
      ``(h', h')``, each ``[B, H]``.
    """
    new_h = jnp.tanh(jnp.concatenate([x, h], axis=-1) @ params["kernel"] + params["bias"][None])
    return new_h, new_h


def layer_norm(x: Array, scale: Array, shift: Array, *, epsilon: float) -> Array:
    """Layer normalization over the last axis: ``(x - mean) / sqrt(var + epsilon) * scale + shift``.

    ``scale`` and ``shift`` must have the rank of ``x`` (explicit broadcasting).

    ``var`` is the biased variance (``tf.nn.moments``). Ba, Kiros & Hinton 2016.
    """
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(variance + epsilon) * scale + shift


def layer_norm_lstm_step(
    params: Mapping[str, Array],
    carry: LSTMState,
    x: Array,
    *,
    forget_bias: float,
    epsilon: float,
) -> tuple[LSTMState, Array]:
    """One step of the layer-normalized LSTM of r2rt's "Recurrent Neural Networks in Tensorflow II".

    With ``[i, j, f, o] = [x, h] @ kernel`` (no bias; gate order i, j, f, o) and ``LN_g`` a layer
    norm with gate g's own scale and shift::

        c' = c * sigmoid(LN_f(f) + forget_bias) + sigmoid(LN_i(i)) * tanh(LN_j(j))
        h' = tanh(LN_c(c')) * sigmoid(LN_o(o))          # tanh(c') if params has no cell_scale

    The stored carry is the un-normalized ``c'``.

    Args:
      params: ``kernel: [I + H, 4H]``, ``gate_scale: [4H]``, ``gate_shift: [4H]`` (per-gate scale
        and shift, in gate order) and optionally ``cell_scale: [H]``, ``cell_shift: [H]``.
      carry: ``LSTMState(c: [B, H], h: [B, H])``.
      x: ``[B, I]``.
      forget_bias: added to the normalized forget pre-activation.
      epsilon: added to the variance.

    Returns:
      ``(LSTMState(c', h'), h')``, each ``[B, H]``.
    """
    c, h = carry
    hidden = c.shape[-1]
    gates = jnp.concatenate([x, h], axis=-1) @ params["kernel"]  # [B, 4H]
    gates = gates.reshape(*gates.shape[:-1], 4, hidden)  # [B, 4, H]
    gates = layer_norm(
        gates,
        params["gate_scale"].reshape(1, 4, hidden),
        params["gate_shift"].reshape(1, 4, hidden),
        epsilon=epsilon,
    )
    i, j, f, o = (gates[..., k, :] for k in range(4))
    new_c = c * jax.nn.sigmoid(f + forget_bias) + jax.nn.sigmoid(i) * jnp.tanh(j)
    memory = new_c
    if "cell_scale" in params:
        memory = layer_norm(
            new_c, params["cell_scale"][None], params["cell_shift"][None], epsilon=epsilon
        )
    new_h = jnp.tanh(memory) * jax.nn.sigmoid(o)
    return LSTMState(new_c, new_h), new_h


# ---------------------------------------------------------------------------------------------
# The cells: hyper-parameters, parameter layout, checks.
# ---------------------------------------------------------------------------------------------


def _check_params(cell: Any, params: Mapping[str, Array], shapes: Mapping[str, tuple]) -> None:
    """Raise a ValueError unless ``params`` has exactly the keys and shapes ``shapes`` lists."""
    if not isinstance(params, Mapping) or set(params) != set(shapes):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(
            f"params for {cell!r} must have keys {sorted(shapes)}, got {got}; make them with "
            "cell.init(key, input_size) or a lstmjax.convert function, and check the cell's "
            "options (use_peepholes, proj_size, reset_after, layer_norm_cell) match the weights"
        )
    for key, shape in shapes.items():
        if tuple(params[key].shape) != tuple(shape):
            raise ValueError(
                f"params[{key!r}] for {cell!r} must have shape {tuple(shape)}, "
                f"got {tuple(params[key].shape)}"
            )


def _prepare(cell: Any, params: Mapping[str, Array], carry: Any, x: Array) -> tuple[Any, ...]:
    """Check a step's arguments (at trace time) and cast them to the cell's compute dtype.

    ``x`` must be ``[B, I]``, ``carry`` shaped like ``cell.zero_carry(B)`` and ``params`` shaped like
    ``cell.param_shapes(I)``; a mismatch raises a ValueError that names the argument.
    """
    if jnp.ndim(x) != 2:
        raise ValueError(
            f"x for {cell!r} must have rank 2 [batch, input_size], got shape {jnp.shape(x)}"
        )
    template = jax.eval_shape(functools.partial(cell.zero_carry, x.shape[0]))
    got = jax.tree.map(jnp.shape, carry)
    want = jax.tree.map(lambda a: a.shape, template)
    if jax.tree.structure(carry) != jax.tree.structure(template) or got != want:
        raise ValueError(
            f"carry for {cell!r} must be shaped like cell.zero_carry({x.shape[0]}) = {want}, "
            f"got {got}"
        )
    _check_params(cell, params, cell.param_shapes(x.shape[-1]))
    return tuple(
        jax.tree.map(lambda a: jnp.asarray(a, cell.dtype), tree) for tree in (params, carry, x)
    )


@dataclasses.dataclass(frozen=True)
class _Cell:
    """Fields and methods every cell shares. ``kernel_init``, ``param_dtype`` and ``dtype`` are
    keyword-only, after each cell's own fields."""

    hidden_size: int
    kernel_init: Initializer | None = dataclasses.field(default=None, kw_only=True)
    param_dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)
    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)

    def __post_init__(self):
        require_positive_int("hidden_size", self.hidden_size)

    @property
    def output_size(self) -> int:
        """Features of the output ``y``."""
        return self.hidden_size

    def _kernel(self, key: Array, shape: tuple[int, ...]) -> Array:
        """A kernel from ``kernel_init`` (Glorot uniform, TF1's default, if None)."""
        init = self.kernel_init or jax.nn.initializers.glorot_uniform()
        return init(key, shape, self.param_dtype)


@dataclasses.dataclass(frozen=True)
class LSTM(_Cell):
    """Long short-term memory cell (Hochreiter & Schmidhuber 1997, with a forget gate).

    Equations in :func:`lstm_step`. Parameter layout (TF1 ``LSTMCell``; ``P = proj_size or H``):
    ``kernel: [I + P, 4H]`` with gate columns i, j, f, o (input gate, candidate, forget gate,
    output gate), ``bias: [4H]``; with ``use_peepholes``: ``peephole_i``, ``peephole_f``,
    ``peephole_o: [H]``; with ``proj_size``: ``proj_kernel: [H, P]``.

    Attributes:
      hidden_size: H, units of the memory cell.
      forget_bias: added to the forget gate's pre-activation. TF1's ``BasicLSTMCell`` and
        ``LSTMCell`` default to 1.0 (the default here); the PTB recipe uses 0.0; PyTorch weights
        need 0.0.
      use_peepholes: diagonal peephole connections (TF1 ``LSTMCell(use_peepholes=True)``).
      proj_size: P, project the output h to P units (TF1 ``num_proj``, torch ``proj_size``).
      cell_clip, proj_clip: TF1 ``LSTMCell`` clipping of c and of the projected output.
      kernel_init: initializer of the kernels (default Glorot uniform, TF1's) and, if given, of
        the peepholes.
      param_dtype: dtype of the parameters ``init`` makes.
      dtype: compute dtype of ``step`` and of the carry.
    """

    forget_bias: float = 1.0
    use_peepholes: bool = False
    proj_size: int | None = None
    cell_clip: float | None = None
    proj_clip: float | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.proj_size is not None:
            require_positive_int("proj_size", self.proj_size)

    @property
    def output_size(self) -> int:
        """Features of ``y`` and of ``carry.h``: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters for inputs of ``input_size`` features."""
        hidden = self.hidden_size
        shapes = {"kernel": (input_size + self.output_size, 4 * hidden), "bias": (4 * hidden,)}
        if self.use_peepholes:
            shapes.update(peephole_i=(hidden,), peephole_f=(hidden,), peephole_o=(hidden,))
        if self.proj_size is not None:
            shapes["proj_kernel"] = (hidden, self.proj_size)
        return shapes

    def init(self, key: Array, input_size: int) -> Params:
        """Kernels from ``kernel_init``; bias zeros; peepholes from ``kernel_init`` if one is
        given, else zeros (Glorot's fans are undefined for vectors)."""
        require_positive_int("input_size", input_size)
        shapes = self.param_shapes(input_size)
        keys = dict(zip(shapes, jax.random.split(key, len(shapes)), strict=True))
        params = {}
        for name, shape in shapes.items():
            is_peephole = name.startswith("peephole")
            if name in ("kernel", "proj_kernel") or (is_peephole and self.kernel_init):
                params[name] = self._kernel(keys[name], shape)
            else:
                params[name] = jnp.zeros(shape, self.param_dtype)
        return params

    def zero_carry(self, batch_size: int) -> LSTMState:
        """``LSTMState(c: zeros[B, H], h: zeros[B, P])`` in the compute dtype."""
        return LSTMState(
            jnp.zeros((batch_size, self.hidden_size), self.dtype),
            jnp.zeros((batch_size, self.output_size), self.dtype),
        )

    def step(self, params: Params, carry: LSTMState, x: Array) -> tuple[LSTMState, Array]:
        """One step; see :func:`lstm_step`. ``x: [B, I]`` -> ``(LSTMState, y: [B, P])``."""
        params, carry, x = _prepare(self, params, carry, x)
        return lstm_step(
            params,
            LSTMState(*carry),
            x,
            forget_bias=self.forget_bias,
            cell_clip=self.cell_clip,
            proj_clip=self.proj_clip,
        )


@dataclasses.dataclass(frozen=True)
class GRU(_Cell):
    """Gated recurrent unit (Cho et al. 2014). Equations in :func:`gru_step`.

    Parameter layout: ``gate_kernel: [I + H, 2H]`` with gate columns r, u (reset, update),
    ``gate_bias: [2H]`` (initialized to 1.0 as TF1's ``GRUCell``), ``candidate_kernel: [I + H, H]``,
    ``candidate_bias: [H]``, and with ``reset_after`` also ``candidate_recurrent_bias: [H]``.

    Attributes:
      hidden_size: H.
      reset_after: False (default) is TF1 ``GRUCell``: the reset gate multiplies h before the
        candidate matmul. True is the cuDNN / PyTorch / flax form: it multiplies the recurrent
        matmul's result.
      kernel_init, param_dtype, dtype: as for :class:`LSTM`.
    """

    reset_after: bool = False

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        hidden = self.hidden_size
        shapes = {
            "gate_kernel": (input_size + hidden, 2 * hidden),
            "gate_bias": (2 * hidden,),
            "candidate_kernel": (input_size + hidden, hidden),
            "candidate_bias": (hidden,),
        }
        if self.reset_after:
            shapes["candidate_recurrent_bias"] = (hidden,)
        return shapes

    def init(self, key: Array, input_size: int) -> Params:
        """Kernels from ``kernel_init``, gate bias 1.0 (TF1), candidate biases 0."""
        require_positive_int("input_size", input_size)
        shapes = self.param_shapes(input_size)
        gate_key, candidate_key = jax.random.split(key)
        params = {name: jnp.zeros(shape, self.param_dtype) for name, shape in shapes.items()}
        params["gate_kernel"] = self._kernel(gate_key, shapes["gate_kernel"])
        params["gate_bias"] = jnp.ones(shapes["gate_bias"], self.param_dtype)
        params["candidate_kernel"] = self._kernel(candidate_key, shapes["candidate_kernel"])
        return params

    def zero_carry(self, batch_size: int) -> Array:
        """``zeros[B, H]`` in the compute dtype."""
        return jnp.zeros((batch_size, self.hidden_size), self.dtype)

    def step(self, params: Params, carry: Array, x: Array) -> tuple[Array, Array]:
        """One step; see :func:`gru_step`. ``x: [B, I]`` -> ``(h: [B, H], y: [B, H])``."""
        params, carry, x = _prepare(self, params, carry, x)
        return gru_step(params, carry, x, reset_after=self.reset_after)


@dataclasses.dataclass(frozen=True)
class SimpleRNN(_Cell):
    """Elman RNN, ``h' = tanh([x, h] @ kernel + bias)`` (TF1 ``BasicRNNCell``, torch ``nn.RNN``).

    Parameter layout: ``kernel: [I + H, H]``, ``bias: [H]``.

    Attributes:
      hidden_size: H.
      kernel_init, param_dtype, dtype: as for :class:`LSTM`.
    """

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        return {"kernel": (input_size + self.hidden_size, self.hidden_size),
                "bias": (self.hidden_size,)}

    def init(self, key: Array, input_size: int) -> Params:
        """Kernel from ``kernel_init``, bias zeros."""
        require_positive_int("input_size", input_size)
        shapes = self.param_shapes(input_size)
        return {
            "kernel": self._kernel(key, shapes["kernel"]),
            "bias": jnp.zeros(shapes["bias"], self.param_dtype),
        }

    def zero_carry(self, batch_size: int) -> Array:
        """``zeros[B, H]`` in the compute dtype."""
        return jnp.zeros((batch_size, self.hidden_size), self.dtype)

    def step(self, params: Params, carry: Array, x: Array) -> tuple[Array, Array]:
        """One step; see :func:`simple_rnn_step`. ``x: [B, I]`` -> ``(h: [B, H], y: [B, H])``."""
        params, carry, x = _prepare(self, params, carry, x)
        return simple_rnn_step(params, carry, x)


@dataclasses.dataclass(frozen=True)
class LayerNormLSTM(_Cell):
    """Layer-normalized LSTM (Ba et al. 2016), in the form of r2rt's TensorFlow tutorial cell.

    Equations in :func:`layer_norm_lstm_step`. Parameter layout: ``kernel: [I + H, 4H]`` (gate
    columns i, j, f, o; no bias: the layer-norm shift plays its role), ``gate_scale: [4H]`` (ones)
    and ``gate_shift: [4H]`` (zeros), one H-slice per gate in gate order; with ``layer_norm_cell``
    also ``cell_scale: [H]``, ``cell_shift: [H]``.

    Attributes:
      hidden_size: H.
      forget_bias: added to the forget gate after its layer norm (default 1.0, as the tutorial).
      layer_norm_cell: layer-normalize the new cell state before the output tanh (default True,
        as the tutorial's cell; the carried c stays un-normalized).
      epsilon: added to the variance in each layer norm (1e-5 in the tutorial).
      kernel_init, param_dtype, dtype: as for :class:`LSTM`.
    """

    forget_bias: float = 1.0
    layer_norm_cell: bool = True
    epsilon: float = 1e-5

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        hidden = self.hidden_size
        shapes = {
            "kernel": (input_size + hidden, 4 * hidden),
            "gate_scale": (4 * hidden,),
            "gate_shift": (4 * hidden,),
        }
        if self.layer_norm_cell:
            shapes.update(cell_scale=(hidden,), cell_shift=(hidden,))
        return shapes

    def init(self, key: Array, input_size: int) -> Params:
        """Kernel from ``kernel_init``, scales ones, shifts zeros."""
        require_positive_int("input_size", input_size)
        shapes = self.param_shapes(input_size)
        params = {
            name: (jnp.ones if name.endswith("scale") else jnp.zeros)(shape, self.param_dtype)
            for name, shape in shapes.items()
        }
        params["kernel"] = self._kernel(key, shapes["kernel"])
        return params

    def zero_carry(self, batch_size: int) -> LSTMState:
        """``LSTMState(c: zeros[B, H], h: zeros[B, H])`` in the compute dtype."""
        zeros = jnp.zeros((batch_size, self.hidden_size), self.dtype)
        return LSTMState(zeros, zeros)

    def step(self, params: Params, carry: LSTMState, x: Array) -> tuple[LSTMState, Array]:
        """One step; see :func:`layer_norm_lstm_step`. ``x: [B, I]`` -> ``(LSTMState, y: [B, H])``."""
        params, carry, x = _prepare(self, params, carry, x)
        return layer_norm_lstm_step(
            params, LSTMState(*carry), x, forget_bias=self.forget_bias, epsilon=self.epsilon
        )


Cell = LSTM | GRU | SimpleRNN | LayerNormLSTM
