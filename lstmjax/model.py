"""The stacked recurrent language model: tokens in, logits and final carries out.

``tokens: int[B, T]`` -> input features (embedding, with embedding dropout, or one-hot) -> dropout
-> L recurrent layers, each run over the whole window (:func:`lstmjax.run_stack`, on
:func:`lstmjax.run_layer`) and followed by dropout -> dense head (its kernel the embedding table
transposed with ``tie_weights``) -> ``logits: float[B, T, V]``. The model takes the initial carries
and returns the final ones, so truncated backpropagation through time can carry the state from one
window to the next.

The last layer's outputs are sown in the ``"intermediates"`` collection, time-major: ``outputs``
``[T, B, H_out]`` before their dropout and ``dropped_outputs`` after it (each a 1-tuple; they are
kept only when ``apply`` is given ``mutable=["intermediates"]``). The training loss reads them for
AR and TAR (:mod:`lstmjax.steps`).

Parameter tree (``variables["params"]``)::

    embedding/embedding   [V, E]          (input_mode="embedding" only)
    layer_0 .. layer_{L-1}                one dict per layer, the cell's layout (lstmjax.cells)
    head/kernel           [H_out, V]      H_out = proj_size or hidden_size; absent with tie_weights
    head/bias             [V]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstmjax import engines, layers
from lstmjax.cells import CELLS, LayerCell
from lstmjax.config import CELL_OPTIONS, ModelConfig
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout, draws_noise

Array = jax.Array


def make_cells(config: ModelConfig) -> list[LayerCell]:
    """The ``num_layers`` cells that ``config`` describes, first layer first.

    The class comes from :data:`lstmjax.cells.CELLS`, with ``layer_sizes`` (or ``hidden_size``)
    units; every config field in :data:`lstmjax.config.CELL_OPTIONS` that the class has is passed
    on. The regularizers that are on wrap it (:mod:`lstmjax.regularizers`), innermost first:
    weight drop (on the kernels), recurrent dropout (on the state entering a step), zoneout (on
    the state a step leaves, mixing it with the state before any mask).
    """
    cls = CELLS[config.cell]
    fields = {field.name for field in dataclasses.fields(cls)}
    options = {name: getattr(config, name) for name in CELL_OPTIONS if name in fields}
    # one initializer for every layer: layers of one size are then equal cells (one compiled
    # engine, one entry of auto's cache)
    kernel_init = None if config.init_scale is None else _matrix_init(config.init_scale)

    def cell(hidden_size: int) -> LayerCell:
        cell = cls(hidden_size, **options, kernel_init=kernel_init,
                   param_dtype=jnp.dtype(config.param_dtype), dtype=jnp.dtype(config.dtype))
        if config.weight_drop:
            cell = WeightDrop(cell, config.weight_drop)
        if config.recurrent_dropout:
            cell = RecurrentDropout(cell, config.recurrent_dropout)
        if config.zoneout_cell or config.zoneout_hidden:
            cell = Zoneout(cell, config.zoneout_cell, config.zoneout_hidden)
        return cell

    return [cell(size) for size in config.layer_sizes or [config.hidden_size] * config.num_layers]


def resolve_engines(config: ModelConfig, *, batch_size: int,
                    seq_len: int) -> list[engines.EngineChoice]:
    """The engine each layer runs for ``[batch_size, seq_len]`` windows (the run log prints it)."""
    cells = make_cells(config)
    input_sizes = [config.input_size, *(cell.output_size for cell in cells[:-1])]
    return [engines.resolve(cell, config.engine, unroll=config.unroll, num_steps=seq_len,
                            batch_size=batch_size, input_size=input_size)
            for cell, input_size in zip(cells, input_sizes)]


def zero_carry(config: ModelConfig, batch_size: int) -> tuple[Any, ...]:
    """The all-zero initial carry of the stack: one carry per layer, ``[B, ...]`` leaves."""
    return tuple(cell.zero_carry(batch_size) for cell in make_cells(config))


class RNNLanguageModel(nn.Module):
    """Stacked recurrent language model (Zaremba et al. 2014 layout).

    Call as ``model.apply(variables, tokens, carry, train=..., rngs={"dropout": key})``.

    Args (of ``__call__``):
      tokens: ``int[B, T]`` token ids.
      carry: tuple of L per-layer carries, e.g. ``zero_carry(config, B)`` or the final carry of the
        previous window.
      train: apply dropout (needs a ``"dropout"`` rng when any dropout is set).

    Returns:
      ``(logits: float[B, T, V], final_carry)``.
    """

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens: Array, carry: tuple[Any, ...], *, train: bool = False):
        config = self.config
        if config.vocab_size is None:
            raise ValueError("config.vocab_size is None: set it to the vocabulary's size")
        if jnp.ndim(tokens) != 2 or not jnp.issubdtype(jnp.result_type(tokens), jnp.integer):
            raise ValueError(
                f"tokens must be int[batch, time], got {jnp.result_type(tokens)}"
                f"{list(jnp.shape(tokens))}"
            )
        if not isinstance(carry, tuple | list) or len(carry) != config.num_layers:
            raise ValueError(
                f"carry must be a tuple of num_layers={config.num_layers} per-layer carries "
                "(make it with lstmjax.zero_carry(config, batch_size))"
            )
        dtype = jnp.dtype(config.dtype)
        init = _matrix_init(config.init_scale)
        if config.input_mode == "embedding":
            embed = nn.Embed(
                config.vocab_size,
                config.input_size,
                embedding_init=init,
                param_dtype=jnp.dtype(config.param_dtype),
                dtype=dtype,
                name="embedding",
            )
            x = embed(tokens.T)
            if train and config.embed_dropout:  # drawn before any other dropout key
                rows = drop_rows(self.make_rng("dropout"), config.embed_dropout,
                                 config.vocab_size, dtype)
                x = x * rows[tokens.T]  # == the lookup in the row-masked table
        else:
            x = jax.nn.one_hot(tokens.T, config.vocab_size, dtype=dtype)
        # Time-major from the start: transposing the int tokens, not their features, is cheaper.
        x = self._dropout(x, train)  # [T, B, E]

        cells = make_cells(config)
        input_sizes = [x.shape[-1], *(cell.output_size for cell in cells[:-1])]
        params = [self.param(f"layer_{layer}", cell.init, size)
                  for layer, (cell, size) in enumerate(zip(cells, input_sizes))]
        noisy = train and any(draws_noise(cell) for cell in cells)
        final_carry, x = layers.run_stack(
            cells, params, carry, x, engine=config.engine, unroll=config.unroll,
            between=lambda layer, ys: self._dropout(ys, train),
            keys=(lambda layer: self.make_rng("dropout")) if noisy else None,
            remat_chunk=config.remat_chunk if train else None,
        )  # x: [T, B, H_out]; each layer's key drawn just before it runs
        self.sow("intermediates", "outputs", x)
        x = self._dropout(x, train)
        self.sow("intermediates", "dropped_outputs", x)

        x = jnp.swapaxes(x, 0, 1)  # [B, T, H_out]: the H-wide features, not the V-wide logits
        bias_init = nn.initializers.zeros if config.init_scale is None else init
        param_dtype = jnp.dtype(config.param_dtype)
        if config.tie_weights:
            logits = TiedHead(bias_init, param_dtype, dtype, name="head")(x, embed.embedding)
        else:
            logits = nn.Dense(config.vocab_size, kernel_init=init, bias_init=bias_init,
                              param_dtype=param_dtype, dtype=dtype, name="head")(x)
        return logits, final_carry  # logits: [B, T, V]

    def _dropout(self, x: Array, train: bool) -> Array:
        """Dropout on time-major ``x: [T, B, F]``, one mask per sequence if ``variational``."""
        broadcast_dims = (0,) if self.config.variational else ()
        return nn.Dropout(self.config.dropout, broadcast_dims=broadcast_dims)(
            x, deterministic=not train
        )


class TiedHead(nn.Module):
    """The head of a weight-tied model (Inan et al. 2017; Press & Wolf 2017): the embedding table
    transposed as its kernel, and a bias of its own.

    Args (of ``__call__``):
      x: ``float[B, T, E]`` features.
      embedding: ``float[V, E]``, the embedding table.

    Returns:
      ``logits = x @ embedding.T + bias``: ``float[B, T, V]``, in ``dtype``.
    """

    bias_init: Any
    param_dtype: Any
    dtype: Any

    @nn.compact
    def __call__(self, x: Array, embedding: Array) -> Array:
        bias = self.param("bias", self.bias_init, (embedding.shape[0],), self.param_dtype)
        x, embedding, bias = nn.dtypes.promote_dtype(x, embedding, bias, dtype=self.dtype)
        return jnp.dot(x, embedding.T) + bias[None, None]


def drop_rows(key: Array, rate: float, num_rows: int, dtype: Any) -> Array:
    """Embedding dropout's mask (Merity et al. 2017, AWD-LSTM's ``embedded_dropout``):
    ``float[num_rows, 1]``, each row 0 with probability ``rate``, else ``1 / (1 - rate)``.

    Multiplying the ``[V, E]`` table by it drops whole word types; indexing it with the tokens
    gives the same features from the unmasked lookup (``table[tokens] * mask[tokens]``)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, (num_rows, 1))
    return keep.astype(dtype) / jnp.asarray(1.0 - rate, dtype)


def _matrix_init(init_scale: float | None):
    """Uniform in [-init_scale, init_scale] (the PTB recipes), or Glorot uniform if None."""
    if init_scale is None:
        return jax.nn.initializers.glorot_uniform()

    def uniform(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -init_scale, init_scale)

    return uniform
