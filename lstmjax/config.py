"""Typed, validated configuration.

Every field is checked when the config is made, so a bad value fails before anything is traced,
with an error that names the field, the value and the accepted values: a
:class:`~lstmjax._checks.FieldError` whose ``field`` is the dotted name (``model.hidden_size``),
for the command line to name its flag.

DataConfig lives in the data layer (:mod:`lstmjax.data.options`, which load_corpus reads too) and
is re-exported here. The cell options of ModelConfig are the fields that share a name with an
option of a cell class in lstmjax.cells.CELLS (:data:`CELL_OPTIONS`).

The dataclass docstrings are the command line's --help (tyro reads them), so they are plain text,
without reStructuredText markup.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, get_args

from lstmjax._checks import FieldError, require_choice, require_positive_int
from lstmjax._marks import IGNORED_BY_OTHER_CELLS, RESUMABLE, marked
from lstmjax.cells import CELLS, cell_options
from lstmjax.data.options import DataConfig
from lstmjax.engines import ENGINE_NAMES
from lstmjax.regularizers import has_cell_state

CellType = Literal[tuple(CELLS)]  # the registry's names, for the CLI's choices
CELL_TYPES: tuple[str, ...] = tuple(CELLS)
Engine = Literal[ENGINE_NAMES]
InputMode = Literal["embedding", "one_hot"]
INPUT_MODES: tuple[str, ...] = get_args(InputMode)
DType = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(DType)


def _fields_of(section: str):
    """Decorate a section's ``__post_init__`` so that its FieldErrors name the dotted field
    (``hidden_size`` -> ``model.hidden_size``; an item, ``layer_sizes[1]``, names its field,
    ``model.layer_sizes``); the messages keep the names they use."""

    def decorate(post_init):
        @functools.wraps(post_init)
        def checked(self):
            try:
                post_init(self)
            except FieldError as error:
                error.field = f"{section}.{error.field.partition('[')[0]}"
                raise

        return checked

    return decorate


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A stacked recurrent language model: input encoding, num_layers cells, dense head.

    Attributes:
      vocab_size: V, number of token ids. Leave it unset (None) to train: training sets it
        from the corpus vocabulary, and a different value is an error.
      hidden_size: H, units per recurrent layer (and the embedding's size E by default).
      layer_sizes: a hidden size per layer instead, first layer first (AWD-LSTM: 1150 1150
        400); None: hidden_size for every layer. Its length must be num_layers.
      num_layers: L, stacked recurrent layers.
      cell: "lstm", "gru", "rnn" (Elman, tanh) or "ln_lstm" (layer-normalized).
      input_mode: "embedding" (a learned [V, E] table) or "one_hot" (V features, as the
        text8 tutorial feeds its 27 symbols).
      embed_size: E; None means hidden_size (as the PTB recipes). Only with "embedding".
      embed_dropout: embedding dropout (Gal & Ghahramani 2016; Merity et al. 2017, AWD-LSTM's
        embedded_dropout): in training, drop whole word types, each row of the [V, E] table
        with this probability, one mask per training window shared by the whole batch (a
        dropped token is zero at every position), the kept rows scaled by
        1 / (1 - embed_dropout); before the input dropout. Only with input_mode "embedding".
        0 disables it.
      tie_weights: weight tying (Inan et al. 2017; Press & Wolf 2017): the head's kernel is
        the embedding table transposed (the head keeps its bias), so there is no head kernel
        parameter. Needs input_mode "embedding" and the last layer's output size (proj_size,
        else the last of layer_sizes, else hidden_size) equal to the embedding size E.
      dropout: drop probability (TF's 1 - keep_prob) on the input features and on every
        layer's output, the last included (TF DropoutWrapper(output_keep_prob) as in the PTB
        recipes); never on the recurrent connection. Active only in training.
      variational: draw one dropout mask per sequence and reuse it at every step for the input and
        layer-output dropout (TF1 DropoutWrapper(variational_recurrent=True)), instead of a new
        mask per step.
      recurrent_dropout: drop probability on the recurrent state entering each step (h for the
        LSTMs, the whole state for GRU and RNN; never c), one mask per sequence (Gal &
        Ghahramani 2016; Keras recurrent_dropout, TF1 state_keep_prob). 0 disables it.
      weight_drop: drop probability of DropConnect on the recurrent kernels (W_h; not an LSTM's
        projection), one mask per window shared by the batch (Wan et al. 2013; Merity et al.
        2017, AWD-LSTM's weight drop). 0 disables it.
      zoneout_cell, zoneout_hidden: zoneout probabilities (Krueger et al. 2016): in training each
        unit of an LSTM's c (zoneout_cell) or of h, or of a GRU's or RNN's state
        (zoneout_hidden), keeps its previous value with that probability, a new draw every
        step; in evaluation the expectation. 0 disables them.
      ar: activation regularization (Merity et al. 2017, sec. 4.6): the training loss adds
        ar * mean(y ** 2) over the last layer's outputs y after their dropout ([B, T, H_out],
        every element). Training only; the logged loss and perplexity stay the cross-entropy.
        0 disables it.
      tar: temporal activation regularization (Merity et al. 2017, sec. 4.6): the training loss
        adds tar * mean((h_t - h_{t-1}) ** 2) over the last layer's outputs h before dropout,
        t = 2..T within the window. Training only, as ar. 0 disables it.
      forget_bias: the LSTMs' forget-gate bias (TF: 1.0; the PTB recipe: 0.0); other cells
        ignore it.
      use_peepholes: LSTM peephole connections (see lstmjax.cells.LSTM).
      proj_size: LSTM output projection size P; None: no projection.
      reset_after: GRU option (see lstmjax.cells.GRU).
      layer_norm_cell: LN-LSTM option (see lstmjax.cells.LayerNormLSTM).
      init_scale: if set, every weight matrix (embedding, cell kernels, peepholes, projection,
        head kernel and head bias) starts uniform in [-init_scale, init_scale], as the PTB recipes;
        cell biases keep their defaults. None: Glorot uniform matrices, zero head bias.
      engine: "auto" (default: the fastest measured engine for the backend, cell and size,
        printed in the run log), "scan", "static", "fused", "native" (CPU) or "cudnn" (GPU);
        an engine that cannot run the cell or option hands it to its fallback and the run log
        says why (see lstmjax.engines).
      unroll: steps per loop iteration of a scan-based engine; "auto" picks its own.
      remat_chunk: in training, recompute the recurrence in chunks of this many steps in the
        backward pass (memory for one chunk's activations instead of the window's; the last chunk
        is shorter if it does not divide the window). None: save everything.
      param_dtype: dtype of the parameters.
      dtype: compute dtype (activations and carries).
    """

    vocab_size: int | None = None
    hidden_size: int = 128
    layer_sizes: tuple[int, ...] | None = None
    num_layers: int = 1
    cell: CellType = "lstm"
    input_mode: InputMode = "embedding"
    embed_size: int | None = None
    embed_dropout: float = 0.0
    tie_weights: bool = False
    dropout: float = 0.0
    variational: bool = False
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    zoneout_cell: float = 0.0
    zoneout_hidden: float = 0.0
    ar: float = 0.0
    tar: float = 0.0
    forget_bias: float = dataclasses.field(default=1.0, metadata=IGNORED_BY_OTHER_CELLS)
    use_peepholes: bool = False
    proj_size: int | None = None
    reset_after: bool = False
    layer_norm_cell: bool = True
    init_scale: float | None = None
    engine: Engine = dataclasses.field(default="auto", metadata=RESUMABLE)
    unroll: int = dataclasses.field(default=1, metadata=RESUMABLE)
    remat_chunk: int | None = dataclasses.field(default=None, metadata=RESUMABLE)
    param_dtype: DType = "float32"
    dtype: DType = "float32"

    @_fields_of("model")
    def __post_init__(self):
        for name in ("hidden_size", "num_layers", "unroll"):
            require_positive_int(name, getattr(self, name))
        for name in ("vocab_size", "embed_size", "proj_size", "remat_chunk"):
            if getattr(self, name) is not None:
                require_positive_int(name, getattr(self, name))
        require_choice("cell", self.cell, CELL_TYPES)
        if self.layer_sizes is not None:
            if len(self.layer_sizes) != self.num_layers:
                raise FieldError("layer_sizes",
                                 f"layer_sizes has {len(self.layer_sizes)} sizes for num_layers="
                                 f"{self.num_layers}: give one per layer, or leave it None")
            for k, size in enumerate(self.layer_sizes):
                require_positive_int(f"layer_sizes[{k}]", size)
        if self.zoneout_cell and not has_cell_state(CELLS[self.cell](1)):
            raise FieldError("zoneout_cell", f"zoneout_cell zones out an LSTM's c, and "
                             f"cell={self.cell!r} has none: use zoneout_hidden")
        require_choice("input_mode", self.input_mode, INPUT_MODES)
        require_choice("engine", self.engine, ENGINE_NAMES)
        require_choice("param_dtype", self.param_dtype, DTYPES)
        require_choice("dtype", self.dtype, DTYPES)
        for name in ("dropout", "embed_dropout", "recurrent_dropout", "weight_drop",
                     "zoneout_cell", "zoneout_hidden"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise FieldError(
                    name,
                    f"{name} is a drop probability in [0, 1), got {value!r} "
                    "(TF's keep_prob k is dropout 1 - k)"
                )
        if self.init_scale is not None and not self.init_scale > 0:
            raise FieldError("init_scale",
                             f"init_scale must be > 0 or None, got {self.init_scale!r}")
        if self.input_mode == "one_hot" and self.embed_size is not None:
            raise FieldError("embed_size",
                             "embed_size applies to input_mode='embedding' only; leave it None")
        if self.input_mode == "one_hot" and self.embed_dropout:
            raise FieldError("embed_dropout", "embed_dropout drops rows of the embedding table: "
                             "it needs input_mode='embedding'; use dropout for one-hot inputs")
        if self.tie_weights:
            if self.input_mode != "embedding":
                raise FieldError("tie_weights", "tie_weights shares the embedding table with the "
                                 "head: it needs input_mode='embedding'")
            output_size = self.proj_size or (self.layer_sizes or [self.hidden_size])[-1]
            if output_size != self.input_size:
                raise FieldError(
                    "tie_weights",
                    f"tie_weights needs the last layer's output size ({output_size}: proj_size, "
                    f"else layer_sizes[-1], else hidden_size) to equal the embedding size "
                    f"({self.input_size}: embed_size, else hidden_size); set "
                    f"embed_size={output_size}")
        for name in ("ar", "tar"):
            if not getattr(self, name) >= 0:
                raise FieldError(name, f"{name} is a loss weight >= 0 (0 disables it), got "
                                 f"{getattr(self, name)!r}")
        options = cell_options(CELLS[self.cell])
        for field in dataclasses.fields(self):
            if (field.name in CELL_OPTIONS and field.name not in options
                    and not marked(field, IGNORED_BY_OTHER_CELLS)
                    and getattr(self, field.name) != field.default):
                owners = [cell for cell, cls in CELLS.items() if field.name in cell_options(cls)]
                raise FieldError(field.name, f"{field.name} is an option of cell="
                                 f"{' or '.join(map(repr, owners))}, not of cell={self.cell!r}; "
                                 f"leave it at {field.default!r}")

    @property
    def input_size(self) -> int:
        """Features fed to the first recurrent layer."""
        if self.input_mode == "one_hot":
            return self.vocab_size
        return self.embed_size or self.hidden_size


CELL_OPTIONS: tuple[str, ...] = tuple(
    name for name in dict.fromkeys(option for cls in CELLS.values() for option in cell_options(cls))
    if name in {field.name for field in dataclasses.fields(ModelConfig)})
"""ModelConfig fields that are cell options: the options of the cell classes in CELLS
(lstmjax.cells.cell_options) that a ModelConfig field of the same name sets; lstmjax.model passes
each to the cells that have it. Setting one that the chosen cell lacks is an error, unless the
field is marked IGNORED_BY_OTHER_CELLS. A cell option without such a field keeps the cell's
default (tests/test_config.py lists them)."""


OptimizerName = Literal["adam", "adam_tf1", "adagrad", "sgd", "nt_asgd"]
ScheduleName = Literal["constant", "exponential", "epoch_decay"]
LossScale = Literal["mean", "sum_over_time"]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The optax chain: clip_by_global_norm(max_grad_norm), then the optimizer, with a schedule.

    Attributes:
      optimizer: "adam" (optax's: epsilon added to the bias-corrected root), "adam_tf1"
        (TF1's AdamOptimizer: epsilon added to the uncorrected root, which in optax's terms is
        an epsilon of adam_eps / sqrt(1 - adam_b2^t) at step t: 32x at step 1, 10x at step
        10, 3.2x at step 100, 1.26x at step 1000 with adam_b2=0.999; use it to train a TF1 recipe
        the same), "adagrad" (initial accumulator adagrad_initial_accumulator, TF1's
        default 0.1), "sgd", or "nt_asgd": SGD's steps, switching to iterate averaging once
        validation stops improving (NT-ASGD, Merity, Keskar & Socher 2017, "Regularizing and
        Optimizing LSTM Language Models", Algorithm 1, as salesforce/awd-lstm-lm's main.py).
        At a validation (every train.eval_every steps and at each epoch's end) whose loss is
        worse than the best of the validations before the last nt_asgd_nonmono, averaging
        starts: from then on evaluation, sampling, the best checkpoint and exports use the mean
        of the parameters after each step since that validation.
      learning_rate: the initial learning rate.
      max_grad_norm: clip the global gradient norm to this; None: no clipping.
      schedule: "constant"; "exponential": lr * decay_rate ** (step / decay_steps),
        floored to whole periods with staircase (TF's exponential_decay);
        "epoch_decay": the PTB recipe, lr * decay_rate ** max(epoch + 1 - decay_after_epoch,
        0) with epoch counted from 0 (TF's lr_decay ** max(i + 1 - max_epoch, 0)).
      decay_rate: factor per decay period (exponential) or per epoch (epoch_decay).
      decay_steps: steps per decay period of exponential.
      staircase: exponential decays in whole periods (True) or continuously.
      decay_after_epoch: epoch_decay keeps the initial rate for this many epochs.
      adam_b1: Adam's first-moment decay (TF1 default 0.9).
      adam_b2: Adam's second-moment decay (TF1 default 0.999).
      adam_eps: Adam's epsilon (TF1 default 1e-8).
      adagrad_initial_accumulator: Adagrad's initial accumulator value.
      nt_asgd_nonmono: NT-ASGD's non-monotone interval n: averaging starts at a validation
        that t > n validations precede when its loss exceeds the lowest of the first t - n of
        them (Merity et al. 2017, Algorithm 1; their default 5).
    """

    optimizer: OptimizerName = "adam"
    learning_rate: float = 2e-3
    max_grad_norm: float | None = 5.0
    schedule: ScheduleName = "constant"
    decay_rate: float = 1.0
    decay_steps: int = 1
    staircase: bool = True
    decay_after_epoch: int = 0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    adagrad_initial_accumulator: float = 0.1
    nt_asgd_nonmono: int = 5

    @_fields_of("optim")
    def __post_init__(self):
        require_choice("optimizer", self.optimizer, get_args(OptimizerName))
        require_choice("schedule", self.schedule, get_args(ScheduleName))
        if not self.learning_rate > 0:
            raise FieldError("learning_rate",
                             f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise FieldError("max_grad_norm",
                             f"max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}")
        if not 0 < self.decay_rate <= 1:
            raise FieldError("decay_rate",
                             f"decay_rate must lie in (0, 1], got {self.decay_rate!r}")
        require_positive_int("decay_steps", self.decay_steps)
        require_positive_int("nt_asgd_nonmono", self.nt_asgd_nonmono)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training loop.

    Attributes:
      batch_size: B, parallel streams of the corpus.
      seq_len: T, tokens per window (the truncated-BPTT length; TF's num_steps).
      random_bptt: vary each window's length (Merity, Keskar & Socher 2017, "Regularizing and
        Optimizing LSTM Language Models", sec. 4.1, as salesforce/awd-lstm-lm's main.py): a
        mean of seq_len with probability 0.95, else seq_len / 2; the length
        max(5, floor(a normal draw of that mean and standard deviation 5)), cut to the tokens
        left in the epoch; that step's learning rate scaled by length / seq_len (so it needs
        loss_scale "mean"). The draw is a function of seed and step. An epoch (a pass over
        the data) then takes a varying number of steps, about 3% more than the (tokens per
        stream - 1) // seq_len that num_epochs, the epoch_decay schedule and the logged epoch
        count in. Each distinct length compiles
        the train step once: about 50 lengths in the first 1,000 steps at seq_len 64 or 70, some
        2 s each on a 2-core CPU (the default preset's first 200 steps: 111 s instead of 21 s).
      num_epochs: passes over the training split; the run ends at num_epochs or max_steps,
        whichever comes first (None: no limit of that kind).
      max_steps: optimizer steps; None: no limit of that kind.
      loss_scale: "mean": the loss is the mean per token (the char recipes);
        "sum_over_time": summed over the T steps and averaged over the batch (the PTB recipes,
        whose learning rate 1.0 and clipping are calibrated to it). Reported perplexity is per token
        either way.
      seed: seeds parameters, dropout and sampling.
      log_every: steps between metric lines (one host sync each).
      eval_every: steps between validation passes and checkpoints (also at each epoch's end).
      keep_checkpoints: the last K checkpoints kept, besides the best by validation loss.
      eval_batch_size: streams of evaluation (with 1, the result does not depend on the window).
      eval_seq_len: window of evaluation.
      sample_length: characters or words printed as a sample at the end of training.
      num_devices: devices of the data-parallel mesh (lstmjax.parallel): the batch is split
        over them, so batch_size must be a multiple of it. None: every visible device (with
        several processes, every device of every process). May change on resume.
    """

    batch_size: int = 32
    seq_len: int = 50
    random_bptt: bool = False
    num_epochs: int | None = dataclasses.field(default=None, metadata=RESUMABLE)
    max_steps: int | None = dataclasses.field(default=1000, metadata=RESUMABLE)
    loss_scale: LossScale = "mean"
    seed: int = 0
    log_every: int = dataclasses.field(default=50, metadata=RESUMABLE)
    eval_every: int = dataclasses.field(default=250, metadata=RESUMABLE)
    keep_checkpoints: int = dataclasses.field(default=3, metadata=RESUMABLE)
    eval_batch_size: int = dataclasses.field(default=16, metadata=RESUMABLE)
    eval_seq_len: int = dataclasses.field(default=100, metadata=RESUMABLE)
    sample_length: int = dataclasses.field(default=300, metadata=RESUMABLE)
    num_devices: int | None = dataclasses.field(default=None, metadata=RESUMABLE)

    @_fields_of("train")
    def __post_init__(self):
        require_choice("loss_scale", self.loss_scale, get_args(LossScale))
        for name in ("batch_size", "seq_len", "log_every", "eval_every", "keep_checkpoints",
                     "eval_batch_size", "eval_seq_len"):
            require_positive_int(name, getattr(self, name))
        for name in ("num_epochs", "max_steps", "num_devices"):
            if getattr(self, name) is not None:
                require_positive_int(name, getattr(self, name))
        if self.num_epochs is None and self.max_steps is None:
            raise FieldError("max_steps",
                             "set num_epochs or max_steps (or both): training needs an end")
        if self.random_bptt and self.loss_scale != "mean":
            raise FieldError("random_bptt",
                             "random_bptt scales each step's learning rate by length / seq_len, "
                             "which loss_scale='sum_over_time' already does through its sum: use "
                             "loss_scale='mean' with it (as Merity et al. 2017)")
        if self.sample_length < 0:
            raise FieldError("sample_length",
                             f"sample_length must be >= 0, got {self.sample_length!r}")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs; written to the run directory as JSON and stored with checkpoints."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = dataclasses.field(default=DataConfig())
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """The config from to_dict's output; an unknown key raises a ValueError naming it."""
        parts = {}
        for field in dataclasses.fields(cls):
            section = values.get(field.name, {})
            known = {f.name for f in dataclasses.fields(_SECTIONS[field.name])}
            unknown = set(section) - known
            if unknown:
                raise ValueError(
                    f"unknown config keys {sorted(f'{field.name}.{k}' for k in unknown)}; valid keys "
                    f"of {field.name}: {sorted(known)}"
                )
            parts[field.name] = _SECTIONS[field.name](**section)
        unknown = set(values) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; valid: {sorted(_SECTIONS)}")
        return cls(**parts)


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "train": TrainConfig}


def resumable_fields() -> frozenset[str]:
    """The dotted names (``train.max_steps``) of the fields marked :data:`RESUMABLE`."""
    return frozenset(f"{section}.{field.name}" for section, cls in _SECTIONS.items()
                     for field in dataclasses.fields(cls) if marked(field, RESUMABLE))
