"""The stacked recurrent language model: tokens in, logits and final carries out.

``tokens: int[B, T]`` -> input features (embedding or one-hot) -> dropout -> L recurrent layers, each
run over the whole window by :func:`lstmjax.engines.run` and followed by dropout -> dense head ->
``logits: float[B, T, V]``. The model takes the initial carries and returns the final ones, so
truncated backpropagation through time can carry the state from one window to the next.

Parameter tree (``variables["params"]``)::

    embedding/embedding   [V, E]          (input_mode="embedding" only)
    layer_0 .. layer_{L-1}                one dict per layer, the cell's layout (lstmjax.cells)
    head/kernel           [H_out, V]      H_out = proj_size or hidden_size
    head/bias             [V]
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstmjax import engines
from lstmjax.cells import GRU, LSTM, Cell, LayerNormLSTM, LSTMState, SimpleRNN
from lstmjax.config import ModelConfig

Array = jax.Array


def make_cells(config: ModelConfig) -> list[Cell]:
    """The ``num_layers`` cells that ``config`` describes, first layer first."""
    options = {
        "kernel_init": None if config.init_scale is None else _matrix_init(config.init_scale),
        "param_dtype": jnp.dtype(config.param_dtype),
        "dtype": jnp.dtype(config.dtype),
    }
    if config.cell == "lstm":
        cell = LSTM(
            config.hidden_size,
            forget_bias=config.forget_bias,
            use_peepholes=config.use_peepholes,
            proj_size=config.proj_size,
            **options,
        )
    elif config.cell == "gru":
        cell = GRU(config.hidden_size, reset_after=config.reset_after, **options)
    elif config.cell == "rnn":
        cell = SimpleRNN(config.hidden_size, **options)
    else:
        cell = LayerNormLSTM(
            config.hidden_size,
            forget_bias=config.forget_bias,
            layer_norm_cell=config.layer_norm_cell,
            **options,
        )
    return [cell] * config.num_layers


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
            x = nn.Embed(
                config.vocab_size,
                config.input_size,
                embedding_init=init,
                param_dtype=jnp.dtype(config.param_dtype),
                dtype=dtype,
                name="embedding",
            )(tokens)
        else:
            x = jax.nn.one_hot(tokens, config.vocab_size, dtype=dtype)
        x = self._dropout(jnp.swapaxes(x, 0, 1), train)  # [T, B, E]

        final_carry = []
        for layer, cell in enumerate(make_cells(config)):
            params = self.param(f"layer_{layer}", cell.init, x.shape[-1])
            step = cell.step
            if train and config.recurrent_dropout > 0:
                step = _with_state_dropout(step, self._state_mask(carry[layer]))
            layer_carry, x = engines.run(
                step, params, carry[layer], x, engine=config.engine, unroll=config.unroll
            )  # x: [T, B, H_out]
            x = self._dropout(x, train)
            final_carry.append(layer_carry)

        logits = nn.Dense(
            config.vocab_size,
            kernel_init=init,
            bias_init=nn.initializers.zeros if config.init_scale is None else init,
            param_dtype=jnp.dtype(config.param_dtype),
            dtype=dtype,
            name="head",
        )(x)  # [T, B, V]
        return jnp.swapaxes(logits, 0, 1), tuple(final_carry)

    def _dropout(self, x: Array, train: bool) -> Array:
        """Dropout on time-major ``x: [T, B, F]``, one mask per sequence if ``variational``."""
        broadcast_dims = (0,) if self.config.variational else ()
        return nn.Dropout(self.config.dropout, broadcast_dims=broadcast_dims)(
            x, deterministic=not train
        )

    def _state_mask(self, carry: Any) -> Array:
        """A per-sequence inverted-dropout mask for the recurrent state: ``[B, H_out]``."""
        state = carry.h if isinstance(carry, LSTMState) else carry
        keep = 1.0 - self.config.recurrent_dropout
        kept = jax.random.bernoulli(self.make_rng("dropout"), keep, jnp.shape(state))
        return kept.astype(jnp.dtype(self.config.dtype)) / jnp.asarray(keep, self.config.dtype)


def _with_state_dropout(step: engines.Step, mask: Array) -> engines.Step:
    """``step`` that first multiplies the recurrent state it is given by ``mask`` (c untouched)."""

    def dropped_step(params, carry, x):
        if isinstance(carry, LSTMState):
            carry = carry._replace(h=carry.h * mask)
        else:
            carry = carry * mask
        return step(params, carry, x)

    return dropped_step


def _matrix_init(init_scale: float | None):
    """Uniform in [-init_scale, init_scale] (the PTB recipes), or Glorot uniform if None."""
    if init_scale is None:
        return jax.nn.initializers.glorot_uniform()

    def uniform(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -init_scale, init_scale)

    return uniform
