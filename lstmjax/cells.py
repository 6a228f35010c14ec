"""Recurrent cells: a parameter layout, the gate math as one pure function each, and a registry.

A cell is a frozen dataclass of hyper-parameters that implements :class:`RecurrentCell`:

* ``init(key, input_size) -> params``: a dict of arrays in the layout documented on the class;
* ``zero_carry(batch_size) -> carry``: the all-zero state;
* ``step(params, carry, x) -> (carry, y)``: one time step for a batch, ``x: float[B, I]``;
* ``layer_weights(params) -> LayerWeights``: the split that a layer engine needs: the input rows
  of every kernel fused into one ``[I, G]`` matrix (its product with all T inputs is one matmul,
  before the loop), the recurrent kernels by name, and the remaining small parameters;
* ``update(other, carry, x_proj, recurrent) -> (carry, y)``: the step given the input's
  pre-activations ``x_proj = x @ input_kernel + input_bias``, each recurrent matmul done through
  ``recurrent(lhs, name) = lhs @ recurrent_kernels[name]``, so an engine decides how it is
  computed and differentiated.

``step`` is ``update`` after the input projection of one step, so there is one copy of each
cell's math: the module-level ``lstm_update``, ``gru_update``, ``simple_rnn_update`` and
``layer_norm_lstm_update``, which work on plain arrays. The loop over time is elsewhere
(:mod:`lstmjax.engines`). :data:`CELLS` is the one place a cell is named.

Precision: ``dtype`` is the compute dtype of the matmuls. With a 16-bit ``dtype`` the matmuls
accumulate in float32, the gate math and the carried state are float32, and only the output ``y``
is in ``dtype`` (so a long recurrence does not round its state to 8 bits of mantissa).

Layouts follow TensorFlow 1 (``tf.nn.rnn_cell``): every kernel takes the concatenation ``[x, h]``
(input rows first, then recurrent rows) and fused gates are split along the last axis. Converters
from other layouts live in :mod:`lstmjax.convert`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from lstmjax._checks import require_positive_int

Array = jax.Array
Params = dict[str, Array]
Initializer = Callable[[Array, tuple[int, ...], Any], Array]
Recurrent = Callable[[Array, str], Array]
"""``recurrent(lhs, name) -> lhs @ recurrent_kernels[name]``, in the cell's state dtype."""


class LSTMState(NamedTuple):
    """Carry of the LSTM cells: memory cell ``c: float[B, H]`` and output ``h: float[B, P]``.

    ``P`` is the projection size when the LSTM projects its output, else ``H``. The field order
    (c, h) is TensorFlow's ``LSTMStateTuple`` order.
    """

    c: Array
    h: Array


class LayerWeights(NamedTuple):
    """A cell's parameters split for a layer engine (see the module docstring).

    Attributes:
      input_kernel: ``[I, G]``, the input rows of every kernel, side by side.
      input_bias: ``[G]`` or None, added to the input projection.
      recurrent: ``{name: [R, G_name]}``, the kernels the recurrence multiplies by (``R`` rows:
        the recurrent state, or what the gate math makes of it).
      other: the remaining parameters, read by ``update`` directly (peepholes, layer norms, ...).
    """

    input_kernel: Array
    input_bias: Array | None
    recurrent: dict[str, Array]
    other: dict[str, Array]


# ---------------------------------------------------------------------------------------------
# The math: pure functions on arrays, given the input's pre-activations.
# ---------------------------------------------------------------------------------------------


def sigmoid(x: Array) -> Array:
    """The logistic function, evaluated as ``(1 + tanh(x / 2)) / 2`` (the same function; XLA:CPU
    computes its tanh about 25% faster than its logistic, see ``benchmarks/NOTES.md``)."""
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


def lstm_update(
    other: Mapping[str, Array],
    carry: LSTMState,
    x_proj: Array,
    recurrent: Recurrent,
    *,
    forget_bias: float,
    projected: bool = False,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
) -> tuple[LSTMState, Array]:
    """One LSTM step, TF1 ``LSTMCell`` / ``BasicLSTMCell`` equations.

    With ``[i, j, f, o] = x_proj + h @ W_h`` (``x_proj = x @ W_x + bias``; gate order i, j, f, o;
    ``j`` is the candidate)::

        c' = sigmoid(f + forget_bias + p_f * c) * c + sigmoid(i + p_i * c) * tanh(j)
        c' = clip(c', -cell_clip, cell_clip)                  # if cell_clip
        m  = sigmoid(o + p_o * c') * tanh(c')
        h' = clip(m @ proj_kernel, -proj_clip, proj_clip)     # if projected, else h' = m

    The peephole terms ``p_* * c`` are present only if ``other`` holds ``peephole_i``,
    ``peephole_f`` and ``peephole_o`` (Gers & Schmidhuber 2000; Sak et al. 2014 for projection).

    Args:
      other: optional ``peephole_i/f/o: [H]``.
      carry: ``LSTMState(c: [B, H], h: [B, P])``.
      x_proj: ``[B, 4H]``, the input's pre-activations.
      recurrent: the matmuls by ``"kernel"`` (``W_h: [P, 4H]``) and, if projected,
        ``"proj_kernel"`` (``[H, P]``).
      forget_bias: added to the forget pre-activation, not stored (TF: 1.0 by default).
      projected: multiply the output by ``proj_kernel`` (``recurrent(m, "proj_kernel")``).
      cell_clip, proj_clip: optional clipping of ``c'`` and of the projected output.

    Returns:
      ``(LSTMState(c', h'), h')`` with ``c': [B, H]``, ``h': [B, P]``.
    """
    c, h = carry
    gates = x_proj + recurrent(h, "kernel")  # [B, 4H]
    i, j, f, o = jnp.split(gates, 4, axis=-1)
    peepholes = "peephole_i" in other
    if peepholes:
        i = i + other["peephole_i"][None] * c
        f = f + other["peephole_f"][None] * c
    new_c = sigmoid(f + forget_bias) * c + sigmoid(i) * jnp.tanh(j)
    if cell_clip is not None:
        new_c = jnp.clip(new_c, -cell_clip, cell_clip)
    if peepholes:
        o = o + other["peephole_o"][None] * new_c
    new_h = sigmoid(o) * jnp.tanh(new_c)
    if projected:
        new_h = recurrent(new_h, "proj_kernel")  # [B, P]
        if proj_clip is not None:
            new_h = jnp.clip(new_h, -proj_clip, proj_clip)
    return LSTMState(new_c, new_h), new_h


def gru_update(
    other: Mapping[str, Array], h: Array, x_proj: Array, recurrent: Recurrent, *, reset_after: bool
) -> tuple[Array, Array]:
    """One GRU step (Cho et al. 2014), in the TF1 or the cuDNN/PyTorch form.

    With ``x_proj = [x_g, x_n] = x @ [W_gx, W_nx] + [gate_bias, candidate_bias]`` (``x_g: [B,
    2H]`` for the gates r, u; ``x_n: [B, H]`` for the candidate) and the recurrent rows ``W_gh``,
    ``W_nh`` of ``gate_kernel`` and ``candidate_kernel``::

        [r, u] = sigmoid(x_g + h @ W_gh)
        reset_after=False (TF1 GRUCell):   n = tanh(x_n + (r * h) @ W_nh)
        reset_after=True  (cuDNN, torch):  n = tanh(x_n + r * (h @ W_nh + candidate_recurrent_bias))
        h' = u * h + (1 - u) * n

    Args:
      other: with ``reset_after``, ``candidate_recurrent_bias: [H]``.
      h: ``[B, H]``.
      x_proj: ``[B, 3H]``.
      recurrent: the matmuls by ``"gates"`` (``W_gh: [H, 2H]``) and ``"candidate"`` (``W_nh: [H,
        H]``) or, with ``reset_after``, by ``"hidden"`` (``[W_gh, W_nh]: [H, 3H]``, one matmul).
      reset_after: where the reset gate applies (see above).

    Returns:
      ``(h', h')``, each ``[B, H]``.
    """
    hidden = h.shape[-1]
    x_gates, x_candidate = x_proj[..., : 2 * hidden], x_proj[..., 2 * hidden:]
    if reset_after:
        h_proj = recurrent(h, "hidden")  # [B, 3H]
        r, u = jnp.split(sigmoid(x_gates + h_proj[..., : 2 * hidden]), 2, axis=-1)
        h_candidate = h_proj[..., 2 * hidden:] + other["candidate_recurrent_bias"][None]
        candidate = jnp.tanh(x_candidate + r * h_candidate)
    else:
        r, u = jnp.split(sigmoid(x_gates + recurrent(h, "gates")), 2, axis=-1)
        candidate = jnp.tanh(x_candidate + recurrent(r * h, "candidate"))
    new_h = u * h + (1 - u) * candidate
    return new_h, new_h


def simple_rnn_update(
    other: Mapping[str, Array], h: Array, x_proj: Array, recurrent: Recurrent
) -> tuple[Array, Array]:
    """One step of the Elman RNN, TF1 ``BasicRNNCell``: ``h' = tanh(x_proj + h @ W_h)``.

    Args:
      other: empty.
      h: ``[B, H]``.
      x_proj: ``[B, H]``, ``x @ W_x + bias``.
      recurrent: the matmul by ``"kernel"`` (``W_h: [H, H]``).

    Returns:
      ``(h', h')``, each ``[B, H]``.
    """
    del other
    new_h = jnp.tanh(x_proj + recurrent(h, "kernel"))
    return new_h, new_h


def add_bias(x: Array, bias: Array | None) -> Array:
    """``x + bias`` for ``x: [..., G]`` and ``bias: [G]`` (None: ``x``), in ``x``'s dtype."""
    if bias is None:
        return x
    return x + bias.astype(x.dtype).reshape((1,) * (x.ndim - 1) + bias.shape)


def mask_state(carry: Any, mask: Array) -> Any:
    """The carry with its recurrent state multiplied by ``mask: [B, P]`` (recurrent dropout): h
    of an :class:`LSTMState` (never c), otherwise the whole state."""
    if isinstance(carry, LSTMState):
        return carry._replace(h=carry.h * mask.astype(carry.h.dtype))
    return carry * mask.astype(carry.dtype)


def layer_norm(x: Array, scale: Array, shift: Array, *, epsilon: float) -> Array:
    """Layer normalization over the last axis: ``(x - mean) / sqrt(var + epsilon) * scale + shift``.

    ``scale`` and ``shift`` must have the rank of ``x`` (explicit broadcasting).

    ``var`` is the biased variance (``tf.nn.moments``). Ba, Kiros & Hinton 2016.
    """
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(variance + epsilon) * scale + shift


def layer_norm_lstm_update(
    other: Mapping[str, Array],
    carry: LSTMState,
    x_proj: Array,
    recurrent: Recurrent,
    *,
    forget_bias: float,
    epsilon: float,
) -> tuple[LSTMState, Array]:
    """One step of the layer-normalized LSTM of r2rt's "Recurrent Neural Networks in Tensorflow II".

    With ``[i, j, f, o] = x_proj + h @ W_h`` (``x_proj = x @ W_x``, no bias; gate order i, j, f, o)
    and ``LN_g`` a layer norm with gate g's own scale and shift::

        c' = c * sigmoid(LN_f(f) + forget_bias) + sigmoid(LN_i(i)) * tanh(LN_j(j))
        h' = tanh(LN_c(c')) * sigmoid(LN_o(o))          # tanh(c') if other has no cell_scale

    The stored carry is the un-normalized ``c'``.

    Args:
      other: ``gate_scale: [4H]``, ``gate_shift: [4H]`` (per-gate scale and shift, in gate order)
        and optionally ``cell_scale: [H]``, ``cell_shift: [H]``.
      carry: ``LSTMState(c: [B, H], h: [B, H])``.
      x_proj: ``[B, 4H]``.
      recurrent: the matmul by ``"kernel"`` (``W_h: [H, 4H]``).
      forget_bias: added to the normalized forget pre-activation.
      epsilon: added to the variance.

    Returns:
      ``(LSTMState(c', h'), h')``, each ``[B, H]``.
    """
    c, h = carry
    hidden = c.shape[-1]
    gates = x_proj + recurrent(h, "kernel")  # [B, 4H]
    gates = gates.reshape(*gates.shape[:-1], 4, hidden)  # [B, 4, H]
    gates = layer_norm(
        gates,
        other["gate_scale"].reshape(1, 4, hidden),
        other["gate_shift"].reshape(1, 4, hidden),
        epsilon=epsilon,
    )
    i, j, f, o = (gates[..., k, :] for k in range(4))
    new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * jnp.tanh(j)
    memory = new_c
    if "cell_scale" in other:
        memory = layer_norm(
            new_c, other["cell_scale"][None], other["cell_shift"][None], epsilon=epsilon
        )
    new_h = jnp.tanh(memory) * sigmoid(o)
    return LSTMState(new_c, new_h), new_h


# ---------------------------------------------------------------------------------------------
# The protocol engines rely on, and what every cell shares.
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class RecurrentCell(Protocol):
    """What :func:`lstmjax.engines.run_layer` needs of a cell.

    The generic engines ("scan", "static") need only ``zero_carry``, ``param_shapes`` and
    ``step``; a layer engine ("fused") also needs :class:`LayerCell`'s methods (a cell without
    them runs on "scan").
    """

    hidden_size: int
    dtype: Any

    @property
    def output_size(self) -> int: ...

    def init(self, key: Array, input_size: int) -> Params: ...

    def param_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]: ...

    def zero_carry(self, batch_size: int) -> Any: ...

    def step(self, params: Params, carry: Any, x: Array) -> tuple[Any, Array]: ...


@runtime_checkable
class LayerCell(RecurrentCell, Protocol):
    """What a layer engine ("fused") needs beyond :class:`RecurrentCell`; every cell here has it.

    Randomness (the regularizers of :mod:`lstmjax.regularizers`, cells that wrap cells) is drawn
    outside the loop: ``noise(key, num_steps, batch_size)`` returns a :class:`Noise` (None for a
    cell without randomness, and in evaluation, where no key is given). Engines pass the whole
    :class:`Noise` to ``layer_weights`` (its ``window`` part is constant over the window) and,
    at step t, ``Noise(window, steps[t])`` to ``update`` and ``step_with_weights``, as they
    slice ``xs`` and ``resets``. Engines never differentiate it.
    """

    def noise(self, key: Array, num_steps: int, batch_size: int) -> Noise | None: ...

    def layer_weights(self, params: Params, noise: Noise | None = None) -> LayerWeights: ...

    def cast_weights(self, weights: LayerWeights) -> LayerWeights: ...

    def update(self, other: Mapping[str, Array], carry: Any, x_proj: Array,
               recurrent: Recurrent, noise: Noise | None = None) -> tuple[Any, Array]: ...

    def matmul(self, lhs: Array, kernel: Array) -> Array: ...

    def step_with_weights(self, weights: LayerWeights, carry: Any, x: Array,
                          noise: Noise | None = None) -> tuple[Any, Array]: ...


class Noise(NamedTuple):
    """A cell's randomness for one window, drawn outside the loop from an explicit key.

    Attributes:
      window: arrays constant over the window (a recurrent-dropout mask ``[B, P]``, weight-drop
        masks on the kernels).
      steps: arrays with a leading time axis ``[T, B, ...]`` (zoneout masks); an engine gives the
        cell one step's slice at a time. None where the cell has none.
    """

    window: Any
    steps: Any


def step_noise(noise: Noise | None, steps: Any) -> Noise | None:
    """``Noise(noise.window, steps)``: what a cell's step gets, ``steps`` the slice of
    ``noise.steps`` at that step; None for None."""
    return None if noise is None else Noise(noise.window, steps)


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


def check_layer_arguments(cell: Any, params: Mapping[str, Array], carry: Any, x: Array) -> Any:
    """Check one step's arguments (trace time) and return the carry the cell computes with.

    ``x: [B, I]``, ``params`` shaped like ``cell.param_shapes(I)``, and ``carry`` like
    ``cell.zero_carry(B)``, where:

    * ``None`` is the all-zero carry;
    * a plain tuple or list is read in the carry's field order (an LSTM's ``(c, h)``);
    * floating leaves of any dtype are cast to the cell's state dtype (a 16-bit carry is computed
      in float32, as the step's gate math is).

    A mismatch raises a ValueError that names the argument. Engines call it once per layer, not
    once per step.
    """
    if jnp.ndim(x) != 2:
        raise ValueError(
            f"x for {cell!r} must have rank 2 [batch, input_size], got shape {jnp.shape(x)}"
        )
    _check_params(cell, params, cell.param_shapes(x.shape[-1]))
    return layer_carry(cell, carry, x.shape[0])


def layer_carry(cell: Any, carry: Any, batch_size: int) -> Any:
    """``carry`` in the structure and dtypes of ``cell.zero_carry(batch_size)`` (see
    :func:`check_layer_arguments`); a ValueError names a wrong structure, shape or dtype."""
    if carry is None:
        return cell.zero_carry(batch_size)
    template = jax.eval_shape(functools.partial(cell.zero_carry, batch_size))
    structure = jax.tree.structure(template)
    if (jax.tree.structure(carry) != structure and isinstance(carry, tuple | list)
            and len(jax.tree.leaves(carry)) == structure.num_leaves):
        carry = jax.tree.unflatten(structure, jax.tree.leaves(carry))
    want = jax.tree.map(lambda a: a.shape, template)
    if jax.tree.structure(carry) != structure:
        raise ValueError(
            f"carry for {cell!r} must be structured like cell.zero_carry({batch_size}) = {want} "
            f"(or a plain tuple in that field order), got {jax.tree.map(jnp.shape, carry)}"
        )
    if jax.tree.map(jnp.shape, carry) != want:
        raise ValueError(
            f"carry for {cell!r} must be shaped like cell.zero_carry({batch_size}) = {want}, "
            f"got {jax.tree.map(jnp.shape, carry)}"
        )
    if not all(jnp.issubdtype(jnp.result_type(a), jnp.floating) for a in jax.tree.leaves(carry)):
        raise ValueError(f"carry for {cell!r} must be floating point, got dtypes "
                         f"{jax.tree.map(jnp.result_type, carry)}")
    return jax.tree.map(lambda a, t: jnp.asarray(a, t.dtype), carry, template)


class Steps:
    """``step_with_weights`` and ``step`` from a cell's ``update``, ``project_inputs``, ``matmul``,
    ``cast_weights`` and ``layer_weights``: shared by the cells here and the regularizer cells
    that wrap them (:mod:`lstmjax.regularizers`)."""

    def step_with_weights(self, weights: LayerWeights, carry: Any, x: Array,
                          noise: Noise | None = None) -> tuple[Any, Array]:
        """One step from split, cast weights (``cast_weights(layer_weights(params, noise))``),
        unchecked: what the generic engines run, the split done once outside their loop."""
        carry, y = self.update(
            weights.other, carry, self.project_inputs(weights, x),
            lambda lhs, name: self.matmul(lhs, weights.recurrent[name]), noise,
        )
        return carry, y.astype(self.dtype)

    def step(self, params: Params, carry: Any, x: Array,
             noise: Noise | None = None) -> tuple[Any, Array]:
        """One step: ``x: [B, I]`` -> ``(carry, y: [B, output_size])``; the math in :meth:`update`.

        Checks its arguments (at trace time) and reads the carry as
        :func:`check_layer_arguments` says (None: zeros; a plain tuple; cast to the state dtype).
        ``noise``: one step's (``Noise(window, steps[t])``), for a cell with randomness."""
        carry = check_layer_arguments(self, params, carry, x)
        weights = self.cast_weights(self.layer_weights(params, noise))
        return self.step_with_weights(weights, carry, x, noise)


@dataclasses.dataclass(frozen=True)
class _Cell(Steps):
    """Fields and methods every cell shares. ``kernel_init``, ``param_dtype`` and ``dtype`` are
    keyword-only, after each cell's own fields. Subclasses define ``param_shapes``, ``init``,
    ``zero_carry``, ``layer_weights`` and ``update``."""

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

    @property
    def state_dtype(self) -> Any:
        """dtype of the carry and of the gate math: float32 for a 16-bit ``dtype``."""
        dtype = jnp.dtype(self.dtype)
        return jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype

    def _kernel(self, key: Array, shape: tuple[int, ...]) -> Array:
        """A kernel from ``kernel_init`` (Glorot uniform, TF1's default, if None)."""
        init = self.kernel_init or jax.nn.initializers.glorot_uniform()
        return init(key, shape, self.param_dtype)

    def _zeros(self, batch_size: int, features: int) -> Array:
        return jnp.zeros((batch_size, features), self.state_dtype)

    def matmul(self, lhs: Array, kernel: Array) -> Array:
        """``lhs @ kernel`` with operands in ``dtype``, accumulated and returned in ``state_dtype``."""
        return jnp.matmul(lhs.astype(self.dtype), kernel.astype(self.dtype),
                          preferred_element_type=self.state_dtype)

    def project_inputs(self, weights: LayerWeights, x: Array) -> Array:
        """``x @ input_kernel + input_bias`` for ``x: [..., I]`` -> ``[..., G]`` (state dtype)."""
        return add_bias(self.matmul(x, weights.input_kernel), weights.input_bias)

    def cast_weights(self, weights: LayerWeights) -> LayerWeights:
        """``other`` in the state dtype (the gate math's); kernels stay as they are for
        :meth:`matmul` to cast."""
        other = {k: v.astype(self.state_dtype) for k, v in weights.other.items()}
        return weights._replace(other=other)

    def noise(self, key: Array, num_steps: int, batch_size: int) -> None:
        """None: the cells here have no randomness (see :class:`LayerCell`)."""
        del key, num_steps, batch_size

    @staticmethod
    def _split_rows(kernel: Array, rows: int) -> tuple[Array, Array]:
        """``(kernel[:rows], kernel[rows:])``: the input and the recurrent rows of a TF kernel."""
        return kernel[:rows], kernel[rows:]


# ---------------------------------------------------------------------------------------------
# The cells: hyper-parameters, parameter layout, the split for layer engines.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LSTM(_Cell):
    """Long short-term memory cell (Hochreiter & Schmidhuber 1997, with a forget gate).

    Equations in :func:`lstm_update`. Parameter layout (TF1 ``LSTMCell``; ``P = proj_size or H``):
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
      dtype: compute dtype of the matmuls (see the module docstring for 16-bit types).
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
        """``LSTMState(c: zeros[B, H], h: zeros[B, P])`` in the state dtype."""
        return LSTMState(self._zeros(batch_size, self.hidden_size),
                         self._zeros(batch_size, self.output_size))

    def layer_weights(self, params: Params, noise: None = None) -> LayerWeights:
        """Input kernel ``kernel[:I]``, bias; recurrent ``kernel`` (``kernel[I:]``) and
        ``proj_kernel``; peepholes in ``other``."""
        input_kernel, recurrent_kernel = self._split_rows(
            params["kernel"], params["kernel"].shape[0] - self.output_size)
        recurrent = {"kernel": recurrent_kernel}
        other = {k: v for k, v in params.items() if k.startswith("peephole")}
        if "proj_kernel" in params:
            recurrent["proj_kernel"] = params["proj_kernel"]
        return LayerWeights(input_kernel, params["bias"], recurrent, other)

    def update(self, other, carry, x_proj, recurrent, noise=None):
        """See :func:`lstm_update`."""
        return lstm_update(other, LSTMState(*carry), x_proj, recurrent,
                           forget_bias=self.forget_bias, projected=self.proj_size is not None,
                           cell_clip=self.cell_clip, proj_clip=self.proj_clip)


@dataclasses.dataclass(frozen=True)
class GRU(_Cell):
    """Gated recurrent unit (Cho et al. 2014). Equations in :func:`gru_update`.

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
        """``zeros[B, H]`` in the state dtype."""
        return self._zeros(batch_size, self.hidden_size)

    def layer_weights(self, params: Params, noise: None = None) -> LayerWeights:
        """Input kernel ``[gate_kernel[:I], candidate_kernel[:I]]: [I, 3H]`` and biases; recurrent
        ``"hidden"`` (both recurrent row blocks side by side) with ``reset_after``, else
        ``"gates"`` and ``"candidate"``."""
        rows = params["gate_kernel"].shape[0] - self.hidden_size
        gate_x, gate_h = self._split_rows(params["gate_kernel"], rows)
        candidate_x, candidate_h = self._split_rows(params["candidate_kernel"], rows)
        input_kernel = jnp.concatenate([gate_x, candidate_x], axis=1)
        input_bias = jnp.concatenate([params["gate_bias"], params["candidate_bias"]])
        if self.reset_after:
            recurrent = {"hidden": jnp.concatenate([gate_h, candidate_h], axis=1)}
            other = {"candidate_recurrent_bias": params["candidate_recurrent_bias"]}
        else:
            recurrent, other = {"gates": gate_h, "candidate": candidate_h}, {}
        return LayerWeights(input_kernel, input_bias, recurrent, other)

    def update(self, other, carry, x_proj, recurrent, noise=None):
        """See :func:`gru_update`."""
        return gru_update(other, carry, x_proj, recurrent, reset_after=self.reset_after)


@dataclasses.dataclass(frozen=True)
class SimpleRNN(_Cell):
    """Elman RNN, ``h' = tanh([x, h] @ kernel + bias)`` (TF1 ``BasicRNNCell``, torch ``nn.RNN``).

    Equations in :func:`simple_rnn_update`. Parameter layout: ``kernel: [I + H, H]``, ``bias: [H]``.

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
        """``zeros[B, H]`` in the state dtype."""
        return self._zeros(batch_size, self.hidden_size)

    def layer_weights(self, params: Params, noise: None = None) -> LayerWeights:
        """Input kernel ``kernel[:I]``, bias; recurrent ``kernel`` (``kernel[I:]``)."""
        input_kernel, recurrent_kernel = self._split_rows(
            params["kernel"], params["kernel"].shape[0] - self.hidden_size)
        return LayerWeights(input_kernel, params["bias"], {"kernel": recurrent_kernel}, {})

    def update(self, other, carry, x_proj, recurrent, noise=None):
        """See :func:`simple_rnn_update`."""
        return simple_rnn_update(other, carry, x_proj, recurrent)


@dataclasses.dataclass(frozen=True)
class LayerNormLSTM(_Cell):
    """Layer-normalized LSTM (Ba et al. 2016), in the form of r2rt's TensorFlow tutorial cell.

    Equations in :func:`layer_norm_lstm_update`. Parameter layout: ``kernel: [I + H, 4H]`` (gate
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
        """``LSTMState(c: zeros[B, H], h: zeros[B, H])`` in the state dtype, two buffers (the
        train step donates its carry)."""
        return LSTMState(self._zeros(batch_size, self.hidden_size),
                         self._zeros(batch_size, self.hidden_size))

    def layer_weights(self, params: Params, noise: None = None) -> LayerWeights:
        """Input kernel ``kernel[:I]`` (no bias); recurrent ``kernel``; scales and shifts in
        ``other``."""
        input_kernel, recurrent_kernel = self._split_rows(
            params["kernel"], params["kernel"].shape[0] - self.hidden_size)
        other = {k: v for k, v in params.items() if k != "kernel"}
        return LayerWeights(input_kernel, None, {"kernel": recurrent_kernel}, other)

    def update(self, other, carry, x_proj, recurrent, noise=None):
        """See :func:`layer_norm_lstm_update`."""
        return layer_norm_lstm_update(other, LSTMState(*carry), x_proj, recurrent,
                                      forget_bias=self.forget_bias, epsilon=self.epsilon)


CELLS: dict[str, type[_Cell]] = {
    "lstm": LSTM,
    "gru": GRU,
    "rnn": SimpleRNN,
    "ln_lstm": LayerNormLSTM,
}
"""The cell registry: config name -> class. The one place a cell is named; config, model and the
benchmarks read it. A new cell is one class here (with its update function) and its tests."""


def cell_options(cls: type) -> tuple[str, ...]:
    """The options of a cell class: its dataclass fields beyond those every cell has
    (``hidden_size``, ``kernel_init``, ``param_dtype``, ``dtype``), in declaration order;
    ``("forget_bias", "use_peepholes", "proj_size", "cell_clip", "proj_clip")`` for LSTM.
    :data:`lstmjax.config.CELL_OPTIONS` are those a ModelConfig field sets."""
    shared = {field.name for field in dataclasses.fields(_Cell)}
    return tuple(field.name for field in dataclasses.fields(cls) if field.name not in shared)
