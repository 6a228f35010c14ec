"""The registry of conversions: :class:`Converter`, the table :data:`CONVERTERS` (its entries are
listed once, in :mod:`lstmjax.convert`), and :func:`converter`, the lookup the stack functions
and the tests use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from lstmjax.cells import CELLS
from lstmjax.convert.layout import Layer, Params


class Converter(NamedTuple):
    """One cell class in one format, a layer each way (None: not supported that way).

    Attributes:
      import_: the format's layer -> ``(cell, params)``.
      export: ``(cell, params)`` -> the format's layer, which ``import_`` reads back exactly.
    """

    import_: Callable[..., Layer] | None
    export: Callable[[Any, Params], Any] | None


CONVERTERS: dict[tuple[type, str], Converter] = {}
"""``(cell class, format) -> Converter``: the one table of conversions, a layer each way, filled
in :mod:`lstmjax.convert` (its format modules look entries up here, so they cannot list them
without an import cycle). The formats' layers: ``"tf"`` a :class:`lstmjax.convert.TFCell` (import
also takes ``forget_bias=``, required for the LSTMs); ``"torch"`` and ``"cudnn"`` one layer's
``{weight_ih, weight_hh, bias_ih, bias_hh[, weight_hr]}`` (torch's layout, which cuDNN's flat
vector holds per layer); ``"flax"`` a Linen cell's parameter dict (import also reads NNX);
``"equinox"`` an Equinox cell. The stack functions (``layers_from_tf``, ``layers_to_torch``,
``lstm_to_cudnn``, ...) look cells up here. A new conversion is one entry and its two functions;
the tests iterate this table."""


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
