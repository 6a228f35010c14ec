"""What the framework modules (:mod:`lstmjax.nnx`, :mod:`lstmjax.linen`, :mod:`lstmjax.equinox`)
share: flax ``nn.RNN``'s call over :func:`lstmjax.run_layer`, the checks of a module's arguments,
and what a Bidirectional module reads off its two RNNs. No framework is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax._checks import require_choice, require_positive_int
from lstmjax.cells import RecurrentCell
from lstmjax.engines import ENGINE_NAMES, run_layer
from lstmjax.layers import concatenate, flip_within_lengths

Array = jax.Array
Merge = Callable[[Array, Array], Array]


def run_rnn(cell: Any, params: Any, carry: Any, xs: Array, *, engine: str, time_major: bool,
            seq_lengths: Array | None, resets: Array | None, reverse: bool, keep_order: bool,
            return_carry: bool, key: Array | None) -> Any:
    """:func:`lstmjax.run_layer` with flax ``nn.RNN``'s keywords: with ``reverse`` and not
    ``keep_order`` the outputs come back in the order they were computed
    (:func:`lstmjax.layers.flip_within_lengths`); ``ys``, or ``(carry, ys)`` if ``return_carry``.
    ``key``: a regularizer cell's randomness (None: evaluation)."""
    carry, ys = run_layer(cell, params, carry, xs, engine=engine, lengths=seq_lengths,
                          reverse=reverse, resets=resets, time_major=time_major, key=key)
    if reverse and not keep_order:
        ys = flip_within_lengths(ys, seq_lengths, time_major=time_major)
    return (carry, ys) if return_carry else ys


def checked_cell(cell: Any) -> Any:
    """``cell``, or a ValueError unless it is an lstmjax cell (a flax cell module is a common slip)."""
    if not isinstance(cell, RecurrentCell):
        raise ValueError(
            f"cell must be an lstmjax cell (lstmjax.cells.RecurrentCell: init, zero_carry, step, "
            f"...), e.g. lstmjax.LSTM(64), got {cell!r}; flax weights convert with "
            "lstmjax.convert.lstm_from_flax / gru_from_flax")
    return cell


def checked_features(owner: str, in_features: int, xs: Array) -> None:
    """Raise a ValueError unless ``xs`` has ``in_features`` features on its last axis."""
    if jnp.ndim(xs) < 1 or jnp.shape(xs)[-1] != in_features:
        raise ValueError(f"{owner} was built with in_features={in_features}, but xs has shape "
                         f"{jnp.shape(xs)}: its last axis must have {in_features} features")


def checked_rate(rate: float) -> float:
    """``rate``, or a ValueError unless it is a drop probability in [0, 1)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout must be a drop probability in [0, 1), got {rate!r}")
    return rate


def shared_option(owner: str, layers: Sequence[Any], name: str) -> Any:
    """The one value of attribute ``name`` (``"engine"``, ``"time_major"``, ...) of ``layers``;
    a ValueError if they differ: ``owner`` runs them as one call."""
    values = [getattr(layer, name) for layer in layers]
    if any(value != values[0] for value in values):
        raise ValueError(f"the layers of a {owner} must share one {name}, got {values}; build "
                         f"them with the same {name}")
    return values[0]


def stack_options(layers: Sequence[Any]) -> dict[str, Any]:
    """``{"engine", "time_major", "merge"}`` of a Stack's layers for :func:`lstmjax.run_stack`,
    one value each (a ValueError if they differ; ``merge`` is the default with no Bidirectional
    layer)."""
    if not layers:
        raise ValueError("a Stack needs at least one layer")
    options = {name: shared_option("Stack", layers, name) for name in ("engine", "time_major")}
    merges = [layer.merge for layer in layers if isinstance(layer.cell, tuple)]
    if any(merge is not merges[0] for merge in merges):
        raise ValueError(f"the Bidirectional layers of a Stack must share one merge "
                         f"(lstmjax.run_stack takes one), got {merges}")
    options["merge"] = merges[0] if merges else concatenate
    return options


def out_features(cell: Any, merge: Merge) -> int:
    """Features of a layer's outputs: the cell's ``output_size``, or for a ``(forward,
    backward)`` pair the last axis of ``merge``'s result."""
    if not isinstance(cell, tuple):
        return cell.output_size
    shapes = [jax.ShapeDtypeStruct((1, 1, c.output_size), c.dtype) for c in cell]
    return jax.eval_shape(merge, *shapes).shape[-1]


def checked_layer(cell: Any, in_features: int, engine: str) -> Any:
    """``cell`` (:func:`checked_cell`), after checking an RNN module's other arguments:
    ``in_features`` a positive int and ``engine`` a key of :data:`lstmjax.ENGINES` or
    ``"auto"``."""
    require_positive_int("in_features", in_features)
    require_choice("engine", engine, ENGINE_NAMES)
    return checked_cell(cell)


def _qualified(module_type: type) -> str:
    return f"{module_type.__module__}.{module_type.__name__}"


def check_directions(forward: Any, backward: Any, rnn: type) -> None:
    """Raise a ValueError unless ``forward`` and ``backward`` are ``rnn`` modules (the
    framework's RNN) that share one engine, ``time_major`` and ``in_features``: a Bidirectional
    runs them as one call."""
    for name, layer in (("forward", forward), ("backward", backward)):
        if not isinstance(layer, rnn):
            raise ValueError(f"{name} must be an {_qualified(rnn)}, got {type(layer).__name__}")
    for name in ("engine", "time_major", "in_features"):
        shared_option("Bidirectional", (forward, backward), name)


def check_layers(layers: Sequence[Any], rnn: type, bidirectional: type) -> None:
    """Raise a ValueError unless each of a Stack's ``layers`` is an ``rnn`` or ``bidirectional``
    module (the framework's), they share the options of :func:`stack_options`, and each
    layer's ``in_features`` is the previous layer's output features (:func:`out_features`)."""
    for index, layer in enumerate(layers):
        if not isinstance(layer, rnn | bidirectional):
            raise ValueError(f"Stack layer {index} must be an {_qualified(rnn)} or "
                             f"{bidirectional.__name__}, got {type(layer).__name__}")
    merge = stack_options(layers)["merge"]
    for index in range(1, len(layers)):
        given = out_features(layers[index - 1].cell, merge)
        if layers[index].in_features != given:
            raise ValueError(f"Stack layer {index} has in_features={layers[index].in_features}, "
                             f"but layer {index - 1} gives {given} features")


class Directions:
    """What a Bidirectional module (with attributes ``forward`` and ``backward``, RNN modules
    checked by :func:`check_directions`) reads off its two RNNs."""

    cell = property(lambda self: (self.forward.cell, self.backward.cell),
                    doc="The ``(forward, backward)`` cells.")
    engine = property(lambda self: self.forward.engine, doc="The engine of both RNNs.")
    time_major = property(lambda self: self.forward.time_major,
                          doc="Whether both RNNs take ``[T, B, I]`` inputs.")
    in_features = property(lambda self: self.forward.in_features,
                           doc="I, both RNNs' inputs' features.")

    def cell_params(self) -> tuple[dict[str, Array], dict[str, Array]]:
        """The ``(forward, backward)`` cells' parameters as arrays."""
        return self.forward.cell_params(), self.backward.cell_params()
