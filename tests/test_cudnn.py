"""Engine "cudnn": its weight adapter and its handling of lengths, checked on any backend by
running lstmjax.engines.cudnn.run_layer over jax.experimental.rnn.lstm_ref (fed with what
unpack_lstm_weights reads from the flat cuDNN vector) against engine "scan"; the reasons it gives
for what it cannot run; and, on a GPU only, the cuDNN call itself against "scan"."""

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_trees_close, random_cell_inputs
from jax.experimental import rnn

import lstmjax
from lstmjax import LSTM
from lstmjax.cells import LSTMState
from lstmjax.engines import cudnn

STEPS, BATCH, FEATURES, HIDDEN = 5, 3, 2, 4
CELL = LSTM(HIDDEN, forget_bias=1.0)
LENGTHS = jnp.array([STEPS, 2, 0], jnp.int32)  # a full sequence, a short one, an empty one


def lstm_over_reference(x, h_0, c_0, weights, seq_lengths, *, input_size, hidden_size,
                        num_layers, dropout, bidirectional, precision=None):
    """``jax.experimental.rnn.lstm``'s signature over ``lstm_ref``, which runs on any backend:
    the flat weights unpacked by ``unpack_lstm_weights``."""
    del precision  # lstm_ref's matmuls follow jax_default_matmul_precision
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size,
                                                     num_layers, bidirectional)
    return rnn.lstm_ref(x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size,
                        hidden_size, num_layers, dropout, bidirectional)


def _problem(rng):
    """``(params, carry, xs, ys_weights, carry_weights)``: random, non-zero, forget_bias 1.0."""
    params, carry, xs = random_cell_inputs(CELL, rng, batch=BATCH, steps=STEPS, features=FEATURES)
    ys_weights = jnp.asarray(rng.normal(size=(STEPS, BATCH, HIDDEN)), jnp.float32)
    carry_weights = LSTMState(*(jnp.asarray(rng.normal(size=(BATCH, HIDDEN)), jnp.float32)
                                for _ in range(2)))
    return params, carry, xs, ys_weights, carry_weights


def _value_and_grad(layer):
    """Loss ``sum(ys * ys_weights)`` plus a random projection of the final carry, its outputs and
    its gradients with respect to params, initial carry and inputs, for ``layer(params, carry,
    xs, lengths) -> (final, ys)``."""

    def loss(params, carry, xs, ys_weights, carry_weights, lengths):
        final, ys = layer(params, carry, xs, lengths)
        carry_term = sum(jnp.sum(a * w) for a, w in zip(final, carry_weights, strict=True))
        return jnp.sum(ys * ys_weights) + carry_term, (final, ys)

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


def _scan(params, carry, xs, lengths):
    return lstmjax.run_layer(CELL, params, carry, xs, engine="scan", lengths=lengths)


def _cudnn_over_reference(params, carry, xs, lengths):
    return cudnn.run_layer(CELL, params, carry, xs, lengths=lengths, reverse=False, resets=None,
                           noise=None, unroll=1, lstm=lstm_over_reference)


def test_weights_and_lengths_match_scan_through_lstm_ref(rng):
    """Outputs, final carries (length 0: the initial carry, which lstm_ref alone gets wrong) and
    gradients, with and without lengths; one compilation."""
    problem = _problem(rng)
    assert cudnn.cudnn_weights(CELL, problem[0]).shape == (
        rnn.get_num_params_in_lstm(FEATURES, HIDDEN, 1, False),)

    @jax.jit
    def both(*problem):
        return {lengths_name: (_value_and_grad(_scan)(*problem, lengths),
                               _value_and_grad(_cudnn_over_reference)(*problem, lengths))
                for lengths_name, lengths in [("lengths", LENGTHS), ("no lengths", None)]}

    with jax.default_matmul_precision("float32"):  # no TF32 on a GPU
        results = both(*problem)
    for name, (expected, actual) in results.items():
        assert_trees_close(actual, expected, rtol=1e-5, atol=2e-6, err_msg=name)
    (_, (final, ys)), _ = results["lengths"][1]
    assert_trees_close(LSTMState(final.c[2], final.h[2]), LSTMState(problem[1].c[2],
                                                                    problem[1].h[2]))
    assert not jnp.any(ys[2:, 1]) and not jnp.any(ys[:, 2])


def test_reasons_for_what_it_cannot_run():
    options = {"backend": "gpu", "lengths": False, "reverse": False, "resets": False}
    assert cudnn.supports(CELL, **options) is None
    assert cudnn.supports(CELL, **{**options, "lengths": True}) is None
    for backend in ["cpu", "tpu"]:
        assert "NVIDIA GPU" in cudnn.supports(CELL, **{**options, "backend": backend})
    for option in ["reverse", "resets"]:
        assert option in cudnn.supports(CELL, **{**options, option: True})
    for cls in set(lstmjax.CELLS.values()) - {LSTM}:  # every other cell of the registry
        assert cls.__name__ in cudnn.supports(cls(4), **options)
    for field, value in [("use_peepholes", True), ("proj_size", 3), ("cell_clip", 1.0),
                         ("proj_clip", 1.0)]:
        assert field in cudnn.supports(LSTM(4, **{field: value}), **options)
    for dtype in [jnp.bfloat16, jnp.float16]:
        assert "float32 only" in cudnn.supports(LSTM(4, dtype=dtype), **options)

    choice = lstmjax.resolve(LSTM(4), "cudnn", num_steps=5, batch_size=3, backend="cpu")
    assert choice.engine == "fused" and "GPU" in choice.reason
    choice = lstmjax.resolve(LSTM(4), "cudnn", num_steps=5, batch_size=3, backend="gpu",
                             reverse=True)
    assert choice.engine == "fused" and "reverse" in choice.reason
    assert lstmjax.resolve(LSTM(4), "cudnn", num_steps=5, batch_size=3, backend="gpu",
                           lengths=True).engine == "cudnn"

    xs = jnp.zeros((STEPS, BATCH, FEATURES), jnp.float32)
    with pytest.raises(ValueError, match="reverse"):
        cudnn.run_layer(CELL, CELL.init(jax.random.key(0), FEATURES), CELL.zero_carry(BATCH), xs,
                        lengths=None, reverse=True, resets=None, noise=None, unroll=1)
    with pytest.raises(ValueError, match="use_peepholes"):
        cudnn.cudnn_weights(LSTM(4, use_peepholes=True), {})


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN needs an NVIDIA GPU")
def test_cudnn_equals_scan_on_gpu(rng):
    """TF32 off (float32 precision), so that cuDNN and XLA's matmuls compare to float32. Under
    jit, as a train step runs it: jit once placed the swapaxes around the cuDNN call in the
    buffers' layouts, which cuDNN does not read (see cudnn._row_major)."""
    problem = _problem(rng)

    def _cudnn(params, carry, xs, lengths):
        return lstmjax.run_layer(CELL, params, carry, xs, engine="cudnn", lengths=lengths)

    with jax.default_matmul_precision("float32"):
        for lengths in [LENGTHS, None]:
            assert lstmjax.resolve(CELL, "cudnn", num_steps=STEPS, batch_size=BATCH,
                                   lengths=lengths is not None).engine == "cudnn"
            expected = jax.jit(_value_and_grad(_scan))(*problem, lengths)
            actual = jax.jit(_value_and_grad(_cudnn))(*problem, lengths)
            assert_trees_close(actual, expected, rtol=1e-5, atol=1e-5,
                               err_msg=f"lengths={lengths}")
