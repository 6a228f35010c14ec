"""Weight import: parameters trained with TensorFlow 1 or PyTorch, in lstmjax's layouts.

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, jax.Array]

_TF_CELL_SCOPES = {
    "basic_lstm_cell": "lstm",
    "lstm_cell": "lstm",
    "gru_cell": "gru",
    "basic_rnn_cell": "rnn",
}
# Leaves of a TF1 cell scope, most specific first. Names from TF < 1.2 (weights, biases) are
# accepted as kernel, bias.
_TF_LEAF = re.compile(
    r"(?:^|/)(?P<scope>[^/]+)/(?P<leaf>"
    r"(?:gates|candidate|projection)/(?:kernel|bias|weights|biases)"
    r"|(?:i|j|f|o|new_h)/layer_norm/(?:scale|shift)"
    r"|w_[ifo]_diag|kernel|bias|weights|biases)(?::\d+)?$"
)
_TF_LAYER = re.compile(r"(?:^|/)cell_(\d+)/")
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


def layers_from_tf(variables: Mapping[str, Any]) -> list[Params]:
    """Per-layer parameters from the variables of a TF1 cell or ``MultiRNNCell`` stack.

    ``variables`` maps TF variable names to arrays, e.g. from ``tf.train.load_checkpoint`` or
    ``{v.name: sess.run(v) for v in tf.global_variables()}``. Names look like
    ``Model/RNN/multi_rnn_cell/cell_1/basic_lstm_cell/kernel:0``: ``cell_k`` gives the layer (no
    ``cell_k``: one layer) and the scope before the leaf gives the cell: ``basic_lstm_cell`` and
    ``lstm_cell`` (with ``w_*_diag`` and ``projection/kernel`` when present), ``gru_cell``,
    ``basic_rnn_cell``, or any scope holding a layer-normalized LSTM's ``i/layer_norm/scale`` etc.
    Variables outside a cell (embedding, softmax) are ignored.

    Returns:
      One params dict per layer, first layer first; each for the cell that
      :func:`lstm_from_tf`, :func:`gru_from_tf`, :func:`simple_rnn_from_tf` or
      :func:`layer_norm_lstm_from_tf` documents.
    """
    layers: dict[int, dict[str, jax.Array]] = {}
    scopes: dict[int, str] = {}
    for name, value in variables.items():
        match = _TF_LEAF.search(name)
        if match is None:
            continue
        leaf = match["leaf"].replace("weights", "kernel").replace("biases", "bias")
        layer_match = _TF_LAYER.search(name)
        cell_specific = "/" in leaf and not leaf.startswith("projection/")
        if match["scope"] not in _TF_CELL_SCOPES and not cell_specific and layer_match is None:
            continue  # not a cell's variable, e.g. a dense layer's kernel
        layer = int(layer_match[1]) if layer_match else 0
        layers.setdefault(layer, {})[leaf] = _array(value)
        scopes[layer] = match["scope"]
    if not layers:
        raise ValueError(
            "no TF1 cell variables found: expected names like "
            "'.../multi_rnn_cell/cell_0/basic_lstm_cell/kernel' or '.../gru_cell/gates/kernel'"
        )
    if sorted(layers) != list(range(len(layers))):
        raise ValueError(f"layers must be numbered cell_0 .. cell_{{L-1}}, found {sorted(layers)}")
    return [_tf_layer(scopes[k], layers[k]) for k in range(len(layers))]


def _tf_layer(scope: str, leaves: dict[str, jax.Array]) -> Params:
    if "gates/kernel" in leaves:
        return gru_from_tf(
            leaves["gates/kernel"], leaves["gates/bias"],
            leaves["candidate/kernel"], leaves["candidate/bias"],
        )
    if "i/layer_norm/scale" in leaves:
        names = ("i", "j", "f", "o", "new_h")
        return layer_norm_lstm_from_tf(
            leaves["kernel"],
            {g: leaves[f"{g}/layer_norm/scale"] for g in names if f"{g}/layer_norm/scale" in leaves},
            {g: leaves[f"{g}/layer_norm/shift"] for g in names if f"{g}/layer_norm/shift" in leaves},
        )
    kind = _TF_CELL_SCOPES.get(scope)
    if kind == "rnn":
        return simple_rnn_from_tf(leaves["kernel"], leaves["bias"])
    if kind == "lstm":
        return lstm_from_tf(
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


_TUTORIAL_GATES = {  # lstmjax gate -> (tutorial name, Udacity short-name prefix)
    "i": ("input_gate", "i"),
    "j": ("memory", "c"),
    "f": ("forget_gate", "f"),
    "o": ("output_gate", "o"),
}


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
    """
    by_leaf = {re.split(r"[/:]", name.split("/")[-1])[0]: value for name, value in variables.items()}
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


def _require(ok: bool, name: str, layout: str, value: jax.Array) -> None:
    if not ok:
        raise ValueError(f"{name} must be shaped {layout}, got {list(value.shape)}")
