"""The optimizer chain and the recipe schedules, against their definitions."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstmjax.config import OptimConfig
from lstmjax.optim import make_optimizer, make_schedule

pytestmark = pytest.mark.usefixtures("standard_promotion")


def test_epoch_decay_is_the_ptb_recipe():
    """TF's ptb_word_lm: lr * lr_decay ** max(i + 1 - max_epoch, 0) for epoch i from 0."""
    config = OptimConfig(optimizer="sgd", learning_rate=1.0, schedule="epoch_decay",
                         decay_rate=0.5, decay_after_epoch=4)
    schedule = make_schedule(config, steps_per_epoch=10)
    for epoch in range(8):
        expected = 0.5 ** max(epoch + 1 - 4, 0)
        for step in (epoch * 10, epoch * 10 + 9):
            np.testing.assert_allclose(schedule(jnp.int32(step)), expected, rtol=1e-7)


@pytest.mark.parametrize("staircase", [True, False])
def test_exponential_decay_is_tf_exponential_decay(staircase):
    config = OptimConfig(optimizer="sgd", learning_rate=10.0, schedule="exponential",
                         decay_rate=0.1, decay_steps=5000, staircase=staircase)
    schedule = make_schedule(config, steps_per_epoch=1)
    for step in (0, 4999, 5000, 12345):
        exponent = step // 5000 if staircase else step / 5000
        np.testing.assert_allclose(schedule(jnp.int32(step)), 10.0 * 0.1 ** exponent, rtol=1e-5)


def test_clip_then_adagrad_with_tf_initial_accumulator():
    config = OptimConfig(optimizer="adagrad", learning_rate=0.9, max_grad_norm=1.25)
    optimizer, _ = make_optimizer(config, steps_per_epoch=1)
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.array([3.0, 4.0])}  # norm 5, clipped to 1.25: [0.75, 1.0]
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    clipped = np.array([0.75, 1.0])
    np.testing.assert_allclose(updates["w"], -0.9 * clipped / np.sqrt(0.1 + clipped**2), rtol=1e-6)


def test_no_clipping_and_adam():
    config = OptimConfig(optimizer="adam", learning_rate=1e-3, max_grad_norm=None)
    optimizer, _ = make_optimizer(config, steps_per_epoch=1)
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([100.0, -0.5, 2.0])}
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    reference, _ = optax.adam(1e-3).update(grads, optax.adam(1e-3).init(params), params)
    np.testing.assert_allclose(updates["w"], reference["w"], rtol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be > 0 or None"),
    ({"decay_rate": 1.5}, r"decay_rate must lie in \(0, 1\]"),
    ({"optimizer": "rmsprop"}, r"optimizer must be one of \('adam', 'adagrad', 'sgd'\)"),
    ({"schedule": "cosine"}, r"schedule must be one of \('constant', 'exponential', 'epoch_decay'\)"),
])
def test_bad_optimizer_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        OptimConfig(**overrides)
