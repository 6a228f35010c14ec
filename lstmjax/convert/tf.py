"""TensorFlow 1: single cells (``BasicLSTMCell``, ``LSTMCell``, ``GRUCell``, ``BasicRNNCell``,
r2rt's layer-normalized LSTM), ``MultiRNNCell`` stacks and bidirectional RNNs read off variable
names of any TF1 or TF 0.x spelling, and the text8 tutorial's separate matrices. TF1's layout is
lstmjax's; its LSTM ``forget_bias`` is not stored in the weights, so the LSTM importers take it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.cells import GRU, LSTM, LayerNormLSTM, SimpleRNN
from lstmjax.convert.layout import Layer, Params, as_array, require_shape
from lstmjax.convert.registry import converter


def _require_forget_bias(forget_bias: float | None) -> float:
    if forget_bias is None:
        raise ValueError(
            "forget_bias is not stored in TF weights; pass the value the cell was built with "
            "(TF's BasicLSTMCell/LSTMCell default 1.0, the PTB tutorial 0.0)")
    return forget_bias


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
    require_shape(kernel.ndim == 2 and kernel.shape[1] % 4 == 0, "kernel", "[I + P, 4H]", kernel)
    require_shape(bias.shape == (kernel.shape[1],), "bias", f"[{kernel.shape[1]}]", bias)
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


def lstm_from_tf_cell(cell: TFCell, *, forget_bias: float | None) -> tuple[LSTM, Params]:
    leaves = cell.leaves
    return lstm_from_tf(leaves["kernel"], leaves["bias"], forget_bias=forget_bias,
                        w_i_diag=leaves.get("w_i_diag"), w_f_diag=leaves.get("w_f_diag"),
                        w_o_diag=leaves.get("w_o_diag"),
                        projection_kernel=leaves.get("projection/kernel"))


def lstm_to_tf_cell(cell: LSTM, params: Params) -> TFCell:
    leaves = {"kernel": params["kernel"], "bias": params["bias"]}
    if "peephole_i" in params:
        leaves.update({f"w_{g}_diag": params[f"peephole_{g}"] for g in "ifo"})
    if "proj_kernel" in params:
        leaves["projection/kernel"] = params["proj_kernel"]
    return TFCell("lstm_cell" if len(leaves) > 2 else "basic_lstm_cell", leaves)


def gru_from_tf_cell(cell: TFCell, *, forget_bias: float | None) -> tuple[GRU, Params]:
    del forget_bias  # a GRU has none
    leaves = cell.leaves
    return gru_from_tf(leaves["gates/kernel"], leaves["gates/bias"], leaves["candidate/kernel"],
                       leaves["candidate/bias"])


def gru_to_tf_cell(cell: GRU, params: Params) -> TFCell:
    if cell.reset_after:
        raise ValueError(f"{cell!r} (torch, cuDNN, flax form) has no TF1 GRUCell form: TF1 "
                         "resets h before the candidate's matmul; export it to torch or flax")
    return TFCell("gru_cell", {"gates/kernel": params["gate_kernel"],
                               "gates/bias": params["gate_bias"],
                               "candidate/kernel": params["candidate_kernel"],
                               "candidate/bias": params["candidate_bias"]})


def simple_rnn_from_tf_cell(cell: TFCell, *, forget_bias: float | None
                             ) -> tuple[SimpleRNN, Params]:
    del forget_bias  # an Elman RNN has none
    return simple_rnn_from_tf(cell.leaves["kernel"], cell.leaves["bias"])


def simple_rnn_to_tf_cell(cell: SimpleRNN, params: Params) -> TFCell:
    return TFCell("basic_rnn_cell", {"kernel": params["kernel"], "bias": params["bias"]})


_LN_GATES = ("i", "j", "f", "o", "new_h")


def layer_norm_lstm_from_tf_cell(cell: TFCell, *, forget_bias: float | None
                                  ) -> tuple[LayerNormLSTM, Params]:
    leaves = cell.leaves
    norms = [{g: leaves[f"{g}/layer_norm/{part}"] for g in _LN_GATES
              if f"{g}/layer_norm/{part}" in leaves} for part in ("scale", "shift")]
    return layer_norm_lstm_from_tf(leaves["kernel"], *norms, forget_bias=forget_bias)


def layer_norm_lstm_to_tf_cell(cell: LayerNormLSTM, params: Params) -> TFCell:
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
