"""The optimizer: one optax chain, ``clip_by_global_norm`` then Adam, Adagrad or SGD, on a schedule."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from lstmjax.config import OptimConfig


def make_schedule(config: OptimConfig, steps_per_epoch: int) -> optax.Schedule:
    """The learning rate as a function of the optimizer step (see :class:`OptimConfig`)."""
    lr = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "exponential":
        return optax.exponential_decay(
            lr, config.decay_steps, config.decay_rate, staircase=config.staircase
        )

    def epoch_decay(step):
        epoch = step // steps_per_epoch
        exponent = jnp.maximum(epoch + 1 - config.decay_after_epoch, 0).astype(jnp.float32)
        return lr * jnp.power(jnp.float32(config.decay_rate), exponent)

    return epoch_decay


def make_optimizer(
    config: OptimConfig, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(optimizer, schedule)``: the optax chain the config describes and its learning rate."""
    schedule = make_schedule(config, steps_per_epoch)
    if config.optimizer == "adam":
        update = optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
    elif config.optimizer == "adagrad":
        update = optax.adagrad(
            schedule, initial_accumulator_value=config.adagrad_initial_accumulator, eps=0.0
        )
    else:
        update = optax.sgd(schedule)
    if config.max_grad_norm is None:
        return update, schedule
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), update), schedule
