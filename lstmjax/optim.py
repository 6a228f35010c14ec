"""The optimizer: one optax chain, ``clip_by_global_norm`` then Adam, TF1's Adam, Adagrad or SGD,
on a schedule; and NT-ASGD's iterate average (Merity et al. 2017), which SGD's steps update.

NT-ASGD is SGD plus two pieces kept outside the optax chain, since a validation (on the host)
decides when averaging starts: :class:`IterateAverage`, carried in the train state and updated by
each train step (:func:`update_average`), and the trigger :func:`should_start_averaging`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.struct
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
    else:  # sgd, and nt_asgd, whose averaging is the train step's (update_average)
        update = optax.sgd(schedule)
    if config.max_grad_norm is None:
        return update, schedule
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), update), schedule


def averages_iterates(config: OptimConfig) -> bool:
    """Whether the optimizer keeps an :class:`IterateAverage` (NT-ASGD)."""
    return config.optimizer == "nt_asgd"


@flax.struct.dataclass
class IterateAverage:
    """NT-ASGD's average of the iterates (Merity, Keskar & Socher 2017, Algorithm 1).

    Attributes:
      params: the mean of the parameters after each optimizer step since ``start``; before
        averaging starts (and at ``start`` itself), a copy of the current parameters. So
        evaluation reads ``params`` whether or not averaging has started.
      start: ``int32[]``, the optimizer step at which averaging started (the iterates of steps
        ``start + 1, start + 2, ...`` are averaged); -1 until then.
    """

    params: Any
    start: jax.Array


def init_average(params: Any) -> IterateAverage:
    """An average that has not started: a copy of ``params`` (its own buffers, so that a step
    may donate both), ``start = -1``."""
    return IterateAverage(params=jax.tree.map(jnp.copy, params),
                          start=jnp.full((), -1, jnp.int32))


def update_average(average: IterateAverage, params: Any, step: jax.Array) -> IterateAverage:
    """The average once ``params`` became the iterate of optimizer step ``step`` (counted after
    the update): with ``k = step - start`` iterates since the start, ``a + (params - a) / k``
    (torch's ASGD with ``t0=0, lambd=0``, as the reference switches to); ``params`` itself
    when ``k <= 1`` or averaging has not started. Jittable."""
    count = jnp.where(average.start >= 0, step - average.start, 0)

    def mean(a, p):
        return jnp.where(count > 1, a + (p - a) / count.astype(a.dtype), p)

    return average.replace(params=jax.tree.map(mean, average.params, params))


def start_averaging(average: IterateAverage, step: int) -> IterateAverage:
    """``average`` started at optimizer step ``step`` (the average is the parameters of that step,
    which the next step's iterate replaces)."""
    return average.replace(start=jnp.full((), step, jnp.int32))


def should_start_averaging(earlier_losses: Sequence[float], loss: float, nonmono: int) -> bool:
    """NT-ASGD's non-monotone trigger: whether a validation ``loss``, after the validation
    losses ``earlier_losses`` (oldest first), starts averaging: ``t > nonmono`` earlier
    validations and ``loss`` above the lowest of all but their last ``nonmono``
    (salesforce/awd-lstm-lm's ``len(best_val_loss) > nonmono and val_loss >
    min(best_val_loss[:-nonmono])``)."""
    return len(earlier_losses) > nonmono and loss > min(earlier_losses[:-nonmono])
