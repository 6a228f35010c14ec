"""flax: Linen's ``LSTMCell``, ``OptimizedLSTMCell`` and ``GRUCell`` parameters and NNX's
``LSTMCell``, ``OptimizedLSTMCell`` and ``GRUCell`` (modules or states), gates i, f, g, o (LSTM)
and r, z, n (GRU): the split layout of :mod:`lstmjax.convert.layout`, a Dense per gate or per
side. ``flax.nnx`` is imported only to read an NNX module or state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstmjax.cells import GRU, LSTM
from lstmjax.convert import layout
from lstmjax.convert.layout import Params
from lstmjax.convert.registry import supported


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
    o): a parameter dict (nested, as flax makes it: a flattened ``{"ii/kernel": ...}`` is an
    error), an NNX module, its ``nnx.state`` (or ``nnx.split``'s state), or that state's
    ``to_pure_dict()``. The layout is read off the keys. flax's equations are lstmjax's
    with ``forget_bias=0`` and flax's candidate g as lstmjax's j. An NNX module whose
    ``gate_fn`` is not sigmoid or whose ``activation_fn`` is not tanh is an error (a parameter
    dict cannot tell: check the cell was built with the defaults).
    """
    x_kernel, h_kernel, x_bias, h_bias = _flax_roles(params, LSTM)
    return layout.lstm_from_split(x_kernel, h_kernel, x_bias + h_bias)


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
    return layout.gru_from_split(*_flax_roles(params, GRU))


def lstm_to_flax(cell: LSTM, params: Params) -> dict[str, dict[str, jax.Array]]:
    """``flax.linen.LSTMCell`` / ``OptimizedLSTMCell`` parameters (without the ``"params"``
    level) of an LSTM; :func:`lstm_from_flax` reads them back exactly. ``forget_bias`` is added to
    ``hf``'s bias (flax has no such constant); peepholes, a projection and clipping are errors."""
    _require_class(cell, LSTM, "flax")
    layout.no_extras(cell, params, "flax")
    input_kernel, recurrent_kernel, bias = layout.lstm_to_split(cell, params)
    return _flax_tree(LSTM, {"x_kernel": input_kernel, "h_kernel": recurrent_kernel,
                             "h_bias": bias})


def gru_to_flax(cell: GRU, params: Params) -> dict[str, dict[str, jax.Array]]:
    """``flax.linen.GRUCell`` parameters of a ``GRU(H, reset_after=True)``; :func:`gru_from_flax`
    reads them back exactly. TF1's ``reset_after=False`` is an error."""
    _require_class(cell, GRU, "flax")
    roles = layout.gru_to_split(cell, params, "flax.linen.GRUCell")
    return _flax_tree(GRU, dict(zip(_FLAX_ROLES, roles, strict=True)))


def _require_class(cell: Any, cls: type, fmt: str) -> None:
    if type(cell) is not cls:
        raise ValueError(f"cannot convert {cell!r} to {fmt} as a {cls.__name__}; supported: "
                         f"{supported()}")


def _flax_roles(source: Any, cls: type) -> tuple[jax.Array, ...]:
    """``(x_kernel [I, G], h_kernel [H, G], x_bias [G], h_bias [G])`` of flax parameters of a
    ``cls`` cell, gates side by side in flax's order; a bias the layout lacks is zeros."""
    paths = _flatten(_flax_pure_tree(source))
    name = next((n for n, known in _FLAX_LAYOUTS.items() if set(known.leaves) == set(paths)),
                None)
    if name is None or _FLAX_LAYOUTS[name].cell is not cls:
        expected = {n: sorted(known.leaves) for n, known in _FLAX_LAYOUTS.items()
                    if known.cell is cls}
        found = f"a {name}'s" if name else "none of these"
        raise ValueError(f"expected the parameters of a flax {cls.__name__} cell, one of "
                         f"{expected}; got {found}: {sorted(paths)}")
    flax_layout = _FLAX_LAYOUTS[name]
    blocks: dict[str, dict[str, jax.Array]] = {}
    for path, (role, gate) in flax_layout.leaves.items():
        value = layout.as_array(paths[path])
        if gate is None:
            blocks[role] = dict(zip(flax_layout.gates,
                                    jnp.split(value, len(flax_layout.gates), axis=-1),
                                    strict=True))
        else:
            blocks.setdefault(role, {})[gate] = value
    hidden_kernel = blocks["h_kernel"][flax_layout.gates[0]]  # [H, H]
    zeros = jnp.zeros(hidden_kernel.shape[-1:], hidden_kernel.dtype)
    return tuple(jnp.concatenate([blocks.get(role, {}).get(g, zeros)
                                  for g in flax_layout.gates], axis=-1) for role in _FLAX_ROLES)


def _flax_tree(cls: type, fused: Mapping[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    """flax Linen parameters of a ``cls`` cell from arrays by role (``x_kernel [I, G]``, ...),
    their gates side by side in flax's order."""
    flax_layout = _FLAX_LAYOUTS[_FLAX_LINEN[cls]]
    tree: dict[str, dict[str, jax.Array]] = {}
    for path, (role, gate) in flax_layout.leaves.items():
        blocks = jnp.split(fused[role], len(flax_layout.gates), axis=-1)
        module, leaf = path.split("/")
        tree.setdefault(module, {})[leaf] = blocks[flax_layout.gates.index(gate)]
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
    """``{"a/b": leaf}`` of nested mappings; a key holding a "/" (a flattened dict) is an error."""
    flat = {}
    for key, value in tree.items():
        if "/" in str(key):
            raise ValueError(
                f"expected flax parameters as nested dicts ({{'ii': {{'kernel': ...}}}}), got the "
                f"flat key {prefix}{key!r}: nest them with "
                "flax.traverse_util.unflatten_dict(params, sep='/')")
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
