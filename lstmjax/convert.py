"""Weight import and export: cells trained with TensorFlow 1, PyTorch, flax, Equinox or cuDNN.

Every importer takes the source's arrays (NumPy, JAX, torch tensors, a flax parameter dict or NNX
state, an Equinox module) and returns ``(cell, params)`` per layer: the lstmjax cell whose options
match the weights (hidden size, projection, peepholes, reset form, ``forget_bias``) and its
parameters, so ``lstmjax.run_layer(cell, params, carry, xs)`` gives the source's outputs. The
functions are jnp code, so they also run under ``jax.grad``: gradients can be taken in the source
layout.

===============================  ====================================  ==============================
function                         source layout                         returns
===============================  ====================================  ==============================
``lstm_from_tf``                 TF1 ``BasicLSTMCell`` / ``LSTMCell``   ``(LSTM(H, forget_bias=<given>,
                                 ``kernel [I+P, 4H]`` (i, j, f, o),     use_peepholes, proj_size),
                                 ``bias [4H]``, ``w_{i,f,o}_diag [H]``,  params)``
                                 ``projection/kernel [H, P]``
``gru_from_tf``                  TF1 ``GRUCell`` ``gates/kernel``       ``(GRU(H), params)``
                                 ``[I+H, 2H]`` (r, u), ``gates/bias``,  (``reset_after=False``)
                                 ``candidate/kernel [I+H, H]``,
                                 ``candidate/bias``
``simple_rnn_from_tf``           TF1 ``BasicRNNCell`` ``kernel``,       ``(SimpleRNN(H), params)``
                                 ``bias``
``layer_norm_lstm_from_tf``      r2rt's layer-normalized LSTM:          ``(LayerNormLSTM(H,
                                 ``kernel [I+H, 4H]`` (i, j, f, o),     forget_bias=<given>,
                                 ``{i,j,f,o,new_h}/layer_norm/          layer_norm_cell), params)``
                                 {scale,shift} [H]``
``layers_from_tf``               a dict ``{variable name: array}`` of   ``[(cell, params)]`` per layer,
                                 a TF1 cell or ``MultiRNNCell`` stack   the cell read off the scope
                                 (``.../cell_0/basic_lstm_cell/         and the weights; ``scope=``
                                 kernel``)                              picks a stack
``bidirectional_from_tf``        ``bidirectional_rnn/fw/...`` and       ``(fw layers, bw layers)``;
                                 ``.../bw/...``                         run bw with ``reverse=True``
``lstm_from_tf_tutorial``        the TF text8 tutorial's 8 matrices     ``(LSTM(H, forget_bias=0.0),
                                 and 4 biases (``input_gate_i [I,H]``,  params)``
                                 ``input_gate_o [H,H]``,
                                 ``input_gate_b [1,H]``, ...)
``lstm_from_torch``              ``torch.nn.LSTM`` state dict           ``[(LSTM(H, forget_bias=0.0,
                                 (``weight_ih_l{k} [4H, I]`` i, f, g,   proj_size), params)]``
                                 o; ``weight_hh_l{k}``, ``bias_ih_l{k}``,
                                 ``bias_hh_l{k}``, ``weight_hr_l{k}``)
``gru_from_torch``               ``torch.nn.GRU`` state dict (r, z, n)  ``[(GRU(H, reset_after=True),
                                                                       params)]``
``simple_rnn_from_torch``        ``torch.nn.RNN`` state dict (tanh)     ``[(SimpleRNN(H), params)]``
``layers_from_torch``            any of the three, the module type      ``[(cell, params)]``
                                 read off the shapes
``lstm_from_cudnn``              ``jax.experimental.rnn``'s flat        ``[(LSTM(H, forget_bias=0.0),
                                 vector (per layer and direction        params)]`` of one direction
                                 ``W_ih, W_hh`` then all ``b_ih,
                                 b_hh``; gates i, f, g, o)
``lstm_from_flax``               flax ``nn.LSTMCell`` /                 ``(LSTM(H, forget_bias=0.0),
                                 ``nn.OptimizedLSTMCell`` params        params)``
                                 (``ii, if, ig, io`` kernels ``[I, H]``,
                                 ``hi, ...`` kernels and biases), NNX
                                 ``nnx.LSTMCell`` (``if_``),
                                 ``nnx.OptimizedLSTMCell``
                                 (``dense_i [I, 4H]``, ``dense_h``)
``gru_from_flax``                flax ``nn.GRUCell`` (``ir, iz, in``    ``(GRU(H, reset_after=True),
                                 with biases, ``hr, hz``, ``hn`` with   params)``
                                 bias) or ``nnx.GRUCell`` (``dense_i
                                 [I, 3H]`` with bias, ``dense_h``)
``lstm_from_equinox``            ``eqx.nn.LSTMCell`` (``weight_ih``     ``(LSTM(H, forget_bias=0.0),
                                 ``[4H, I]`` i, f, g, o, ``weight_hh``,  params)``
                                 ``bias``)
``gru_from_equinox``             ``eqx.nn.GRUCell`` (r, z, n; ``bias``,  ``(GRU(H, reset_after=True),
                                 ``bias_n``)                            params)``
===============================  ====================================  ==============================

TensorFlow's LSTM ``forget_bias`` is added inside the forget sigmoid and is not stored in the
weights: the TF importers take it (``forget_bias=``, the value the TF cell was built with; TF's
default is 1.0), and an LSTM without it is an error. The other sources have no such constant, so
their cells come with ``forget_bias=0.0``. PyTorch's and cuDNN's two biases are summed where
lstmjax keeps one, except the GRU's recurrent candidate bias, which the reset gate multiplies.

Export goes the other way: :func:`layers_to_tf` writes a ``MultiRNNCell`` stack's TF1 variables,
:func:`layers_to_torch` a torch state dict, :func:`lstm_to_cudnn` cuDNN's flat vector, and
:func:`lstm_to_flax` / :func:`gru_to_flax` a flax Linen cell's parameters (which
``nn.OptimizedLSTMCell`` shares); reading any of them back gives the same cell and parameters bit
for bit. An LSTM's ``forget_bias`` is folded into the exported forget bias where the target has no
such constant. Whole language models (embedding, stack, softmax) and files are in
:mod:`lstmjax.interop`.

:data:`CONVERTERS` is the one table of what converts to what: ``(cell class, format) ->
Converter(import_, export)``, one layer each way. A cell class that it does not list (a user's
cell, a subclass) is an error naming the cell and the format, never another cell's layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.cells import CELLS, GRU, LSTM, LayerCell, LayerNormLSTM, SimpleRNN

Params = dict[str, jax.Array]
Layer = tuple[LayerCell, Params]
"""``(cell, params)``: one layer, what every importer returns."""


class Converter(NamedTuple):
    """One cell class in one format, a layer each way (None: not supported that way).

    Attributes:
      import_: the format's layer -> ``(cell, params)``.
      export: ``(cell, params)`` -> the format's layer, which ``import_`` reads back exactly.
    """

    import_: Callable[..., Layer] | None
    export: Callable[[Any, Params], Any] | None


def converter(cell: Any, fmt: str, *, way: str = "import_") -> Converter:
    """``CONVERTERS[(type(cell), fmt)]`` for a cell or a cell class, with its ``way``
    (``"import_"`` or ``"export"``) present; a ValueError naming the cell and the format and
    listing what is supported otherwise. Only the exact classes listed convert: a subclass may
    change the math, so it is unknown too."""
    cls = cell if isinstance(cell, type) else type(cell)
    entry = CONVERTERS.get((cls, fmt))
    if entry is None or getattr(entry, way) is None:
        formats = sorted({f for _, f in CONVERTERS})
        if fmt not in formats:
            problem = f"unknown format {fmt!r} (formats: {', '.join(formats)})"
        else:
            problem = f"no {way.rstrip('_')} of {cls.__name__} cells in format {fmt!r}"
        raise ValueError(f"cannot convert {cell!r}: {problem}; supported: {supported()}")
    return entry


def supported() -> str:
    """What :data:`CONVERTERS` converts, by cell name (:data:`lstmjax.cells.CELLS`) and format:
    ``"lstm: tf (import, export), ..."``."""
    names = {cls: name for name, cls in CELLS.items()}
    return "; ".join(
        f"{names.get(cls, cls.__name__)} {fmt} ("
        + ", ".join(way.rstrip("_") for way in Converter._fields if getattr(entry, way)) + ")"
        for (cls, fmt), entry in CONVERTERS.items())


def as_array(value: Any) -> jax.Array:
    """A JAX array from a NumPy or JAX array or a torch tensor."""
    if hasattr(value, "detach"):
        value = np.asarray(value.detach().cpu().numpy())
    return jnp.asarray(value)


def _require(ok: bool, name: str, layout: str, value: jax.Array) -> None:
    if not ok:
        raise ValueError(f"{name} must be shaped {layout}, got {list(value.shape)}")


def _require_forget_bias(forget_bias: float | None) -> float:
    if forget_bias is None:
        raise ValueError(
            "forget_bias is not stored in TF weights; pass the value the cell was built with "
            "(TF's BasicLSTMCell/LSTMCell default 1.0, the PTB tutorial 0.0)")
    return forget_bias


def _reorder(a: jax.Array, source: str, target: str) -> jax.Array:
    """The last axis's equal blocks reordered from the gate names in ``source`` to ``target``:
    ``_reorder(a, "ifgo", "igfo")`` takes torch's/cuDNN's/flax's i, f, g, o to lstmjax's i, j=g,
    f, o."""
    blocks = dict(zip(source, jnp.split(a, len(source), axis=-1), strict=True))
    return jnp.concatenate([blocks[g] for g in target], axis=-1)


def _fused_kernel(weight_ih: jax.Array, weight_hh: jax.Array) -> jax.Array:
    """torch ``weight_ih [G, I]`` and ``weight_hh [G, P]`` -> ``[I + P, G]`` (input rows first)."""
    return jnp.concatenate([weight_ih, weight_hh], axis=1).T


def _split_rows(kernel: jax.Array, recurrent_rows: int) -> tuple[jax.Array, jax.Array]:
    """``(input rows, recurrent rows)`` of a TF-layout kernel ``[I + R, G]``."""
    inputs = kernel.shape[0] - recurrent_rows
    return kernel[:inputs], kernel[inputs:]


def _lstm_bias_with_forget(cell: LSTM, bias: jax.Array) -> jax.Array:
    """``bias`` (gates i, j, f, o) with ``cell.forget_bias`` added to f, for targets that have no
    such constant."""
    if not cell.forget_bias:
        return bias
    i, j, f, o = jnp.split(bias, 4)
    return jnp.concatenate([i, j, f + jnp.asarray(cell.forget_bias, f.dtype), o])


def _no_extras(cell: LSTM, params: Params, target: str, *, projection: bool = False) -> None:
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


# ---------------------------------------------------------------------------------------------
# TensorFlow 1.
# ---------------------------------------------------------------------------------------------


class TFCell(NamedTuple):
    """One TF1 cell's variables, the ``"tf"`` format's layer.

    Attributes:
      scope: the cell's scope (``basic_lstm_cell``, ``lstm_cell``, ``gru_cell``,
        ``basic_rnn_cell``, ``LayerNormalizedLSTMCell``).
      leaves: ``{TF1 name under the scope: array}`` (``kernel``, ``gates/kernel``, ``w_f_diag``,
        ``projection/kernel``, ``i/layer_norm/scale``, ...).
    """

    scope: str
    leaves: dict[str, Any]


_TF_CELL_SCOPES = {  # cell scope -> lstmjax cell class; TF 0.x spellings too
    "basic_lstm_cell": LSTM,
    "lstm_cell": LSTM,
    "gru_cell": GRU,
    "basic_rnn_cell": SimpleRNN,
    "BasicLSTMCell": LSTM,
    "LSTMCell": LSTM,
    "GRUCell": GRU,
    "BasicRNNCell": SimpleRNN,
}
# Leaves of a TF cell scope. The path before the cell scope is matched lazily, so the longest
# leaf wins (``lstm_cell/projection/kernel`` is the projection of ``lstm_cell``).
_TF_LEAF = re.compile(
    r"^(?:(?P<path>.*?)/)?(?P<scope>[^/]+)/(?P<leaf>"
    r"(?:gates|candidate|Gates|Candidate|projection)/(?:kernel|bias|weights|biases|Linear/Matrix"
    r"|Linear/Bias)"
    r"|(?:i|j|f|o|new_h)/layer_norm/(?:scale|shift)"
    r"|[wW]_[ifoIFO]_diag|W_P_\d+|W_\d+|B|kernel|bias|weights|biases|Linear/Matrix|Linear/Bias)$"
)
# TF < 1.2 (weights, biases) and TF 0.x (Linear/Matrix, LSTMCell's W_0, B, W_I_diag, W_P_0).
_TF_LEAF_SYNONYMS = {"weights": "kernel", "biases": "bias", "Linear/Matrix": "kernel",
                     "Linear/Bias": "bias", "W_0": "kernel", "B": "bias",
                     "W_P_0": "projection/kernel"}
_TF_LAYER = re.compile(r"^(?:cell_|Cell)(\d+)$")  # MultiRNNCell's layer scope: TF1, TF 0.x
_TF_UNNAMED = re.compile(r"^Variable(?:_\d+)?$")
_TF_CELL_SPECIFIC = ("gates/", "candidate/", "/layer_norm/", "_diag")


def lstm_from_tf(
    kernel: Any,
    bias: Any,
    *,
    forget_bias: float | None = None,
    w_i_diag: Any = None,
    w_f_diag: Any = None,
    w_o_diag: Any = None,
    projection_kernel: Any = None,
) -> tuple[LSTM, Params]:
    """``(LSTM, params)`` of a TF1 ``BasicLSTMCell`` or ``LSTMCell``.

    TF1's layout is lstmjax's: ``kernel [I + P, 4H]`` (input rows first; gate columns i, j, f, o),
    ``bias [4H]``. Give all three peepholes ``w_*_diag: [H]`` or none, and ``projection_kernel:
    [H, P]`` for ``num_proj``. ``forget_bias`` is required: the TF cell's (not stored in the
    weights). Not stored either: ``cell_clip``/``proj_clip``; set them with
    ``dataclasses.replace(cell, ...)`` if the source used them.
    """
    kernel, bias = as_array(kernel), as_array(bias)
    _require(kernel.ndim == 2 and kernel.shape[1] % 4 == 0, "kernel", "[I + P, 4H]", kernel)
    _require(bias.shape == (kernel.shape[1],), "bias", f"[{kernel.shape[1]}]", bias)
    forget_bias = _require_forget_bias(forget_bias)
    params = {"kernel": kernel, "bias": bias}
    peepholes = {"peephole_i": w_i_diag, "peephole_f": w_f_diag, "peephole_o": w_o_diag}
    given = [value is not None for value in peepholes.values()]
    if any(given) and not all(given):
        raise ValueError("give all three peepholes w_i_diag, w_f_diag, w_o_diag, or none")
    if all(given):
        params.update({name: as_array(value) for name, value in peepholes.items()})
    if projection_kernel is not None:
        params["proj_kernel"] = as_array(projection_kernel)
    cell = LSTM(bias.shape[0] // 4, forget_bias=forget_bias, use_peepholes=all(given),
                proj_size=None if projection_kernel is None else params["proj_kernel"].shape[1])
    return cell, params


def gru_from_tf(gates_kernel: Any, gates_bias: Any, candidate_kernel: Any, candidate_bias: Any
                ) -> tuple[GRU, Params]:
    """``(GRU(H, reset_after=False), params)`` of a TF1 ``GRUCell``.

    ``gates/kernel [I + H, 2H]`` (columns r, u), ``gates/bias [2H]``, ``candidate/kernel
    [I + H, H]``, ``candidate/bias [H]``: the same layout, renamed.
    """
    params = {
        "gate_kernel": as_array(gates_kernel),
        "gate_bias": as_array(gates_bias),
        "candidate_kernel": as_array(candidate_kernel),
        "candidate_bias": as_array(candidate_bias),
    }
    return GRU(params["candidate_bias"].shape[0]), params


def simple_rnn_from_tf(kernel: Any, bias: Any) -> tuple[SimpleRNN, Params]:
    """``(SimpleRNN(H), params)`` of a TF1 ``BasicRNNCell``: ``kernel [I + H, H]``, ``bias [H]``."""
    params = {"kernel": as_array(kernel), "bias": as_array(bias)}
    return SimpleRNN(params["bias"].shape[0]), params


def layer_norm_lstm_from_tf(
    kernel: Any, scales: Mapping[str, Any], shifts: Mapping[str, Any], *,
    forget_bias: float | None = None,
) -> tuple[LayerNormLSTM, Params]:
    """``(LayerNormLSTM, params)`` of r2rt's layer-normalized LSTM cell.

    Args:
      kernel: ``[I + H, 4H]``, the cell's bias-free linear map (gate columns i, j, f, o).
      scales, shifts: the layer-norm ``scale`` and ``shift`` vectors ``[H]`` keyed by their scope:
        ``"i"``, ``"j"``, ``"f"``, ``"o"``, and ``"new_h"`` (the cell-state norm) if the cell has it.
      forget_bias: required, the cell's (not stored in the weights).

    The cell has ``layer_norm_cell=("new_h" in scales)`` and the default ``epsilon`` (r2rt's
    1e-5), which is not stored either.
    """
    gates = ("i", "j", "f", "o")
    expected = set(gates) | ({"new_h"} & set(scales))
    for name, given in (("scales", scales), ("shifts", shifts)):
        if set(given) != expected:
            raise ValueError(
                f"{name} must have keys {sorted(expected)} (gates i, j, f, o and optionally "
                f"new_h, in both scales and shifts), got {sorted(given)}"
            )
    forget_bias = _require_forget_bias(forget_bias)
    params = {
        "kernel": as_array(kernel),
        "gate_scale": jnp.concatenate([as_array(scales[g]) for g in gates]),
        "gate_shift": jnp.concatenate([as_array(shifts[g]) for g in gates]),
    }
    if "new_h" in scales:
        params["cell_scale"] = as_array(scales["new_h"])
        params["cell_shift"] = as_array(shifts["new_h"])
    cell = LayerNormLSTM(params["gate_scale"].shape[0] // 4, forget_bias=forget_bias,
                         layer_norm_cell="new_h" in scales)
    return cell, params


def layers_from_tf(variables: Mapping[str, Any], *, forget_bias: float | None = None,
                   scope: str | None = None) -> list[Layer]:
    """``[(cell, params)]`` per layer, first layer first, of a TF cell or ``MultiRNNCell`` stack.

    ``variables`` maps TF variable names to arrays, e.g. from ``tf.train.load_checkpoint``,
    ``{v.name: sess.run(v) for v in tf.global_variables()}`` or :func:`lstmjax.interop.load_variables`.
    Names look like ``Model/RNN/multi_rnn_cell/cell_1/basic_lstm_cell/kernel:0``: ``cell_k`` gives
    the layer (no ``cell_k``: one layer) and the scope before the leaf gives the cell:
    ``basic_lstm_cell`` and ``lstm_cell`` (with ``w_*_diag`` and ``projection/kernel`` when
    present), ``gru_cell``, ``basic_rnn_cell``, or any scope holding a layer-normalized LSTM's
    ``i/layer_norm/scale`` etc. (r2rt's ``LayerNormalizedLSTMCell``). TF < 1.2 leaves (``weights``,
    ``biases``) and TF 0.x names (``MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix``, ``.../Linear/
    Bias``, ``GRUCell/Gates/Linear/Matrix``, ``LSTMCell/W_0``, ``B``, ``W_I_diag``, ``W_P_0``) are
    read as well. Variables outside a cell (embedding, softmax, dense layers) are ignored.

    The options stored in the weights are read off them: the cell type, hidden size, LSTM
    peepholes and projection size, the layer norm on the LN-LSTM's cell state. TF1's ``GRUCell``
    is ``GRU(H, reset_after=False)``.

    Args:
      variables: ``{name: array}``.
      forget_bias: required for an LSTM or LN-LSTM: the value the TF cell was built with
        (``BasicLSTMCell``/``LSTMCell`` default 1.0; the PTB tutorial 0.0). TF adds it inside the
        forget sigmoid and does not store it. Not stored either: ``LSTMCell``'s
        ``cell_clip``/``proj_clip`` and the LN-LSTM's ``epsilon``: set those with
        ``dataclasses.replace(cell, ...)`` if the source used others.
      scope: pick one stack where the variables hold several (a bidirectional RNN's ``fw`` and
        ``bw``, an encoder and a decoder): path components that the names must contain, e.g.
        ``"encoder"`` or ``"bidirectional_rnn/fw"``. Several stacks and no scope is an error
        that lists them.
    """
    return [converter(_tf_class(cell), "tf").import_(cell, forget_bias=forget_bias)
            for cell in _tf_stack(variables, scope)]


def bidirectional_from_tf(
    variables: Mapping[str, Any], *, forget_bias: float | None = None, scope: str | None = None
) -> tuple[list[Layer], list[Layer]]:
    """``(fw layers, bw layers)`` of TF's ``bidirectional_dynamic_rnn``, each as
    :func:`layers_from_tf` returns them.

    Names like ``bidirectional_rnn/fw/basic_lstm_cell/kernel`` and ``.../bw/...`` (or
    ``stack_bidirectional_rnn/cell_k/bidirectional_rnn/fw/...``); ``scope`` picks one
    bidirectional RNN among several, as in :func:`layers_from_tf`. Run the ``bw`` layers with
    ``reverse=True`` (:func:`lstmjax.bidirectional` runs a pair).
    """
    selected = _select(variables, scope)
    fw, bw = (layers_from_tf(_select(selected, direction), forget_bias=forget_bias)
              for direction in ("fw", "bw"))
    return fw, bw


def layers_to_tf(layers: Sequence[Layer], *, prefix: str = "rnn/multi_rnn_cell"
                 ) -> dict[str, np.ndarray]:
    """TF1 variables ``{name: array}`` of a ``MultiRNNCell`` stack of ``[(cell, params)]``.

    Layer k's variables are ``<prefix>/cell_<k>/<cell scope>/<leaf>``: ``basic_lstm_cell``
    (``lstm_cell`` with peepholes or projection), ``gru_cell``, ``basic_rnn_cell``, or r2rt's
    ``LayerNormalizedLSTMCell``. :func:`layers_from_tf` reads them back exactly, given the same
    ``forget_bias``: not stored, as in TF, and neither are the clipping values.
    ``GRU(reset_after=True)`` has no TF1 ``GRUCell`` form, and a cell that :data:`CONVERTERS`
    does not list has none either (errors).
    """
    variables = {}
    for layer, (cell, params) in enumerate(layers):
        scope, leaves = converter(cell, "tf", way="export").export(cell, params)
        for leaf, value in leaves.items():
            variables[f"{prefix}/cell_{layer}/{scope}/{leaf}"] = np.asarray(value)
    return variables


def _select(variables: Mapping[str, Any], scope: str | None) -> dict[str, Any]:
    """The variables whose path contains ``scope``'s components in a row (all if None)."""
    if scope is None:
        return dict(variables)
    wanted = [part for part in scope.strip("/").split("/") if part]
    if not wanted:
        raise ValueError(f"scope must name path components such as 'encoder', got {scope!r}")
    selected = {}
    for name, value in variables.items():
        parts = name.split(":")[0].split("/")
        if any(parts[k:k + len(wanted)] == wanted for k in range(len(parts) - len(wanted) + 1)):
            selected[name] = value
    if not selected:
        raise ValueError(f"no variable name contains scope {scope!r}; names: {sorted(variables)}")
    return selected


def _tf_stack(variables: Mapping[str, Any], scope: str | None) -> list[TFCell]:
    """The cells, first layer first, of the one TF cell stack in ``variables``."""
    variables = _select(variables, scope)
    groups: dict[tuple[str, int | None, str], dict[str, jax.Array]] = {}
    for name, value in variables.items():
        match = _TF_LEAF.match(name.split(":")[0])
        if match is None:
            continue
        leaf = _canonical_leaf(match["leaf"])
        path = match["path"].split("/") if match["path"] else []
        layers = [k for k, part in enumerate(path) if _TF_LAYER.match(part)]
        layer = None
        if layers:
            layer = int(_TF_LAYER.match(path[layers[-1]])[1])
            path[layers[-1]] = path[layers[-1]].rstrip("0123456789") + "*"
        groups.setdefault(("/".join(path), layer, match["scope"]), {})[leaf] = as_array(value)
    stacks: dict[str, dict[int, tuple[str, dict[str, jax.Array]]]] = {}
    for (path, layer, cell_scope), leaves in groups.items():
        specific = any(marker in leaf for leaf in leaves for marker in _TF_CELL_SPECIFIC)
        if layer is None and cell_scope not in _TF_CELL_SCOPES and not specific:
            continue  # not a cell's variables, e.g. a dense layer's kernel
        stack = path if layer is not None else "/".join(filter(None, [path, cell_scope]))
        cells = stacks.setdefault(stack, {})
        if (layer or 0) in cells:
            raise ValueError(
                f"layer {layer or 0} of {stack!r} holds two cell scopes, "
                f"{cells[layer or 0][0]!r} and {cell_scope!r}; pick one with scope="
            )
        cells[layer or 0] = (cell_scope, leaves)
    if not stacks:
        raise ValueError(_no_tf_cell_message(variables))
    if len(stacks) > 1:
        raise ValueError(
            f"the variables hold {len(stacks)} cell stacks: {', '.join(map(repr, sorted(stacks)))}; "
            "pick one with scope= (path components of its names, e.g. scope='fw' or "
            "scope='encoder'), or read a forward/backward pair with bidirectional_from_tf"
        )
    (stack, layers), = stacks.items()
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"layers of {stack!r} must be numbered cell_0 .. cell_{{L-1}}, found "
                         f"{sorted(layers)}")
    return [TFCell(*layers[k]) for k in range(len(layers))]


def _canonical_leaf(leaf: str) -> str:
    """TF1's name of a leaf given in any TF version's spelling (``Gates/Linear/Matrix`` ->
    ``gates/kernel``, ``W_F_diag`` -> ``w_f_diag``)."""
    if re.fullmatch(r"W_(?:P_)?[1-9]\d*", leaf):
        raise ValueError(f"sharded TF 0.x variable {leaf!r}: concatenate the shards {leaf[:-1]}0, "
                         f"{leaf[:-1]}1, ... along axis 0 into {leaf[:-1]}0 first")
    if leaf.endswith("_diag"):
        return leaf.lower()
    part, _, tail = leaf.partition("/")
    if part in ("gates", "candidate", "Gates", "Candidate"):
        return f"{part.lower()}/{_TF_LEAF_SYNONYMS.get(tail, tail)}"
    return _TF_LEAF_SYNONYMS.get(leaf, leaf)


def _tf_class(cell: TFCell) -> type:
    """The lstmjax cell class of a TF cell's variables (canonical leaf names)."""
    if "gates/kernel" in cell.leaves:
        return GRU
    if "i/layer_norm/scale" in cell.leaves:
        return LayerNormLSTM
    if cell.scope in _TF_CELL_SCOPES:
        return _TF_CELL_SCOPES[cell.scope]
    raise ValueError(
        f"cannot tell the cell type of scope {cell.scope!r} with variables "
        f"{sorted(cell.leaves)}; known scopes: {sorted(_TF_CELL_SCOPES)}; call lstm_from_tf / "
        "gru_from_tf / simple_rnn_from_tf directly"
    )


def _lstm_from_tf_cell(cell: TFCell, *, forget_bias: float | None) -> tuple[LSTM, Params]:
    leaves = cell.leaves
    return lstm_from_tf(leaves["kernel"], leaves["bias"], forget_bias=forget_bias,
                        w_i_diag=leaves.get("w_i_diag"), w_f_diag=leaves.get("w_f_diag"),
                        w_o_diag=leaves.get("w_o_diag"),
                        projection_kernel=leaves.get("projection/kernel"))


def _lstm_to_tf_cell(cell: LSTM, params: Params) -> TFCell:
    leaves = {"kernel": params["kernel"], "bias": params["bias"]}
    if "peephole_i" in params:
        leaves.update({f"w_{g}_diag": params[f"peephole_{g}"] for g in "ifo"})
    if "proj_kernel" in params:
        leaves["projection/kernel"] = params["proj_kernel"]
    return TFCell("lstm_cell" if len(leaves) > 2 else "basic_lstm_cell", leaves)


def _gru_from_tf_cell(cell: TFCell, *, forget_bias: float | None) -> tuple[GRU, Params]:
    del forget_bias  # a GRU has none
    leaves = cell.leaves
    return gru_from_tf(leaves["gates/kernel"], leaves["gates/bias"], leaves["candidate/kernel"],
                       leaves["candidate/bias"])


def _gru_to_tf_cell(cell: GRU, params: Params) -> TFCell:
    if cell.reset_after:
        raise ValueError(f"{cell!r} (torch, cuDNN, flax form) has no TF1 GRUCell form: TF1 "
                         "resets h before the candidate's matmul; export it to torch or flax")
    return TFCell("gru_cell", {"gates/kernel": params["gate_kernel"],
                               "gates/bias": params["gate_bias"],
                               "candidate/kernel": params["candidate_kernel"],
                               "candidate/bias": params["candidate_bias"]})


def _simple_rnn_from_tf_cell(cell: TFCell, *, forget_bias: float | None
                             ) -> tuple[SimpleRNN, Params]:
    del forget_bias  # an Elman RNN has none
    return simple_rnn_from_tf(cell.leaves["kernel"], cell.leaves["bias"])


def _simple_rnn_to_tf_cell(cell: SimpleRNN, params: Params) -> TFCell:
    return TFCell("basic_rnn_cell", {"kernel": params["kernel"], "bias": params["bias"]})


_LN_GATES = ("i", "j", "f", "o", "new_h")


def _layer_norm_lstm_from_tf_cell(cell: TFCell, *, forget_bias: float | None
                                  ) -> tuple[LayerNormLSTM, Params]:
    leaves = cell.leaves
    norms = [{g: leaves[f"{g}/layer_norm/{part}"] for g in _LN_GATES
              if f"{g}/layer_norm/{part}" in leaves} for part in ("scale", "shift")]
    return layer_norm_lstm_from_tf(leaves["kernel"], *norms, forget_bias=forget_bias)


def _layer_norm_lstm_to_tf_cell(cell: LayerNormLSTM, params: Params) -> TFCell:
    leaves = {"kernel": params["kernel"]}
    for part in ("scale", "shift"):
        gates = jnp.split(params[f"gate_{part}"], 4)
        leaves.update({f"{g}/layer_norm/{part}": v for g, v in zip("ijfo", gates, strict=True)})
        if "cell_scale" in params:
            leaves[f"new_h/layer_norm/{part}"] = params[f"cell_{part}"]
    return TFCell("LayerNormalizedLSTMCell", leaves)


def _no_tf_cell_message(variables: Mapping[str, Any]) -> str:
    names = [name.split(":")[0].split("/")[-1] for name in variables]
    if any(_TF_UNNAMED.match(name) for name in names) or {"ix", "input_gate_i"} & set(names):
        return (
            "no TF cell scope found, but unnamed tf.Variables ('Variable', 'Variable_1', ...) or the "
            "text8 tutorial's matrices: read the tutorial's LSTM with lstm_from_tf_tutorial(variables), "
            "which maps unnamed variables in the notebook's creation order"
        )
    return ("no TF cell variables found: expected names like "
            "'.../multi_rnn_cell/cell_0/basic_lstm_cell/kernel' or '.../gru_cell/gates/kernel'; "
            f"got {sorted(variables)[:8]}")


_TUTORIAL_GATES = {  # lstmjax gate -> (tutorial name, Udacity short-name prefix)
    "i": ("input_gate", "i"),
    "j": ("memory", "c"),
    "f": ("forget_gate", "f"),
    "o": ("output_gate", "o"),
}


TUTORIAL_CREATION_ORDER = ("ix", "im", "ib", "fx", "fm", "fb", "cx", "cm", "cb", "ox", "om", "ob",
                           "saved_output", "saved_state", "w", "b")
"""The Udacity text8 notebook's variables in the order it creates them (``Variable``,
``Variable_1``, ... in its checkpoint)."""


def _tutorial_names(by_leaf: Mapping[str, Any]) -> dict[str, Any]:
    """Unnamed ``Variable_k`` renamed by :data:`TUTORIAL_CREATION_ORDER`, shapes checked."""
    renamed = {}
    for name, value in by_leaf.items():
        if _TF_UNNAMED.match(name):
            index = int(name.rpartition("_")[2]) if "_" in name else 0
            if index < len(TUTORIAL_CREATION_ORDER):
                renamed[TUTORIAL_CREATION_ORDER[index]] = value
        else:
            renamed[name] = value
    shapes = {name: tuple(np.shape(value)) for name, value in renamed.items()}
    inputs, hidden = shapes.get("ix", (0, 0))
    expected = {f"{g}{k}": shape for g in "ifco"
                for k, shape in (("x", (inputs, hidden)), ("m", (hidden, hidden)), ("b", (1, hidden)))}
    wrong = {name: shapes.get(name) for name, shape in expected.items() if shapes.get(name) != shape}
    if wrong or not hidden:
        raise ValueError(
            "unnamed variables 'Variable', 'Variable_1', ... do not have the text8 notebook's shapes "
            f"in its creation order {TUTORIAL_CREATION_ORDER[:12]} (ix [I, H], im [H, H], ib [1, H], "
            f"...): found {wrong or shapes}. Rename them to those names in your notebook's order "
            "and call lstm_from_tf_tutorial on the renamed dict"
        )
    return renamed


def lstm_from_tf_tutorial(variables: Mapping[str, Any]) -> tuple[LSTM, Params]:
    """``(LSTM(H, forget_bias=0.0), params)`` of the TF text8 tutorial's separate matrices.

    The tutorial's cell (Udacity deep-learning assignment 6) keeps, for each of ``input_gate``,
    ``forget_gate``, ``output_gate`` and ``memory`` (the candidate), an input matrix ``<g>_i [I, H]``,
    a previous-output matrix ``<g>_o [H, H]`` and a bias ``<g>_b [1, H]``::

        input_gate = sigmoid(x @ input_gate_i + h @ input_gate_o + input_gate_b)
        state = forget_gate * state + input_gate * tanh(x @ memory_i + h @ memory_o + memory_b)
        h = output_gate * tanh(state)

    That is an LSTM with ``forget_bias=0``. The assignment's short names (``ix, im, ib, fx, fm, fb,
    cx, cm, cb, ox, om, ob``) are accepted as well; a name prefix such as ``"lstm/"`` is ignored.

    The notebook itself creates unnamed ``tf.Variable`` objects, which a checkpoint stores as
    ``Variable``, ``Variable_1``, ...: these are read in its creation order,
    :data:`TUTORIAL_CREATION_ORDER` (``Variable`` = ``ix``, ..., ``Variable_11`` = ``ob``; then
    ``saved_output``, ``saved_state``, and the classifier ``w [H, V]``, ``b [V]``), and their shapes
    are checked against it. A notebook that creates them in another order needs a renamed dict.
    """
    by_leaf = {re.split(r"[/:]", name.split("/")[-1])[0]: value for name, value in variables.items()}
    if any(_TF_UNNAMED.match(name) for name in by_leaf):
        by_leaf = _tutorial_names(by_leaf)
    kernel_columns, bias_parts = [], []
    for long_name, short in _TUTORIAL_GATES.values():
        names = [(f"{long_name}_i", f"{long_name}_o", f"{long_name}_b"),
                 (f"{short}x", f"{short}m", f"{short}b")]
        found = next((n for n in names if all(part in by_leaf for part in n)), None)
        if found is None:
            raise ValueError(
                f"variables must hold {names[0]} (or {names[1]}) for the {long_name} gate; "
                f"got {sorted(variables)}"
            )
        w_input, w_output, b = (as_array(by_leaf[part]) for part in found)
        kernel_columns.append(jnp.concatenate([w_input, w_output], axis=0))  # [I + H, H]
        bias_parts.append(b.reshape(-1))
    bias = jnp.concatenate(bias_parts)
    return (LSTM(bias.shape[0] // 4, forget_bias=0.0),
            {"kernel": jnp.concatenate(kernel_columns, axis=1), "bias": bias})


# ---------------------------------------------------------------------------------------------
# PyTorch and cuDNN (jax.experimental.rnn): gate rows i, f, g, o (LSTM), r, z, n (GRU).
# ---------------------------------------------------------------------------------------------

_TORCH_KEY = re.compile(r"(?:^|\.)(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_TORCH_GATES = {4: LSTM, 3: GRU, 1: SimpleRNN}  # row blocks of weight_hh -> cell class


def is_torch_rnn_key(key: str) -> bool:
    """Whether ``key`` names a ``torch.nn.LSTM``/``GRU``/``RNN`` weight in a state dict
    (``weight_ih_l0``, ``rnn.bias_hh_l1_reverse``, ...)."""
    return _TORCH_KEY.search(key) is not None


def layers_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False) -> list[Layer]:
    """``[(cell, params)]`` per layer of a ``torch.nn.LSTM``, ``GRU`` or ``RNN`` state dict, the
    module type read off the shapes: ``weight_hh_l0`` has ``4H`` rows (LSTM; ``weight_hr`` for
    ``proj_size``), ``3H`` (GRU) or ``H`` (RNN, taken as ``nonlinearity="tanh"``: a ReLU RNN has
    no lstmjax cell). The cells are those of :func:`lstm_from_torch`, :func:`gru_from_torch` and
    :func:`simple_rnn_from_torch`."""
    return _torch_stack(state_dict, reverse, None)


def lstm_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False
                    ) -> list[tuple[LSTM, Params]]:
    """``[(LSTM(H, forget_bias=0.0, proj_size=P), params)]`` per layer of a ``torch.nn.LSTM``.

    Keys ``weight_ih_l{k} [4H, I]``, ``weight_hh_l{k} [4H, P]``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (gate rows i, f, g, o) and, with ``proj_size``, ``weight_hr_l{k} [P, H]``; any key prefix (a
    submodule's name) is ignored, and ``bias=False`` modules get zero biases. ``reverse`` picks
    the ``_reverse`` weights of a bidirectional module (run them with ``reverse=True``). torch
    has no forget bias constant, hence ``forget_bias=0.0``.
    """
    return _torch_stack(state_dict, reverse, LSTM)


def gru_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False
                   ) -> list[tuple[GRU, Params]]:
    """``[(GRU(H, reset_after=True), params)]`` per layer of a ``torch.nn.GRU``.

    torch's gate rows are r, z, n; its z is lstmjax's u (both keep the old state with weight z).
    ``candidate_bias`` is torch's ``b_in`` and ``candidate_recurrent_bias`` its ``b_hn``.
    """
    return _torch_stack(state_dict, reverse, GRU)


def simple_rnn_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False
                          ) -> list[tuple[SimpleRNN, Params]]:
    """``[(SimpleRNN(H), params)]`` per layer of a ``torch.nn.RNN(nonlinearity='tanh')``."""
    return _torch_stack(state_dict, reverse, SimpleRNN)


def layers_to_torch(layers: Sequence[Layer], *, prefix: str = "") -> dict[str, np.ndarray]:
    """A ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` state dict (``<prefix>weight_ih_l<k>``, ...) of a
    stack of ``[(cell, params)]``.

    torch keeps two biases where lstmjax keeps one: ``bias_ih`` gets lstmjax's, ``bias_hh`` zeros
    (the GRU's ``b_hn`` excepted), so :func:`layers_from_torch` reads the same parameters back
    exactly. An LSTM's ``forget_bias`` is added to the forget rows of ``bias_ih`` (torch has no
    such constant). Cells torch lacks are an error: peepholes, clipping, layer norm, TF1's
    ``GRU(reset_after=False)``, any cell that :data:`CONVERTERS` does not list.
    """
    state_dict = {}
    for layer, (cell, params) in enumerate(layers):
        for name, value in converter(cell, "torch", way="export").export(cell, params).items():
            state_dict[f"{prefix}{name}_l{layer}"] = np.asarray(value)
    return state_dict


def _torch_stack(state_dict: Mapping[str, Any], reverse: bool, expected: type | None
                 ) -> list[Layer]:
    """The layers of a torch RNN state dict, all of class ``expected`` if given."""
    layers = _torch_layers(state_dict, reverse)
    cls = _torch_class(layers[0])
    if expected is not None and cls is not expected:
        raise ValueError(f"the state dict holds a torch {cls.__name__}'s weights (weight_hh_l0 "
                         f"shaped {list(layers[0]['weight_hh'].shape)}), not a "
                         f"{expected.__name__}'s; read it with layers_from_torch")
    importer = converter(cls, "torch").import_
    return [importer(layer) for layer in layers]


def _torch_class(layer: Mapping[str, jax.Array]) -> type:
    """The cell class of a torch layer's weights, from the row blocks of ``weight_hh``."""
    rows = layer["weight_hh"].shape[0]
    hidden = layer["weight_hr"].shape[1] if "weight_hr" in layer else layer["weight_hh"].shape[1]
    cls = _TORCH_GATES.get(rows // hidden if rows % hidden == 0 else 0)
    if cls is None:
        raise ValueError(f"weight_hh_l0 has {rows} rows for hidden size {hidden}: not 4H (LSTM), "
                         "3H (GRU) or H (RNN)")
    return cls


def _torch_layers(state_dict: Mapping[str, Any], reverse: bool) -> list[dict[str, jax.Array]]:
    """Group a torch RNN state dict into ``[{weight_ih, weight_hh, bias_ih, bias_hh, ...}]``."""
    layers: dict[int, dict[str, jax.Array]] = {}
    for key, value in state_dict.items():
        match = _TORCH_KEY.search(key)
        if match and bool(match[3]) == reverse:
            layers.setdefault(int(match[2]), {})[match[1]] = as_array(value)
    if not layers:
        direction = "reverse " if reverse else ""
        raise ValueError(
            f"no {direction}torch RNN weights found: expected keys like 'weight_ih_l0"
            f"{'_reverse' if reverse else ''}' from module.state_dict()"
        )
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"torch layers must be numbered l0 .. l{{L-1}}, found {sorted(layers)}")
    for layer in layers.values():
        rows = layer["weight_ih"].shape[0]
        for name in ("bias_ih", "bias_hh"):
            layer.setdefault(name, jnp.zeros(rows, layer["weight_ih"].dtype))  # bias=False
    return [layers[k] for k in range(len(layers))]



def _lstm_from_torch_layer(layer: Mapping[str, jax.Array]) -> tuple[LSTM, Params]:
    params = {
        "kernel": _reorder(_fused_kernel(layer["weight_ih"], layer["weight_hh"]), "ifgo", "igfo"),
        "bias": _reorder(layer["bias_ih"] + layer["bias_hh"], "ifgo", "igfo"),
    }
    if "weight_hr" in layer:
        params["proj_kernel"] = layer["weight_hr"].T
    proj_size = layer["weight_hr"].shape[0] if "weight_hr" in layer else None
    return LSTM(layer["weight_ih"].shape[0] // 4, forget_bias=0.0, proj_size=proj_size), params


def _lstm_to_torch_layer(cell: LSTM, params: Params) -> dict[str, jax.Array]:
    _no_extras(cell, params, "torch", projection=True)
    kernel = _reorder(params["kernel"], "igfo", "ifgo")
    input_kernel, recurrent_kernel = _split_rows(kernel, cell.output_size)
    bias = _reorder(_lstm_bias_with_forget(cell, params["bias"]), "igfo", "ifgo")
    weights = {"weight_ih": input_kernel.T, "weight_hh": recurrent_kernel.T, "bias_ih": bias,
               "bias_hh": jnp.zeros_like(bias)}
    if "proj_kernel" in params:
        weights["weight_hr"] = params["proj_kernel"].T
    return weights


def _gru_from_torch_layer(layer: Mapping[str, jax.Array]) -> tuple[GRU, Params]:
    hidden = layer["weight_hh"].shape[1]
    w_ih, w_hh, b_ih, b_hh = (layer[n] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    gates, candidate = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
    return GRU(hidden, reset_after=True), {
        "gate_kernel": _fused_kernel(w_ih[gates], w_hh[gates]),
        "gate_bias": b_ih[gates] + b_hh[gates],
        "candidate_kernel": _fused_kernel(w_ih[candidate], w_hh[candidate]),
        "candidate_bias": b_ih[candidate],
        "candidate_recurrent_bias": b_hh[candidate],
    }


def _gru_to_torch_layer(cell: GRU, params: Params) -> dict[str, jax.Array]:
    if not cell.reset_after:
        raise ValueError(f"torch.nn.GRU resets after the recurrent matmul: {cell!r} (TF1's "
                         "reset_after=False) has no torch form")
    kernel = jnp.concatenate([params["gate_kernel"], params["candidate_kernel"]], axis=1)
    input_kernel, recurrent_kernel = _split_rows(kernel, cell.hidden_size)
    gate_bias = params["gate_bias"]
    return {"weight_ih": input_kernel.T, "weight_hh": recurrent_kernel.T,
            "bias_ih": jnp.concatenate([gate_bias, params["candidate_bias"]]),
            "bias_hh": jnp.concatenate([jnp.zeros_like(gate_bias),
                                        params["candidate_recurrent_bias"]])}


def _simple_rnn_from_torch_layer(layer: Mapping[str, jax.Array]) -> tuple[SimpleRNN, Params]:
    return SimpleRNN(layer["weight_hh"].shape[0]), {
        "kernel": _fused_kernel(layer["weight_ih"], layer["weight_hh"]),
        "bias": layer["bias_ih"] + layer["bias_hh"],
    }


def _simple_rnn_to_torch_layer(cell: SimpleRNN, params: Params) -> dict[str, jax.Array]:
    input_kernel, recurrent_kernel = _split_rows(params["kernel"], cell.hidden_size)
    bias = params["bias"]
    return {"weight_ih": input_kernel.T, "weight_hh": recurrent_kernel.T, "bias_ih": bias,
            "bias_hh": jnp.zeros_like(bias)}


def lstm_from_cudnn(weights: Any, *, input_size: int, hidden_size: int, num_layers: int = 1,
                    bidirectional: bool = False, reverse: bool = False
                    ) -> list[tuple[LSTM, Params]]:
    """``[(LSTM(H, forget_bias=0.0), params)]`` per layer of ``jax.experimental.rnn``'s weights.

    Args:
      weights: ``float32[N]``, the flat vector ``jax.experimental.rnn.lstm`` takes (its module
        docstring gives the layout; ``unpack_lstm_weights`` reads it): per layer and direction
        ``W_ih [4H, I]`` (layers after the first: ``I = H``, or ``2H`` if bidirectional) and
        ``W_hh [4H, H]``, then per layer and direction ``b_ih [4H]`` and ``b_hh [4H]``; gate rows
        i, f, g, o.
      input_size, hidden_size, num_layers, bidirectional: as given to ``rnn.lstm``.
      reverse: with ``bidirectional``, the reverse direction's layers (run them with
        ``reverse=True``; layer k > 0 reads both directions' outputs, forward first).
    """
    from jax.experimental import rnn

    weights = as_array(weights)
    size = rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)
    if weights.shape != (size,):
        raise ValueError(
            f"weights must be shaped [{size}] for input_size={input_size}, hidden_size="
            f"{hidden_size}, num_layers={num_layers}, bidirectional={bidirectional}, got "
            f"{list(weights.shape)}")
    if reverse and not bidirectional:
        raise ValueError("reverse=True reads the reverse direction of bidirectional weights; "
                         "pass bidirectional=True")
    unpacked = rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers,
                                       bidirectional)
    directions = 2 if bidirectional else 1
    importer = converter(LSTM, "cudnn").import_
    return [importer(dict(zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                              (part[k] for part in unpacked), strict=True)))
            for k in range(int(reverse), num_layers * directions, directions)]


def lstm_to_cudnn(layers: Sequence[Layer], *, reverse_layers: Sequence[Layer] | None = None
                  ) -> jax.Array:
    """``jax.experimental.rnn``'s flat ``float32`` weights of a stack of ``[(LSTM, params)]``
    (with ``reverse_layers``, of a bidirectional stack); :func:`lstm_from_cudnn` reads them back
    exactly. ``b_ih`` is the LSTM's bias with its ``forget_bias`` added to the forget rows,
    ``b_hh`` zeros. LSTMs with peepholes, a projection or clipping are errors (not in cuDNN's
    LSTM), and so is every other cell. Differentiable: it is the layout the "cudnn" engine
    hands cuDNN."""
    if reverse_layers is None:
        pseudo_layers = list(layers)
    else:
        pseudo_layers = [layer for pair in zip(layers, reverse_layers, strict=True)
                         for layer in pair]
    torch_layers = [
        converter(cell, "cudnn", way="export").export(
            cell, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
        for cell, params in pseudo_layers]
    return jnp.concatenate(
        [layer[name].reshape(-1) for layer in torch_layers for name in ("weight_ih", "weight_hh")]
        + [layer[name] for layer in torch_layers for name in ("bias_ih", "bias_hh")])


def _lstm_to_cudnn_layer(cell: LSTM, params: Params) -> dict[str, jax.Array]:
    """torch's layout (cuDNN's, per layer), for an LSTM that cuDNN's LSTM computes."""
    _no_extras(cell, params, "cuDNN")
    return _lstm_to_torch_layer(cell, params)


# ---------------------------------------------------------------------------------------------
# flax (Linen and NNX) and Equinox: gates i, f, g, o (LSTM), r, z, n (GRU).
# ---------------------------------------------------------------------------------------------


class _FlaxLayout(NamedTuple):
    """One flax cell's parameter layout: its cell class, flax's gate order, and for each leaf
    path its role (``x_kernel [I, G]``, ``h_kernel [H, G]``, ``x_bias``, ``h_bias``) and gate
    (None: every gate, side by side in gate order)."""

    cell: type
    gates: str
    leaves: dict[str, tuple[str, str | None]]


def _per_gate_lstm(forget_module: str) -> _FlaxLayout:
    """flax's ``LSTMCell``: a Dense per gate, ``i<g>`` on the input (no bias), ``h<g>`` on h."""
    inputs = {"i": "ii", "f": forget_module, "g": "ig", "o": "io"}
    return _FlaxLayout(LSTM, "ifgo", {
        **{f"{inputs[g]}/kernel": ("x_kernel", g) for g in "ifgo"},
        **{f"h{g}/{leaf}": (f"h_{leaf}", g) for g in "ifgo" for leaf in ("kernel", "bias")}})


_FLAX_LAYOUTS = {
    "flax.linen.LSTMCell or OptimizedLSTMCell": _per_gate_lstm("if"),
    "flax.nnx.LSTMCell": _per_gate_lstm("if_"),
    "flax.nnx.OptimizedLSTMCell": _FlaxLayout(LSTM, "ifgo", {
        "dense_i/kernel": ("x_kernel", None), "dense_h/kernel": ("h_kernel", None),
        "dense_h/bias": ("h_bias", None)}),
    "flax.linen.GRUCell": _FlaxLayout(GRU, "rzn", {
        **{f"i{g}/{leaf}": (f"x_{leaf}", g) for g in "rzn" for leaf in ("kernel", "bias")},
        **{f"h{g}/kernel": ("h_kernel", g) for g in "rzn"}, "hn/bias": ("h_bias", "n")}),
    "flax.nnx.GRUCell": _FlaxLayout(GRU, "rzn", {
        "dense_i/kernel": ("x_kernel", None), "dense_i/bias": ("x_bias", None),
        "dense_h/kernel": ("h_kernel", None)}),
}
_FLAX_LINEN = {LSTM: "flax.linen.LSTMCell or OptimizedLSTMCell", GRU: "flax.linen.GRUCell"}
_FLAX_ROLES = ("x_kernel", "h_kernel", "x_bias", "h_bias")


def lstm_from_flax(params: Any) -> tuple[LSTM, Params]:
    """``(LSTM(H, forget_bias=0.0), params)`` of a flax LSTM cell.

    Accepts the parameters of ``flax.linen.LSTMCell`` and ``OptimizedLSTMCell`` (one layout:
    ``{"ii": {"kernel": [I, H]}, "if": ..., "ig": ..., "io": ..., "hi": {"kernel": [H, H],
    "bias": [H]}, "hf": ..., "hg": ..., "ho": ...}``, optionally under ``"params"``), of
    ``flax.nnx.LSTMCell`` (``if_`` for ``if``) and of ``flax.nnx.OptimizedLSTMCell``
    (``dense_i: {kernel: [I, 4H]}``, ``dense_h: {kernel: [H, 4H], bias: [4H]}``, gates i, f, g,
    o): a parameter dict, an NNX module, its ``nnx.state`` (or ``nnx.split``'s state), or that
    state's ``to_pure_dict()``. The layout is read off the keys. flax's equations are lstmjax's
    with ``forget_bias=0`` and flax's candidate g as lstmjax's j. An NNX module whose
    ``gate_fn`` is not sigmoid or whose ``activation_fn`` is not tanh is an error (a parameter
    dict cannot tell: check the cell was built with the defaults).
    """
    x_kernel, h_kernel, x_bias, h_bias = _flax_roles(params, LSTM)
    kernel = jnp.concatenate([x_kernel, h_kernel])  # [I + H, 4H], flax's gates i, f, g, o
    return LSTM(h_kernel.shape[0], forget_bias=0.0), {
        "kernel": _reorder(kernel, "ifgo", "igfo"), "bias": _reorder(x_bias + h_bias, "ifgo", "igfo")}


def gru_from_flax(params: Any) -> tuple[GRU, Params]:
    """``(GRU(H, reset_after=True), params)`` of a flax GRU cell.

    Accepts the parameters of ``flax.linen.GRUCell`` (``ir``, ``iz``, ``in``: kernels ``[I, H]``
    and biases; ``hr``, ``hz``: kernels ``[H, H]``; ``hn``: kernel and bias) and of
    ``flax.nnx.GRUCell`` (``dense_i: {kernel: [I, 3H], bias: [3H]}``, ``dense_h: {kernel: [H,
    3H]}``, gates r, z, n), in the forms :func:`lstm_from_flax` takes. flax computes ``n =
    tanh(x W_in + b_in + r * (h W_hn + b_hn))``, ``h' = (1 - z) * n + z * h``: lstmjax's
    ``reset_after=True`` form, flax's z lstmjax's u, ``b_hn`` the ``candidate_recurrent_bias``
    (zeros for NNX, which has none).
    """
    x_kernel, h_kernel, x_bias, h_bias = _flax_roles(params, GRU)
    hidden = h_kernel.shape[0]
    gates, candidate = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
    return GRU(hidden, reset_after=True), {
        "gate_kernel": jnp.concatenate([x_kernel[:, gates], h_kernel[:, gates]]),
        "gate_bias": x_bias[gates] + h_bias[gates],
        "candidate_kernel": jnp.concatenate([x_kernel[:, candidate], h_kernel[:, candidate]]),
        "candidate_bias": x_bias[candidate],
        "candidate_recurrent_bias": h_bias[candidate],
    }


def lstm_to_flax(cell: LSTM, params: Params) -> dict[str, dict[str, jax.Array]]:
    """``flax.linen.LSTMCell`` / ``OptimizedLSTMCell`` parameters (without the ``"params"``
    level) of an LSTM; :func:`lstm_from_flax` reads them back exactly. ``forget_bias`` is added to
    ``hf``'s bias (flax has no such constant); peepholes, a projection and clipping are errors."""
    _require_class(cell, LSTM, "flax")
    _no_extras(cell, params, "flax")
    kernel = _reorder(params["kernel"], "igfo", "ifgo")  # flax's gate order
    input_kernel, recurrent_kernel = _split_rows(kernel, cell.hidden_size)
    bias = _reorder(_lstm_bias_with_forget(cell, params["bias"]), "igfo", "ifgo")
    return _flax_tree(LSTM, {"x_kernel": input_kernel, "h_kernel": recurrent_kernel,
                             "h_bias": bias})


def gru_to_flax(cell: GRU, params: Params) -> dict[str, dict[str, jax.Array]]:
    """``flax.linen.GRUCell`` parameters of a ``GRU(H, reset_after=True)``; :func:`gru_from_flax`
    reads them back exactly. TF1's ``reset_after=False`` is an error."""
    _require_class(cell, GRU, "flax")
    if not cell.reset_after:
        raise ValueError(f"flax's GRUCell resets after the recurrent matmul: {cell!r} (TF1's "
                         "reset_after=False) has no flax form")
    kernel = jnp.concatenate([params["gate_kernel"], params["candidate_kernel"]], axis=1)
    input_kernel, recurrent_kernel = _split_rows(kernel, cell.hidden_size)
    gate_bias = params["gate_bias"]
    return _flax_tree(GRU, {
        "x_kernel": input_kernel, "h_kernel": recurrent_kernel,
        "x_bias": jnp.concatenate([gate_bias, params["candidate_bias"]]),
        "h_bias": jnp.concatenate([jnp.zeros_like(gate_bias),
                                   params["candidate_recurrent_bias"]])})


def _require_class(cell: Any, cls: type, fmt: str) -> None:
    if type(cell) is not cls:
        raise ValueError(f"cannot convert {cell!r} to {fmt} as a {cls.__name__}; supported: "
                         f"{supported()}")


def _flax_roles(source: Any, cls: type) -> tuple[jax.Array, ...]:
    """``(x_kernel [I, G], h_kernel [H, G], x_bias [G], h_bias [G])`` of flax parameters of a
    ``cls`` cell, gates side by side in flax's order; a bias the layout lacks is zeros."""
    paths = _flatten(_flax_pure_tree(source))
    name = next((n for n, layout in _FLAX_LAYOUTS.items() if set(layout.leaves) == set(paths)),
                None)
    if name is None or _FLAX_LAYOUTS[name].cell is not cls:
        expected = {n: sorted(layout.leaves) for n, layout in _FLAX_LAYOUTS.items()
                    if layout.cell is cls}
        found = f"a {name}'s" if name else "none of these"
        raise ValueError(f"expected the parameters of a flax {cls.__name__} cell, one of "
                         f"{expected}; got {found}: {sorted(paths)}")
    layout = _FLAX_LAYOUTS[name]
    blocks: dict[str, dict[str, jax.Array]] = {}
    for path, (role, gate) in layout.leaves.items():
        value = as_array(paths[path])
        if gate is None:
            blocks[role] = dict(zip(layout.gates, jnp.split(value, len(layout.gates), axis=-1),
                                    strict=True))
        else:
            blocks.setdefault(role, {})[gate] = value
    hidden_kernel = blocks["h_kernel"][layout.gates[0]]  # [H, H]
    zeros = jnp.zeros(hidden_kernel.shape[-1:], hidden_kernel.dtype)
    return tuple(jnp.concatenate([blocks.get(role, {}).get(g, zeros) for g in layout.gates],
                                 axis=-1) for role in _FLAX_ROLES)


def _flax_tree(cls: type, fused: Mapping[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    """flax Linen parameters of a ``cls`` cell from arrays by role (``x_kernel [I, G]``, ...),
    their gates side by side in flax's order."""
    layout = _FLAX_LAYOUTS[_FLAX_LINEN[cls]]
    tree: dict[str, dict[str, jax.Array]] = {}
    for path, (role, gate) in layout.leaves.items():
        blocks = jnp.split(fused[role], len(layout.gates), axis=-1)
        module, leaf = path.split("/")
        tree.setdefault(module, {})[leaf] = blocks[layout.gates.index(gate)]
    return tree


def _flax_pure_tree(source: Any) -> Mapping[str, Any]:
    """Nested dicts of arrays from a flax parameter dict (``{"params": ...}`` unwrapped), an NNX
    state or an NNX module, whose activations are checked."""
    if not isinstance(source, Mapping) or hasattr(source, "to_pure_dict"):  # NNX's types
        from flax import nnx

        if isinstance(source, nnx.Module):
            _check_activations(source)
            source = nnx.state(source, nnx.Param)
        source = nnx.to_pure_dict(source)
    if not isinstance(source, Mapping):
        raise ValueError(f"expected flax parameters (a dict), an NNX state or an NNX cell, got "
                         f"{type(source).__name__}")
    if set(source) == {"params"}:
        source = source["params"]
    return source


def _check_activations(module: Any) -> None:
    """A ValueError unless an NNX cell's ``gate_fn`` is sigmoid and ``activation_fn`` tanh."""
    allowed = {"gate_fn": (jax.nn.sigmoid,), "activation_fn": (jax.nn.tanh, jnp.tanh)}
    for attribute, functions in allowed.items():
        function = getattr(module, attribute, functions[0])
        if not any(function is f for f in functions):
            raise ValueError(
                f"{type(module).__name__}.{attribute} is {getattr(function, '__name__', function)}: "
                "lstmjax's cells compute "
                f"{functions[0].__name__} there, so this cell has no lstmjax form")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a/b": leaf}`` of nested mappings."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def lstm_from_equinox(cell: Any) -> tuple[LSTM, Params]:
    """``(LSTM(H, forget_bias=0.0), params)`` of an ``equinox.nn.LSTMCell``.

    Equinox keeps torch's layout with one bias: ``weight_ih [4H, I]``, ``weight_hh [4H, H]``
    (gate rows i, f, g, o), ``bias [4H]`` (None with ``use_bias=False``), and torch's equations
    (``forget_bias=0``). Its carry is ``(h, c)``, lstmjax's ``LSTMState(c, h)``. Duck-typed on
    those attributes: equinox need not be importable.
    """
    return _lstm_from_torch_layer(_equinox_layer(cell, LSTM))


def gru_from_equinox(cell: Any) -> tuple[GRU, Params]:
    """``(GRU(H, reset_after=True), params)`` of an ``equinox.nn.GRUCell``.

    Equinox's ``weight_ih [3H, I]``, ``weight_hh [3H, H]`` (gate rows r, z, n), ``bias [3H]`` on
    the input and ``bias_n [H]`` inside the reset product: ``n = tanh(x W_in + b_in + r * (h W_hn
    + b_n))``, ``h' = n + z * (h - n)``: lstmjax's ``reset_after=True`` form (torch's), ``bias_n``
    the ``candidate_recurrent_bias``.
    """
    return _gru_from_torch_layer(_equinox_layer(cell, GRU))


def _equinox_layer(cell: Any, cls: type) -> dict[str, jax.Array]:
    """torch's layer layout of an Equinox LSTM or GRU cell (its biases zeros without
    ``use_bias``)."""
    gates = {LSTM: 4, GRU: 3}[cls]
    weight_hh = getattr(cell, "weight_hh", None)
    shape = getattr(weight_hh, "shape", ())
    is_gru = hasattr(cell, "bias_n")
    if (not hasattr(cell, "weight_ih") or len(shape) != 2 or shape[0] != gates * shape[1]
            or is_gru != (cls is GRU)):
        raise ValueError(
            f"expected an equinox.nn.{cls.__name__}Cell (weight_ih [{gates}H, I], weight_hh "
            f"[{gates}H, H], bias{', bias_n' if cls is GRU else ''}), got "
            f"{type(cell).__name__} with weight_hh shaped {list(shape)}")
    weight_ih, weight_hh = as_array(cell.weight_ih), as_array(weight_hh)
    hidden = shape[1]

    def bias(name: str, size: int) -> jax.Array:
        value = getattr(cell, name)
        return jnp.zeros(size, weight_hh.dtype) if value is None else as_array(value)

    bias_hh = jnp.zeros(gates * hidden, weight_hh.dtype)
    if cls is GRU:
        bias_hh = jnp.concatenate([bias_hh[: 2 * hidden], bias("bias_n", hidden)])
    return {"weight_ih": weight_ih, "weight_hh": weight_hh,
            "bias_ih": bias("bias", gates * hidden), "bias_hh": bias_hh}


# ---------------------------------------------------------------------------------------------
# The registry.
# ---------------------------------------------------------------------------------------------

CONVERTERS: dict[tuple[type, str], Converter] = {
    (LSTM, "tf"): Converter(_lstm_from_tf_cell, _lstm_to_tf_cell),
    (GRU, "tf"): Converter(_gru_from_tf_cell, _gru_to_tf_cell),
    (SimpleRNN, "tf"): Converter(_simple_rnn_from_tf_cell, _simple_rnn_to_tf_cell),
    (LayerNormLSTM, "tf"): Converter(_layer_norm_lstm_from_tf_cell, _layer_norm_lstm_to_tf_cell),
    (LSTM, "torch"): Converter(_lstm_from_torch_layer, _lstm_to_torch_layer),
    (GRU, "torch"): Converter(_gru_from_torch_layer, _gru_to_torch_layer),
    (SimpleRNN, "torch"): Converter(_simple_rnn_from_torch_layer, _simple_rnn_to_torch_layer),
    (LSTM, "cudnn"): Converter(_lstm_from_torch_layer, _lstm_to_cudnn_layer),
    (LSTM, "flax"): Converter(lstm_from_flax, lstm_to_flax),
    (GRU, "flax"): Converter(gru_from_flax, gru_to_flax),
    (LSTM, "equinox"): Converter(lstm_from_equinox, None),
    (GRU, "equinox"): Converter(gru_from_equinox, None),
}
"""``(cell class, format) -> Converter``: the one table of conversions, a layer each way. The
formats' layers: ``"tf"`` a :class:`TFCell` (import also takes ``forget_bias=``, required for the
LSTMs); ``"torch"`` and ``"cudnn"`` one layer's ``{weight_ih, weight_hh, bias_ih, bias_hh[,
weight_hr]}`` (torch's layout, which cuDNN's flat vector holds per layer); ``"flax"`` a Linen
cell's parameter dict (import also reads NNX); ``"equinox"`` an Equinox cell. The stack functions
(:func:`layers_from_tf`, :func:`layers_to_torch`, :func:`lstm_to_cudnn`, ...) look cells up here.
A new conversion is one entry and its two functions; the tests iterate this table."""
