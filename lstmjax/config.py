"""Typed, validated configuration.

Every field is checked when the config is made, so a bad value fails before anything is traced,
with an error that names the field, the value and the accepted values.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

from lstmjax._checks import require_choice, require_positive_int
from lstmjax.engines import ENGINES, Engine

CellType = Literal["lstm", "gru", "rnn", "ln_lstm"]
CELL_TYPES: tuple[str, ...] = get_args(CellType)
InputMode = Literal["embedding", "one_hot"]
INPUT_MODES: tuple[str, ...] = get_args(InputMode)
DType = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(DType)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A stacked recurrent language model: input encoding, ``num_layers`` cells, dense head.

    Attributes:
      vocab_size: V, number of token ids.
      hidden_size: H, units per recurrent layer.
      num_layers: L, stacked recurrent layers.
      cell: ``"lstm"``, ``"gru"``, ``"rnn"`` (Elman, tanh) or ``"ln_lstm"`` (layer-normalized).
      input_mode: ``"embedding"`` (a learned ``[V, E]`` table) or ``"one_hot"`` (V features, as the
        text8 tutorial feeds its 27 symbols).
      embed_size: E; None means ``hidden_size`` (as the PTB recipes). Only with ``"embedding"``.
      dropout: drop probability (TF's ``1 - keep_prob``) on the input features and on every
        layer's output, the last included (TF ``DropoutWrapper(output_keep_prob)`` as in the PTB
        recipes); never on the recurrent connection. Active only in training.
      variational: draw one dropout mask per sequence and reuse it at every step for the input and
        layer-output dropout (TF1 ``DropoutWrapper(variational_recurrent=True)``), instead of a new
        mask per step.
      recurrent_dropout: drop probability on the recurrent state entering each step (h for the
        LSTMs, the whole state for GRU and RNN; never c), one mask per sequence (Gal &
        Ghahramani 2016; Keras ``recurrent_dropout``, TF1 ``state_keep_prob``). 0 disables it.
      forget_bias: the LSTMs' forget-gate bias (TF: 1.0; the PTB recipe: 0.0).
      use_peepholes, proj_size: LSTM options (see :class:`lstmjax.cells.LSTM`).
      reset_after: GRU option (see :class:`lstmjax.cells.GRU`).
      layer_norm_cell: LN-LSTM option (see :class:`lstmjax.cells.LayerNormLSTM`).
      init_scale: if set, every weight matrix (embedding, cell kernels, peepholes, projection,
        head kernel and head bias) starts uniform in [-init_scale, init_scale], as the PTB recipes;
        cell biases keep their defaults. None: Glorot uniform matrices, zero head bias.
      engine: ``"scan"`` or ``"static"`` (see :mod:`lstmjax.engines`).
      unroll: steps per scan iteration.
      param_dtype, dtype: parameter and compute dtypes.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int = 1
    cell: CellType = "lstm"
    input_mode: InputMode = "embedding"
    embed_size: int | None = None
    dropout: float = 0.0
    variational: bool = False
    recurrent_dropout: float = 0.0
    forget_bias: float = 1.0
    use_peepholes: bool = False
    proj_size: int | None = None
    reset_after: bool = False
    layer_norm_cell: bool = True
    init_scale: float | None = None
    engine: Engine = "scan"
    unroll: int = 1
    param_dtype: DType = "float32"
    dtype: DType = "float32"

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "unroll"):
            require_positive_int(name, getattr(self, name))
        for name in ("embed_size", "proj_size"):
            if getattr(self, name) is not None:
                require_positive_int(name, getattr(self, name))
        require_choice("cell", self.cell, CELL_TYPES)
        require_choice("input_mode", self.input_mode, INPUT_MODES)
        require_choice("engine", self.engine, ENGINES)
        require_choice("param_dtype", self.param_dtype, DTYPES)
        require_choice("dtype", self.dtype, DTYPES)
        for name in ("dropout", "recurrent_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(
                    f"{name} is a drop probability in [0, 1), got {value!r} "
                    "(TF's keep_prob k is dropout 1 - k)"
                )
        if self.init_scale is not None and not self.init_scale > 0:
            raise ValueError(f"init_scale must be > 0 or None, got {self.init_scale!r}")
        if self.input_mode == "one_hot" and self.embed_size is not None:
            raise ValueError("embed_size applies to input_mode='embedding' only; leave it None")
        lstm_only = {"use_peepholes": self.use_peepholes, "proj_size": self.proj_size is not None}
        for name, used in lstm_only.items():
            if used and self.cell != "lstm":
                raise ValueError(f"{name} is an option of cell='lstm', not of cell={self.cell!r}")

    @property
    def input_size(self) -> int:
        """Features fed to the first recurrent layer."""
        if self.input_mode == "one_hot":
            return self.vocab_size
        return self.embed_size or self.hidden_size

