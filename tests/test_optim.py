"""The optimizer chain and the recipe schedules, against their definitions."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstmjax.config import OptimConfig
from lstmjax.optim import (
    init_average,
    make_optimizer,
    make_schedule,
    should_start_averaging,
    start_averaging,
    update_average,
)

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


def test_adam_tf1_is_tf1s_closed_form_after_clipping_on_a_schedule():
    """tf.train.AdamOptimizer: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t), update lr_t m / (sqrt(v) + eps).

    Gradients of the size of eps, so that where epsilon goes shows: optax's Adam differs by more
    than 10% at the first step; TF1's closed form, in float64, within float32 rounding.
    """
    b1, b2, eps, lr, clip = 0.8, 0.99, 1e-3, 0.1, 3e-3
    config = OptimConfig(optimizer="adam_tf1", learning_rate=lr, max_grad_norm=clip,
                         schedule="exponential", decay_rate=0.5, decay_steps=2, staircase=False,
                         adam_b1=b1, adam_b2=b2, adam_eps=eps)
    optimizer, schedule = make_optimizer(config, steps_per_epoch=1)
    rng = np.random.default_rng(0)
    grads = rng.normal(scale=2e-3, size=(6, 3)) * np.array([[1.0], [2.0], [0.5], [1.0], [3.0], [1.0]])
    params = {"w": jnp.zeros(3)}
    state = optimizer.init(params)
    m, v = np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        updates, state = optimizer.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
        g = g * min(1.0, clip / np.linalg.norm(g))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        lr_t = lr * 0.5 ** ((t - 1) / 2) * np.sqrt(1 - b2**t) / (1 - b1**t)
        expected = -lr_t * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(updates["w"], expected, rtol=2e-6, err_msg=f"step {t}")
        np.testing.assert_allclose(schedule(jnp.int32(t - 1)), lr * 0.5 ** ((t - 1) / 2), rtol=1e-6)
        if t == 1:
            optax_adam = -lr * m / (1 - b1) / (np.sqrt(v / (1 - b2)) + eps)
            assert np.all(np.abs(optax_adam / expected - 1) > 0.1)


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"max_grad_norm": -1.0}, "max_grad_norm must be > 0 or None"),
    ({"decay_rate": 1.5}, r"decay_rate must lie in \(0, 1\]"),
    ({"optimizer": "rmsprop"},
     r"optimizer must be one of \('adam', 'adam_tf1', 'adagrad', 'sgd', 'nt_asgd'\)"),
    ({"nt_asgd_nonmono": 0}, "nt_asgd_nonmono must be a positive int, got 0"),
    ({"schedule": "cosine"}, r"schedule must be one of \('constant', 'exponential', 'epoch_decay'\)"),
])
def test_bad_optimizer_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        OptimConfig(**overrides)


def test_nt_asgd_trigger_is_the_reference_non_monotone_rule():
    """salesforce/awd-lstm-lm: switch when len(logs) > n and val_loss > min(logs[:-n]), logs the
    losses of the validations before."""
    assert not should_start_averaging([5.0, 4.0], 9.0, 2)  # 2 earlier validations, not > n
    assert not should_start_averaging([5.0, 4.0, 3.0], 4.5, 2)  # min([5.0]) = 5.0
    assert should_start_averaging([5.0, 4.0, 3.0], 5.5, 2)
    assert not should_start_averaging([5.0, 4.0, 3.0, 3.5], 4.0, 2)  # min(5, 4) = 4: not above
    assert should_start_averaging([5.0, 4.0, 3.0, 3.5], 4.01, 2)
    # a run, by hand with n = 2: at 3.6 min([4.0]); at 3.58 min(4.0, 3.8); at 3.69 min(4.0, 3.8,
    # 3.9) = 3.8; at 3.64 min(4.0, 3.8, 3.9, 3.6) = 3.6 < 3.64: the seventh validation switches
    losses = [4.0, 3.8, 3.9, 3.6, 3.58, 3.69, 3.64, 3.7]
    switches = [t for t in range(len(losses)) if should_start_averaging(losses[:t], losses[t], 2)]
    assert switches[0] == 6


def test_iterate_average_is_the_mean_of_the_iterates_after_the_switch():
    """Before averaging starts the average is the parameters themselves (bit for bit); switched at
    step 2, after step k it is the mean of the iterates of steps 3..k (torch's ASGD, t0=0)."""
    iterates = [{"w": jnp.array([0.1 * k + 0.3, (k - 2.5) ** 2 / 3], jnp.float32)} for k in range(8)]
    average = init_average(iterates[0])
    assert int(average.start) == -1
    for k in (1, 2):
        average = update_average(average, iterates[k], jnp.int32(k))
        np.testing.assert_array_equal(average.params["w"], iterates[k]["w"])
    average = start_averaging(average, 2)
    assert int(average.start) == 2
    for k in range(3, 8):
        average = update_average(average, iterates[k], jnp.int32(k))
        expected = np.mean([np.asarray(iterates[j]["w"], np.float64) for j in range(3, k + 1)], axis=0)
        np.testing.assert_allclose(average.params["w"], expected, rtol=1e-6, err_msg=f"step {k}")
    np.testing.assert_allclose(average.params["w"], [0.8, (0.25 + 2.25 + 6.25 + 12.25 + 20.25) / 15],
                               rtol=1e-6)  # steps 3..7: mean of 0.1k + 0.3 and of (k - 2.5)^2 / 3


def test_nt_asgd_steps_as_sgd():
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.array([3.0, 4.0])}
    updates = {}
    for name in ("sgd", "nt_asgd"):
        optimizer, _ = make_optimizer(OptimConfig(optimizer=name, learning_rate=0.5,
                                                  max_grad_norm=1.0), steps_per_epoch=1)
        updates[name], _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_array_equal(updates["nt_asgd"]["w"], updates["sgd"]["w"])
    np.testing.assert_allclose(updates["nt_asgd"]["w"], [-0.3, -0.4], rtol=1e-6)
