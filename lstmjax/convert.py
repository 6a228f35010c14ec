"""Weight import and export: parameters trained with TensorFlow 1 or PyTorch, in lstmjax's layouts.

Every function takes arrays (NumPy, JAX, or torch tensors) and returns lstmjax cell parameters (a
dict of ``jax.Array`` per layer), so a model trained elsewhere gives the same outputs here. The
functions are jnp code, so they also run under ``jax.grad``: gradients can be taken in the source
layout. The cell options must match the weights; this table says which cell each result is for.

===============================  ====================================  ==============================
function                         source layout                         use with
===============================  ====================================  ==============================
``lstm_from_tf``                 TF1 ``BasicLSTMCell`` / ``LSTMCell``   ``LSTM(H, forget_bias=<TF's>,
                                 ``kernel [I+P, 4H]`` (i, j, f, o),     use_peepholes, proj_size)``
                                 ``bias [4H]``, ``w_{i,f,o}_diag [H]``,
                                 ``projection/kernel [H, P]``
``gru_from_tf``                  TF1 ``GRUCell`` ``gates/kernel``       ``GRU(H, reset_after=False)``
                                 ``[I+H, 2H]`` (r, u), ``gates/bias``,
                                 ``candidate/kernel [I+H, H]``,
                                 ``candidate/bias``
``simple_rnn_from_tf``           TF1 ``BasicRNNCell`` ``kernel``,       ``SimpleRNN(H)``
                                 ``bias``
``layer_norm_lstm_from_tf``      r2rt's layer-normalized LSTM:          ``LayerNormLSTM(H,
                                 ``kernel [I+H, 4H]`` (i, j, f, o),     forget_bias=<its>,
                                 ``{i,j,f,o,new_h}/layer_norm/          layer_norm_cell=<new_h given>)``
                                 {scale,shift} [H]``
``layers_from_tf``               a dict ``{variable name: array}`` of   the cell named in the scope
                                 a TF1 cell or ``MultiRNNCell`` stack
                                 (``.../cell_0/basic_lstm_cell/kernel``)
``cells_from_tf``                as ``layers_from_tf``; ``scope=``      the cells it returns beside
                                 picks a stack, ``forget_bias=`` must   the params
                                 be given for an LSTM
``bidirectional_from_tf``        ``bidirectional_rnn/fw/...`` and       fw cells; bw cells with
                                 ``.../bw/...``                         ``reverse=True``
``cells_from_torch``             a ``torch.nn.LSTM``/``GRU``/``RNN``    the cells it returns
                                 state dict, the module type read off
``lstm_from_tf_tutorial``        the TF text8 tutorial's 8 matrices     ``LSTM(H, forget_bias=0.0)``
                                 and 4 biases (``input_gate_i [I,H]``,
                                 ``input_gate_o [H,H]``,
                                 ``input_gate_b [1,H]``, ...)
``lstm_from_torch``              ``torch.nn.LSTM`` state dict           ``LSTM(H, forget_bias=0.0,
                                 (``weight_ih_l{k} [4H, I]`` i, f, g,   proj_size=<its>)``
                                 o; ``weight_hh_l{k}``, ``bias_ih_l{k}``,
                                 ``bias_hh_l{k}``, ``weight_hr_l{k}``)
``gru_from_torch``               ``torch.nn.GRU`` state dict (r, z, n)  ``GRU(H, reset_after=True)``
``simple_rnn_from_torch``        ``torch.nn.RNN`` state dict (tanh)     ``SimpleRNN(H)``
===============================  ====================================  ==============================

TensorFlow's LSTM ``forget_bias`` is added inside the forget sigmoid and is not stored in the
weights: give the cell the same value (TF's default is 1.0). PyTorch has no such constant, so its
weights need ``forget_bias=0.0``. The torch functions return one dict per layer (the ``_reverse``
weights of a bidirectional module with ``reverse=True``); PyTorch's two biases are summed where
lstmjax keeps one, except the GRU's recurrent candidate bias, which the reset gate multiplies.

Export goes the other way: :func:`layers_to_tf` writes a ``MultiRNNCell`` stack's TF1 variables and
:func:`layers_to_torch` a torch state dict; reading either back gives the same parameters bit for
bit. Whole language models (embedding, stack, softmax) and files are in :mod:`lstmjax.interop`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.cells import GRU, LSTM, LayerCell, LayerNormLSTM, SimpleRNN

Params = dict[str, jax.Array]

_TF_CELL_SCOPES = {  # cell scope -> lstmjax cell (lstmjax.cells.CELLS); TF 0.x spellings too
    "basic_lstm_cell": "lstm",
    "lstm_cell": "lstm",
    "gru_cell": "gru",
    "basic_rnn_cell": "rnn",
    "BasicLSTMCell": "lstm",
    "LSTMCell": "lstm",
    "GRUCell": "gru",
    "BasicRNNCell": "rnn",
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
_TORCH_KEY = re.compile(r"(?:^|\.)(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")


def _array(value: Any) -> jax.Array:
    """A JAX array from a NumPy or JAX array or a torch tensor."""
    if hasattr(value, "detach"):
        value = np.asarray(value.detach().cpu().numpy())
    return jnp.asarray(value)


def lstm_from_tf(
    kernel: Any,
    bias: Any,
    *,
    w_i_diag: Any = None,
    w_f_diag: Any = None,
    w_o_diag: Any = None,
    projection_kernel: Any = None,
) -> Params:
    """Parameters of :class:`lstmjax.LSTM` from a TF1 ``BasicLSTMCell`` or ``LSTMCell``.

    TF1's layout is lstmjax's: ``kernel [I + P, 4H]`` (input rows first; gate columns i, j, f, o),
    ``bias [4H]``. Give all three peepholes ``w_*_diag: [H]`` or none, and ``projection_kernel:
    [H, P]`` for ``num_proj``. Use with ``LSTM(H, forget_bias=<the TF cell's forget_bias>,
    use_peepholes=..., proj_size=P)``.
    """
    kernel, bias = _array(kernel), _array(bias)
    _require(kernel.ndim == 2 and kernel.shape[1] % 4 == 0, "kernel", "[I + P, 4H]", kernel)
    _require(bias.shape == (kernel.shape[1],), "bias", f"[{kernel.shape[1]}]", bias)
    params = {"kernel": kernel, "bias": bias}
    peepholes = {"peephole_i": w_i_diag, "peephole_f": w_f_diag, "peephole_o": w_o_diag}
    given = [value is not None for value in peepholes.values()]
    if any(given) and not all(given):
        raise ValueError("give all three peepholes w_i_diag, w_f_diag, w_o_diag, or none")
    if all(given):
        params.update({name: _array(value) for name, value in peepholes.items()})
    if projection_kernel is not None:
        params["proj_kernel"] = _array(projection_kernel)
    return params


def gru_from_tf(gates_kernel: Any, gates_bias: Any, candidate_kernel: Any, candidate_bias: Any) -> Params:
    """Parameters of ``GRU(H, reset_after=False)`` from a TF1 ``GRUCell``.

    ``gates/kernel [I + H, 2H]`` (columns r, u), ``gates/bias [2H]``, ``candidate/kernel
    [I + H, H]``, ``candidate/bias [H]``: the same layout, renamed.
    """
    return {
        "gate_kernel": _array(gates_kernel),
        "gate_bias": _array(gates_bias),
        "candidate_kernel": _array(candidate_kernel),
        "candidate_bias": _array(candidate_bias),
    }


def simple_rnn_from_tf(kernel: Any, bias: Any) -> Params:
    """Parameters of ``SimpleRNN(H)`` from a TF1 ``BasicRNNCell``: ``kernel [I + H, H]``, ``bias [H]``."""
    return {"kernel": _array(kernel), "bias": _array(bias)}


def layer_norm_lstm_from_tf(
    kernel: Any, scales: Mapping[str, Any], shifts: Mapping[str, Any]
) -> Params:
    """Parameters of :class:`lstmjax.LayerNormLSTM` from r2rt's layer-normalized LSTM cell.

    Args:
      kernel: ``[I + H, 4H]``, the cell's bias-free linear map (gate columns i, j, f, o).
      scales, shifts: the layer-norm ``scale`` and ``shift`` vectors ``[H]`` keyed by their scope:
        ``"i"``, ``"j"``, ``"f"``, ``"o"``, and ``"new_h"`` (the cell-state norm) if the cell has it.

    Use with ``LayerNormLSTM(H, forget_bias=<the cell's>, layer_norm_cell=("new_h" in scales))``.
    """
    gates = ("i", "j", "f", "o")
    expected = set(gates) | ({"new_h"} & set(scales))
    for name, given in (("scales", scales), ("shifts", shifts)):
        if set(given) != expected:
            raise ValueError(
                f"{name} must have keys {sorted(expected)} (gates i, j, f, o and optionally "
                f"new_h, in both scales and shifts), got {sorted(given)}"
            )
    params = {
        "kernel": _array(kernel),
        "gate_scale": jnp.concatenate([_array(scales[g]) for g in gates]),
        "gate_shift": jnp.concatenate([_array(shifts[g]) for g in gates]),
    }
    if "new_h" in scales:
        params["cell_scale"] = _array(scales["new_h"])
        params["cell_shift"] = _array(shifts["new_h"])
    return params


def layers_from_tf(variables: Mapping[str, Any], *, scope: str | None = None) -> list[Params]:
    """Per-layer parameters from the variables of a TF cell or ``MultiRNNCell`` stack.

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

    Args:
      variables: ``{name: array}``.
      scope: pick one stack where the variables hold several (a bidirectional RNN's ``fw`` and
        ``bw``, an encoder and a decoder): path components that the names must contain, e.g.
        ``"encoder"`` or ``"bidirectional_rnn/fw"``. Several stacks and no scope is an error
        that lists them.

    Returns:
      One params dict per layer, first layer first; each for the cell that
      :func:`lstm_from_tf`, :func:`gru_from_tf`, :func:`simple_rnn_from_tf` or
      :func:`layer_norm_lstm_from_tf` documents. :func:`cells_from_tf` also returns the cells.
    """
    return [params for _, params in _tf_stack(variables, scope)]


def cells_from_tf(
    variables: Mapping[str, Any], *, forget_bias: float | None = None, scope: str | None = None
) -> tuple[list[LayerCell], list[Params]]:
    """``(cells, layers)``: :func:`layers_from_tf`'s parameters and the cells to run them with.

    The options stored in the weights are read off them: the cell type, hidden size, LSTM
    peepholes and projection size, the layer norm on the LN-LSTM's cell state. ``forget_bias``
    is not stored (TF adds it inside the forget sigmoid), so an LSTM needs it given: the value the
    TF cell was built with (``BasicLSTMCell``/``LSTMCell`` default 1.0; the PTB tutorial 0.0).
    Neither are ``LSTMCell``'s ``cell_clip``/``proj_clip``, nor the LN-LSTM's ``epsilon`` (r2rt's
    1e-5 is the default): set those with ``dataclasses.replace(cell, ...)`` if the source used
    others. TF1's ``GRUCell`` is ``GRU(H, reset_after=False)``.
    """
    kinds_and_params = _tf_stack(variables, scope)
    cells = [_cell(kind, params, forget_bias=forget_bias, source="TF")
             for kind, params in kinds_and_params]
    return cells, [params for _, params in kinds_and_params]


def bidirectional_from_tf(
    variables: Mapping[str, Any], *, forget_bias: float | None = None, scope: str | None = None
) -> tuple[tuple[list[LayerCell], list[Params]], tuple[list[LayerCell], list[Params]]]:
    """``((fw_cells, fw_layers), (bw_cells, bw_layers))`` of TF's ``bidirectional_dynamic_rnn``.

    Names like ``bidirectional_rnn/fw/basic_lstm_cell/kernel`` and ``.../bw/...`` (or
    ``stack_bidirectional_rnn/cell_k/bidirectional_rnn/fw/...``); ``scope`` picks one
    bidirectional RNN among several, as in :func:`layers_from_tf`. Run the ``bw`` layers with
    ``reverse=True`` (:func:`lstmjax.bidirectional` runs a pair).
    """
    selected = _select(variables, scope)
    return tuple(
        cells_from_tf(_select(selected, direction), forget_bias=forget_bias)
        for direction in ("fw", "bw")
    )


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


def _tf_stack(variables: Mapping[str, Any], scope: str | None) -> list[tuple[str, Params]]:
    """``[(cell kind, params)]`` per layer of the one TF cell stack in ``variables``."""
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
        groups.setdefault(("/".join(path), layer, match["scope"]), {})[leaf] = _array(value)
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
    return [_tf_layer(*layers[k]) for k in range(len(layers))]


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


def _tf_layer(scope: str, leaves: dict[str, jax.Array]) -> tuple[str, Params]:
    """``(cell kind, params)`` of one TF cell scope's leaves (canonical names)."""
    if "gates/kernel" in leaves:
        return "gru", gru_from_tf(
            leaves["gates/kernel"], leaves["gates/bias"],
            leaves["candidate/kernel"], leaves["candidate/bias"],
        )
    if "i/layer_norm/scale" in leaves:
        names = ("i", "j", "f", "o", "new_h")
        return "ln_lstm", layer_norm_lstm_from_tf(
            leaves["kernel"],
            {g: leaves[f"{g}/layer_norm/scale"] for g in names if f"{g}/layer_norm/scale" in leaves},
            {g: leaves[f"{g}/layer_norm/shift"] for g in names if f"{g}/layer_norm/shift" in leaves},
        )
    kind = _TF_CELL_SCOPES.get(scope)
    if kind == "rnn":
        return kind, simple_rnn_from_tf(leaves["kernel"], leaves["bias"])
    if kind == "lstm":
        return kind, lstm_from_tf(
            leaves["kernel"],
            leaves["bias"],
            w_i_diag=leaves.get("w_i_diag"),
            w_f_diag=leaves.get("w_f_diag"),
            w_o_diag=leaves.get("w_o_diag"),
            projection_kernel=leaves.get("projection/kernel"),
        )
    raise ValueError(
        f"cannot tell the cell type of scope {scope!r} with variables {sorted(leaves)}; known "
        f"scopes: {sorted(_TF_CELL_SCOPES)}; call lstm_from_tf / gru_from_tf / "
        "simple_rnn_from_tf directly"
    )


def _cell(kind: str, params: Params, *, forget_bias: float | None, source: str) -> LayerCell:
    """The lstmjax cell (``CELLS[kind]``) that runs ``params``, its options read off the shapes."""
    if kind in ("lstm", "ln_lstm") and forget_bias is None:
        raise ValueError(
            f"forget_bias is not stored in {source} weights; pass the value the cell was built "
            "with (TF's BasicLSTMCell/LSTMCell default 1.0, the PTB tutorial 0.0, torch 0.0)"
        )
    if kind == "lstm":
        proj = params.get("proj_kernel")
        return LSTM(params["bias"].shape[0] // 4, forget_bias=forget_bias,
                    use_peepholes="peephole_i" in params,
                    proj_size=None if proj is None else proj.shape[1])
    if kind == "ln_lstm":
        return LayerNormLSTM(params["gate_scale"].shape[0] // 4, forget_bias=forget_bias,
                             layer_norm_cell="cell_scale" in params)
    if kind == "gru":
        return GRU(params["candidate_bias"].shape[0],
                   reset_after="candidate_recurrent_bias" in params)
    return SimpleRNN(params["bias"].shape[0])


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


def lstm_from_tf_tutorial(variables: Mapping[str, Any]) -> Params:
    """Parameters of ``LSTM(H, forget_bias=0.0)`` from the TF text8 tutorial's separate matrices.

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
        w_input, w_output, b = (_array(by_leaf[part]) for part in found)
        kernel_columns.append(jnp.concatenate([w_input, w_output], axis=0))  # [I + H, H]
        bias_parts.append(b.reshape(-1))
    return {"kernel": jnp.concatenate(kernel_columns, axis=1), "bias": jnp.concatenate(bias_parts)}


def _torch_layers(state_dict: Mapping[str, Any], reverse: bool) -> list[dict[str, jax.Array]]:
    """Group a torch RNN state dict into ``[{weight_ih, weight_hh, bias_ih, bias_hh, ...}]``."""
    layers: dict[int, dict[str, jax.Array]] = {}
    for key, value in state_dict.items():
        match = _TORCH_KEY.search(key)
        if match and bool(match[3]) == reverse:
            layers.setdefault(int(match[2]), {})[match[1]] = _array(value)
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


def _fused_kernel(weight_ih: jax.Array, weight_hh: jax.Array) -> jax.Array:
    """torch ``weight_ih [G, I]`` and ``weight_hh [G, P]`` -> ``[I + P, G]`` (input rows first)."""
    return jnp.concatenate([weight_ih, weight_hh], axis=1).T


def _torch_to_tf_gate_order(a: jax.Array) -> jax.Array:
    """Reorder the last axis from torch/cuDNN gates (i, f, g, o) to lstmjax's (i, j=g, f, o)."""
    i, f, g, o = jnp.split(a, 4, axis=-1)
    return jnp.concatenate([i, g, f, o], axis=-1)


def lstm_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False) -> list[Params]:
    """Per-layer parameters of ``LSTM(H, forget_bias=0.0, proj_size=...)`` from ``torch.nn.LSTM``.

    Keys ``weight_ih_l{k} [4H, I]``, ``weight_hh_l{k} [4H, P]``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
    (gate rows i, f, g, o) and, with ``proj_size``, ``weight_hr_l{k} [P, H]``; any key prefix (a
    submodule's name) is ignored, and ``bias=False`` modules get zero biases. ``reverse`` picks
    the ``_reverse`` weights of a bidirectional module (run them with ``reverse=True``).
    """
    result = []
    for layer in _torch_layers(state_dict, reverse):
        params = {
            "kernel": _torch_to_tf_gate_order(_fused_kernel(layer["weight_ih"], layer["weight_hh"])),
            "bias": _torch_to_tf_gate_order(layer["bias_ih"] + layer["bias_hh"]),
        }
        if "weight_hr" in layer:
            params["proj_kernel"] = layer["weight_hr"].T
        result.append(params)
    return result


def gru_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False) -> list[Params]:
    """Per-layer parameters of ``GRU(H, reset_after=True)`` from ``torch.nn.GRU``.

    torch's gate rows are r, z, n; its z is lstmjax's u (both keep the old state with weight z).
    ``candidate_bias`` is torch's ``b_in`` and ``candidate_recurrent_bias`` its ``b_hn``.
    """
    result = []
    for layer in _torch_layers(state_dict, reverse):
        hidden = layer["weight_hh"].shape[1]
        w_ih, w_hh = layer["weight_ih"], layer["weight_hh"]
        b_ih, b_hh = layer["bias_ih"], layer["bias_hh"]
        gates = slice(0, 2 * hidden)
        candidate = slice(2 * hidden, 3 * hidden)
        result.append({
            "gate_kernel": _fused_kernel(w_ih[gates], w_hh[gates]),
            "gate_bias": b_ih[gates] + b_hh[gates],
            "candidate_kernel": _fused_kernel(w_ih[candidate], w_hh[candidate]),
            "candidate_bias": b_ih[candidate],
            "candidate_recurrent_bias": b_hh[candidate],
        })
    return result


def simple_rnn_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False) -> list[Params]:
    """Per-layer parameters of ``SimpleRNN(H)`` from ``torch.nn.RNN(nonlinearity='tanh')``."""
    return [
        {
            "kernel": _fused_kernel(layer["weight_ih"], layer["weight_hh"]),
            "bias": layer["bias_ih"] + layer["bias_hh"],
        }
        for layer in _torch_layers(state_dict, reverse)
    ]


def cells_from_torch(state_dict: Mapping[str, Any], *, reverse: bool = False
                     ) -> tuple[list[LayerCell], list[Params]]:
    """``(cells, layers)`` of a ``torch.nn.LSTM``, ``GRU`` or ``RNN`` state dict, the module type
    and options read off the shapes: ``weight_hh_l0`` has ``4H`` rows (LSTM; ``weight_hr`` for
    ``proj_size``), ``3H`` (GRU) or ``H`` (RNN, taken as ``nonlinearity="tanh"``: a ReLU RNN has
    no lstmjax cell). The LSTM gets ``forget_bias=0.0``, the GRU ``reset_after=True``."""
    first = _torch_layers(state_dict, reverse)[0]
    rows = first["weight_hh"].shape[0]
    hidden = first["weight_hr"].shape[1] if "weight_hr" in first else first["weight_hh"].shape[1]
    kind = {4: "lstm", 3: "gru", 1: "rnn"}.get(rows // hidden if rows % hidden == 0 else 0)
    if kind is None:
        raise ValueError(f"weight_hh_l0 has {rows} rows for hidden size {hidden}: not 4H (LSTM), "
                         "3H (GRU) or H (RNN)")
    importer = {"lstm": lstm_from_torch, "gru": gru_from_torch, "rnn": simple_rnn_from_torch}[kind]
    layers = importer(state_dict, reverse=reverse)
    return [_cell(kind, params, forget_bias=0.0, source="torch") for params in layers], layers


# ---------------------------------------------------------------------------------------------
# Export: the inverse layouts.
# ---------------------------------------------------------------------------------------------


def layers_to_tf(cells: Sequence[LayerCell], layers: Sequence[Params], *,
                 prefix: str = "rnn/multi_rnn_cell") -> dict[str, np.ndarray]:
    """TF1 variables ``{name: array}`` of a ``MultiRNNCell`` stack, as TF1 names them.

    Layer k's variables are ``<prefix>/cell_<k>/<cell scope>/<leaf>``: ``basic_lstm_cell``
    (``lstm_cell`` with peepholes or projection), ``gru_cell``, ``basic_rnn_cell``, or r2rt's
    ``LayerNormalizedLSTMCell``. :func:`layers_from_tf` reads them back exactly. Not stored, as in
    TF: ``forget_bias`` and the clipping values. ``GRU(reset_after=True)`` has no TF1 ``GRUCell``
    form (an error).
    """
    variables = {}
    for layer, (cell, params) in enumerate(zip(cells, layers, strict=True)):
        scope, leaves = _tf_leaves(cell, params)
        for leaf, value in leaves.items():
            variables[f"{prefix}/cell_{layer}/{scope}/{leaf}"] = np.asarray(value)
    return variables


def _tf_leaves(cell: LayerCell, params: Params) -> tuple[str, dict[str, Any]]:
    if isinstance(cell, LayerNormLSTM):
        leaves = {"kernel": params["kernel"]}
        for part in ("scale", "shift"):
            gates = np.split(np.asarray(params[f"gate_{part}"]), 4)
            leaves.update({f"{g}/layer_norm/{part}": v for g, v in zip("ijfo", gates)})
            if "cell_scale" in params:
                leaves[f"new_h/layer_norm/{part}"] = params[f"cell_{part}"]
        return "LayerNormalizedLSTMCell", leaves
    if isinstance(cell, LSTM):
        leaves = {"kernel": params["kernel"], "bias": params["bias"]}
        if "peephole_i" in params:
            leaves.update({f"w_{g}_diag": params[f"peephole_{g}"] for g in "ifo"})
        if "proj_kernel" in params:
            leaves["projection/kernel"] = params["proj_kernel"]
        return ("lstm_cell" if len(leaves) > 2 else "basic_lstm_cell"), leaves
    if isinstance(cell, GRU):
        if cell.reset_after:
            raise ValueError("GRU(reset_after=True) (torch, cuDNN) has no TF1 GRUCell form: TF1 "
                             "resets h before the candidate's matmul; export it to torch")
        return "gru_cell", {"gates/kernel": params["gate_kernel"], "gates/bias": params["gate_bias"],
                            "candidate/kernel": params["candidate_kernel"],
                            "candidate/bias": params["candidate_bias"]}
    return "basic_rnn_cell", {"kernel": params["kernel"], "bias": params["bias"]}


def layers_to_torch(cells: Sequence[LayerCell], layers: Sequence[Params], *,
                    prefix: str = "") -> dict[str, np.ndarray]:
    """A ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` state dict (``<prefix>weight_ih_l<k>``, ...).

    torch keeps two biases where lstmjax keeps one: ``bias_ih`` gets lstmjax's, ``bias_hh`` zeros
    (the GRU's ``b_hn`` excepted), so :func:`cells_from_torch` reads the same parameters back
    exactly. An LSTM's ``forget_bias`` is added to the forget rows of ``bias_ih`` (torch has no
    such constant). Cells torch lacks are an error: peepholes, clipping, layer norm, TF1's
    ``GRU(reset_after=False)``.
    """
    state_dict = {}
    for layer, (cell, params) in enumerate(zip(cells, layers, strict=True)):
        for name, value in _torch_weights(cell, params).items():
            state_dict[f"{prefix}{name}_l{layer}"] = np.asarray(value)
    return state_dict


def _torch_weights(cell: LayerCell, params: Params) -> dict[str, jax.Array]:
    unsupported = (
        "layer norm" if isinstance(cell, LayerNormLSTM)
        else "reset_after=False (TF1's GRU)" if isinstance(cell, GRU) and not cell.reset_after
        else "peepholes" if "peephole_i" in params
        else "cell_clip/proj_clip" if isinstance(cell, LSTM) and (cell.cell_clip or cell.proj_clip)
        else None
    )
    if unsupported:
        raise ValueError(f"torch.nn.LSTM/GRU/RNN have no {unsupported}: {cell} has no torch form")
    if isinstance(cell, GRU):
        hidden = cell.hidden_size
        kernel = jnp.concatenate([params["gate_kernel"], params["candidate_kernel"]], axis=1)
        inputs = kernel.shape[0] - hidden
        return {"weight_ih": kernel[:inputs].T, "weight_hh": kernel[inputs:].T,
                "bias_ih": jnp.concatenate([params["gate_bias"], params["candidate_bias"]]),
                "bias_hh": jnp.concatenate([jnp.zeros(2 * hidden, params["gate_bias"].dtype),
                                            params["candidate_recurrent_bias"]])}
    kernel, bias = params["kernel"], params["bias"]
    inputs = kernel.shape[0] - cell.output_size
    weights = {"weight_ih": kernel[:inputs].T, "weight_hh": kernel[inputs:].T}
    if isinstance(cell, LSTM):
        i, j, f, o = jnp.split(bias, 4)
        if cell.forget_bias:
            f = f + jnp.asarray(cell.forget_bias, f.dtype)
        bias = jnp.concatenate([i, j, f, o])
        weights = {name: _tf_to_torch_gate_order(w.T).T for name, w in weights.items()}
        bias = _tf_to_torch_gate_order(bias)
    weights.update(bias_ih=bias, bias_hh=jnp.zeros_like(bias))
    if "proj_kernel" in params:
        weights["weight_hr"] = params["proj_kernel"].T
    return weights


def _tf_to_torch_gate_order(a: jax.Array) -> jax.Array:
    """Reorder the last axis from lstmjax's gates (i, j, f, o) to torch's (i, f, g=j, o)."""
    i, j, f, o = jnp.split(a, 4, axis=-1)
    return jnp.concatenate([i, f, j, o], axis=-1)


def _require(ok: bool, name: str, layout: str, value: jax.Array) -> None:
    if not ok:
        raise ValueError(f"{name} must be shaped {layout}, got {list(value.shape)}")
