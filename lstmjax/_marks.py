"""Marks on config fields (``dataclasses.field(metadata=...)``), in one place for
:mod:`lstmjax.config` and the data layer's :class:`~lstmjax.data.options.DataConfig`, which
cannot import the config. :func:`marked` tells whether a field carries one."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

RESUMABLE = {"resumable": True}
"""Field metadata of the settings a resumed run may change (lstmjax.rundir's resume rules): how
long to run, how often to report, where files are, and how the same model is computed (engine,
unroll, remat_chunk, num_devices); never what is trained."""

IGNORED_BY_OTHER_CELLS = {"ignored_by_other_cells": True}
"""Field metadata of a cell option (lstmjax.config.CELL_OPTIONS) that a cell without it ignores:
forget_bias, a constant that cells without a forget gate have no use for (so a recipe's LSTM
setting can run with cell="gru"). Setting any other cell option that the chosen cell lacks is an
error."""


def marked(field: dataclasses.Field, mark: Mapping[str, bool]) -> bool:
    """Whether ``field`` carries ``mark`` (:data:`RESUMABLE` or :data:`IGNORED_BY_OTHER_CELLS`)."""
    return all(field.metadata.get(key) == value for key, value in mark.items())
