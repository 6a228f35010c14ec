"""PyTorch: ``torch.nn.LSTM``, ``GRU`` and ``RNN`` state dicts (gate rows i, f, g, o for the
LSTM, r, z, n for the GRU), one layer at a time in torch's layout ``{weight_ih, weight_hh,
bias_ih, bias_hh[, weight_hr]}``, which cuDNN shares. torch itself need not be importable."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax.cells import GRU, LSTM, SimpleRNN
from lstmjax.convert import layout
from lstmjax.convert.layout import Layer, Params
from lstmjax.convert.registry import converter

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
            layers.setdefault(int(match[2]), {})[match[1]] = layout.as_array(value)
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


def lstm_from_torch_layer(layer: Mapping[str, jax.Array]) -> tuple[LSTM, Params]:
    """``(LSTM(H, forget_bias=0.0, proj_size=P), params)`` of one torch LSTM layer."""
    proj_kernel = layer["weight_hr"].T if "weight_hr" in layer else None
    return layout.lstm_from_split(layer["weight_ih"].T, layer["weight_hh"].T,
                                  layer["bias_ih"] + layer["bias_hh"], proj_kernel=proj_kernel)


def lstm_to_torch_layer(cell: LSTM, params: Params) -> dict[str, jax.Array]:
    """One torch LSTM layer: the bias (``forget_bias`` added) in ``bias_ih``, ``bias_hh`` zeros."""
    layout.no_extras(cell, params, "torch", projection=True)
    input_kernel, recurrent_kernel, bias = layout.lstm_to_split(cell, params)
    weights = {"weight_ih": input_kernel.T, "weight_hh": recurrent_kernel.T, "bias_ih": bias,
               "bias_hh": jnp.zeros_like(bias)}
    if "proj_kernel" in params:
        weights["weight_hr"] = params["proj_kernel"].T
    return weights


def gru_from_torch_layer(layer: Mapping[str, jax.Array]) -> tuple[GRU, Params]:
    return layout.gru_from_split(layer["weight_ih"].T, layer["weight_hh"].T, layer["bias_ih"],
                                 layer["bias_hh"])


def gru_to_torch_layer(cell: GRU, params: Params) -> dict[str, jax.Array]:
    input_kernel, recurrent_kernel, input_bias, recurrent_bias = layout.gru_to_split(
        cell, params, "torch.nn.GRU")
    return {"weight_ih": input_kernel.T, "weight_hh": recurrent_kernel.T, "bias_ih": input_bias,
            "bias_hh": recurrent_bias}


def simple_rnn_from_torch_layer(layer: Mapping[str, jax.Array]) -> tuple[SimpleRNN, Params]:
    return SimpleRNN(layer["weight_hh"].shape[0]), {
        "kernel": jnp.concatenate([layer["weight_ih"].T, layer["weight_hh"].T]),
        "bias": layer["bias_ih"] + layer["bias_hh"],
    }


def simple_rnn_to_torch_layer(cell: SimpleRNN, params: Params) -> dict[str, jax.Array]:
    input_kernel, recurrent_kernel = layout.split_rows(params["kernel"], cell.hidden_size)
    bias = params["bias"]
    return {"weight_ih": input_kernel.T, "weight_hh": recurrent_kernel.T, "bias_ih": bias,
            "bias_hh": jnp.zeros_like(bias)}
