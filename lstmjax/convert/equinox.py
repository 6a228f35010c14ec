"""Equinox: ``eqx.nn.LSTMCell`` and ``GRUCell`` (import only), torch's layout with one bias
(gate rows i, f, g, o and r, z, n). Duck-typed on the cells' attributes: equinox need not be
importable."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lstmjax.cells import GRU, LSTM
from lstmjax.convert import layout
from lstmjax.convert.layout import Params


def lstm_from_equinox(cell: Any) -> tuple[LSTM, Params]:
    """``(LSTM(H, forget_bias=0.0), params)`` of an ``equinox.nn.LSTMCell``.

    Equinox keeps torch's layout with one bias: ``weight_ih [4H, I]``, ``weight_hh [4H, H]``
    (gate rows i, f, g, o), ``bias [4H]`` (None with ``use_bias=False``), and torch's equations
    (``forget_bias=0``). Its carry is ``(h, c)``, lstmjax's ``LSTMState(c, h)``. Duck-typed on
    those attributes: equinox need not be importable.
    """
    input_kernel, recurrent_kernel, input_bias, recurrent_bias = _equinox_split(cell, LSTM)
    return layout.lstm_from_split(input_kernel, recurrent_kernel, input_bias + recurrent_bias)


def gru_from_equinox(cell: Any) -> tuple[GRU, Params]:
    """``(GRU(H, reset_after=True), params)`` of an ``equinox.nn.GRUCell``.

    Equinox's ``weight_ih [3H, I]``, ``weight_hh [3H, H]`` (gate rows r, z, n), ``bias [3H]`` on
    the input and ``bias_n [H]`` inside the reset product: ``n = tanh(x W_in + b_in + r * (h W_hn
    + b_n))``, ``h' = n + z * (h - n)``: lstmjax's ``reset_after=True`` form (torch's), ``bias_n``
    the ``candidate_recurrent_bias``.
    """
    return layout.gru_from_split(*_equinox_split(cell, GRU))


def _equinox_split(cell: Any, cls: type) -> tuple[jax.Array, ...]:
    """``(input_kernel [I, G], recurrent_kernel [H, G], input_bias [G], recurrent_bias [G])`` of
    an Equinox LSTM or GRU cell (its biases zeros without ``use_bias``)."""
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
    weight_ih, weight_hh = layout.as_array(cell.weight_ih), layout.as_array(weight_hh)
    hidden = shape[1]

    def bias(name: str, size: int) -> jax.Array:
        value = getattr(cell, name)
        return jnp.zeros(size, weight_hh.dtype) if value is None else layout.as_array(value)

    bias_hh = jnp.zeros(gates * hidden, weight_hh.dtype)
    if cls is GRU:
        bias_hh = jnp.concatenate([bias_hh[: 2 * hidden], bias("bias_n", hidden)])
    return weight_ih.T, weight_hh.T, bias("bias", gates * hidden), bias_hh
