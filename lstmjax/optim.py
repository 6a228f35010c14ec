"""The optimizer: one optax chain, ``clip_by_global_norm`` then Adam, TF1's Adam, Adagrad or SGD,
on a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax
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


class ScaleByAdamTF1State(NamedTuple):
    """State of :func:`scale_by_adam_tf1`: the step count t (int32) and the moments m, v."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adam_tf1(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                      ) -> optax.GradientTransformation:
    """Adam's direction as TF1's ``tf.train.AdamOptimizer`` computes it (Kingma & Ba, sec. 2).

    With ``m_t = b1 m + (1 - b1) g`` and ``v_t = b2 v + (1 - b2) g^2`` (t counted from 1)::

        update_t = sqrt(1 - b2^t) / (1 - b1^t) * m_t / (sqrt(v_t) + eps)

    epsilon is added to the root of the uncorrected ``v_t``. ``optax.scale_by_adam`` adds it to
    the bias-corrected root instead, which is this update with epsilon ``eps * sqrt(1 - b2^t)``;
    put differently, TF1's epsilon in optax's terms is ``eps / sqrt(1 - b2^t)``: 32x larger at
    step 1, 10x at step 10, 3.2x at step 100, 1.26x at step 1000 (b2=0.999). Follow it with
    ``optax.scale_by_learning_rate`` (as :func:`make_optimizer` does).
    """

    def init_fn(params):
        return ScaleByAdamTF1State(count=jnp.zeros([], jnp.int32),
                                   mu=optax.tree.zeros_like(params),
                                   nu=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        scale = jnp.sqrt(1 - b2**t) / (1 - b1**t)
        updates = jax.tree.map(lambda m, v: (scale * m / (jnp.sqrt(v) + eps)).astype(m.dtype),
                               mu, nu)
        return updates, ScaleByAdamTF1State(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(
    config: OptimConfig, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(optimizer, schedule)``: the optax chain the config describes and its learning rate."""
    schedule = make_schedule(config, steps_per_epoch)
    if config.optimizer == "adam":
        update = optax.adam(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)
    elif config.optimizer == "adam_tf1":
        update = optax.chain(
            scale_by_adam_tf1(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps),
            optax.scale_by_learning_rate(schedule),
        )
    elif config.optimizer == "adagrad":
        update = optax.adagrad(
            schedule, initial_accumulator_value=config.adagrad_initial_accumulator, eps=0.0
        )
    else:
        update = optax.sgd(schedule)
    if config.max_grad_norm is None:
        return update, schedule
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), update), schedule
