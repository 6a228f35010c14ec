"""engines.run: exact loop semantics with an integer counting step, then scan == static on every
cell with lengths and reverse, forward and gradients, and clear errors for bad arguments."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs

import lstmjax
from lstmjax import GRU, LSTM, LayerNormLSTM, SimpleRNN
from lstmjax.engines import GENERIC_ENGINES as ENGINES


def counting_step(params, carry, x):
    """carry counts steps and sums inputs; y records (count, x) so order is visible exactly."""
    count, total = carry
    return (count + 1, total + x), count * 1000 + x * params


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("reverse", [False, True])
def test_counting_step_order_lengths_and_final_carry(engine, reverse):
    steps, batch = 5, 4
    xs = jnp.arange(1, steps * batch + 1, dtype=jnp.int32).reshape(steps, batch)  # [T, B]
    lengths = jnp.array([5, 3, 0, 1], jnp.int32)
    carry = (jnp.zeros(batch, jnp.int32), jnp.full(batch, 100, jnp.int32))
    (count, total), ys = lstmjax.run(
        counting_step, jnp.int32(2), carry, xs, engine=engine, lengths=lengths, reverse=reverse
    )
    xs_np = np.asarray(xs)
    for b, length in enumerate(np.asarray(lengths)):
        order = range(length - 1, -1, -1) if reverse else range(length)
        expected = np.zeros(steps, np.int64)
        for k, t in enumerate(order):  # the k-th step taken reads xs[t] and writes ys[t]
            expected[t] = k * 1000 + 2 * xs_np[t, b]
        np.testing.assert_array_equal(ys[:, b], expected, err_msg=f"sequence {b}")
        assert count[b] == length
        assert total[b] == 100 + xs_np[:length, b].sum()


@pytest.mark.parametrize("engine", ENGINES)
def test_counting_step_without_lengths_and_batch_major(engine):
    xs = jnp.arange(12, dtype=jnp.int32).reshape(3, 4)  # [B, T]
    carry = (jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32))
    (count, total), ys = lstmjax.run(
        counting_step, jnp.int32(1), carry, xs, engine=engine, time_major=False
    )
    np.testing.assert_array_equal(ys, np.arange(4)[None, :] * 1000 + np.asarray(xs))
    np.testing.assert_array_equal(count, [4, 4, 4])
    np.testing.assert_array_equal(total, np.asarray(xs).sum(1))


@pytest.mark.parametrize("engine", ENGINES)
def test_pytree_inputs_and_outputs(engine):
    def step(params, carry, x):
        return carry + x["a"] * x["b"], {"sum": carry, "twice": 2 * x["a"]}

    xs = {"a": jnp.ones((4, 2, 3)), "b": jnp.arange(24.0).reshape(4, 2, 3)}
    carry, ys = lstmjax.run(step, None, jnp.zeros((2, 3)), xs, engine=engine)
    np.testing.assert_allclose(carry, np.asarray(xs["b"]).sum(0))
    assert ys["sum"].shape == (4, 2, 3) and ys["twice"].shape == (4, 2, 3)


def _sequence_loss(cell, engine, unroll, lengths, reverse, params, carry, xs, weights):
    """sum(ys * weights) + sum of every final-carry leaf times a fixed pattern."""
    final, ys = lstmjax.run(
        cell.step, params, carry, xs, engine=engine, unroll=unroll, lengths=lengths, reverse=reverse
    )
    carry_terms = sum(jnp.sum(leaf * jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype)).reshape(leaf.shape))
                      for leaf in jax.tree.leaves(final))
    return jnp.sum(ys * weights) + carry_terms, (final, ys)


# The masking and ordering logic is cell-agnostic: one cell whose carry is a NamedTuple of two
# shapes (projected LSTM) and one whose carry is a single array (GRU) cover it.
LENGTHS_REVERSE_CASES = [
    (LSTM(4, use_peepholes=True, proj_size=3), False, False),
    (LSTM(4, use_peepholes=True, proj_size=3), True, False),
    (LSTM(4, use_peepholes=True, proj_size=3), True, True),
    (GRU(4, reset_after=True), True, True),
]


@pytest.mark.parametrize("cell, with_lengths, reverse", LENGTHS_REVERSE_CASES,
                         ids=["lstm", "lstm-lengths", "lstm-lengths-reverse", "gru-lengths-reverse"])
def test_static_equals_scan_with_lengths_and_reverse(cell, with_lengths, reverse, rng):
    steps, batch = 7, 3
    params, carry, xs = random_cell_inputs(cell, rng, batch=batch, steps=steps, features=2)
    weights = jnp.asarray(rng.normal(size=(steps, batch, cell.output_size)), jnp.float32)
    lengths = jnp.array([7, 4, 0], jnp.int32) if with_lengths else None
    results = {}
    for engine, unroll in [("scan", 1), ("static", 1), ("scan", 3)]:
        loss = functools.partial(_sequence_loss, cell, engine, unroll, lengths, reverse)
        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
        results[engine, unroll] = grad(params, carry, xs, weights)
    for other in [("static", 1), ("scan", 3)]:
        assert_trees_close(results[other], results["scan", 1], rtol=1e-5, atol=1e-6,
                           err_msg=f"{other} vs scan")
    if with_lengths:  # past the end: zero outputs; a length-0 sequence keeps its initial carry
        (_, (final, ys)), _ = results["scan", 1]
        np.testing.assert_array_equal(ys[4:, 1], 0.0)
        np.testing.assert_array_equal(ys[:, 2], 0.0)
        assert_trees_close(jax.tree.map(lambda a: a[2], final), jax.tree.map(lambda a: a[2], carry))


@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_match_running_each_sequence_alone(reverse, rng):
    cell = LSTM(3)
    params, carry, xs = random_cell_inputs(cell, rng, batch=3, steps=6, features=2)
    lengths = np.array([6, 2, 4])
    final, ys = lstmjax.run(cell.step, params, carry, xs, lengths=jnp.asarray(lengths), reverse=reverse)
    for b, length in enumerate(lengths):
        alone = jax.tree.map(lambda a, b=b: a[b:b + 1], carry)
        alone_final, alone_ys = lstmjax.run(
            cell.step, params, alone, xs[:length, b:b + 1], reverse=reverse
        )
        np.testing.assert_allclose(ys[:length, b], alone_ys[:, 0], rtol=1e-6, atol=1e-7)
        assert_trees_close(jax.tree.map(lambda a, b=b: a[b], final),
                           jax.tree.map(lambda a: a[0], alone_final), rtol=1e-6, atol=1e-7)


def test_reverse_equals_forward_on_flipped_inputs(rng):
    cell = GRU(3)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=5, features=2)
    final_rev, ys_rev = lstmjax.run(cell.step, params, carry, xs, reverse=True)
    final_fwd, ys_fwd = lstmjax.run(cell.step, params, carry, xs[::-1])
    np.testing.assert_allclose(ys_rev, ys_fwd[::-1], rtol=1e-6)
    np.testing.assert_allclose(final_rev, final_fwd, rtol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_major_equals_time_major(engine, rng):
    cell = LayerNormLSTM(3)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=4, features=3)
    lengths = jnp.array([4, 2], jnp.int32)
    final_t, ys_t = lstmjax.run(cell.step, params, carry, xs, engine=engine, lengths=lengths)
    final_b, ys_b = lstmjax.run(cell.step, params, carry, jnp.swapaxes(xs, 0, 1), engine=engine,
                                lengths=lengths, time_major=False)
    np.testing.assert_array_equal(ys_b, jnp.swapaxes(ys_t, 0, 1))
    assert_trees_close(final_b, final_t, rtol=0, atol=0)


def test_static_program_grows_with_steps_and_scan_does_not():
    cell = SimpleRNN(2)
    params = cell.init(jax.random.key(0), 2)

    def equations(engine, steps):
        xs = jnp.zeros((steps, 1, 2))
        jaxpr = jax.make_jaxpr(lambda p, c, x: lstmjax.run(cell.step, p, c, x, engine=engine))(
            params, cell.zero_carry(1), xs)
        return len(jaxpr.eqns)

    assert equations("static", 20) > 5 * equations("static", 2)
    assert equations("scan", 20) == equations("scan", 2)


def test_run_under_jit_with_traced_lengths(rng):
    cell = LSTM(2)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=3, features=1)
    run = jax.jit(lambda p, c, x, n: lstmjax.run(cell.step, p, c, x, lengths=n, engine="static"))
    _, ys = run(params, carry, xs, jnp.array([1, 3], jnp.int32))
    np.testing.assert_array_equal(ys[1:, 0], 0.0)
    assert np.all(ys[:, 1] != 0)


def _lstm_args(batch=2, steps=3, features=2):
    cell = LSTM(4)
    return cell, cell.init(jax.random.key(0), features), cell.zero_carry(batch), jnp.ones((steps, batch, features))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"engine": "dynamic"}, r"engine must be one of \('scan', 'static'\), got 'dynamic'"),
        ({"unroll": 0}, "unroll must be a positive int"),
        ({"unroll": 2.0}, "unroll must be a positive int"),
        ({"lengths": jnp.array([1, 4], jnp.int32)}, r"lengths must lie in \[0, T=3\], got values in \[1, 4\]"),
        ({"lengths": jnp.array([-1, 2], jnp.int32)}, r"lengths must lie in \[0, T=3\]"),
        ({"lengths": jnp.array([1, 2, 3], jnp.int32)}, r"lengths must be int\[2\]"),
        ({"lengths": jnp.array([1.0, 2.0])}, r"lengths must be int\[2\]"),
    ],
)
def test_bad_run_arguments_raise(kwargs, message):
    cell, params, carry, xs = _lstm_args()
    with pytest.raises(ValueError, match=message):
        lstmjax.run(cell.step, params, carry, xs, **kwargs)


def test_bad_input_rank_and_carry_raise():
    cell, params, carry, xs = _lstm_args()
    with pytest.raises(ValueError, match=r"xs must have leaves of rank >= 2 shaped \[T, B, ...\]"):
        lstmjax.run(cell.step, params, carry, jnp.ones(3))
    with pytest.raises(ValueError, match="x for LSTM.* must have rank 2"):
        lstmjax.run(cell.step, params, carry, jnp.ones((3, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"carry for LSTM.*must be shaped like cell.zero_carry\(2\)"):
        lstmjax.run(cell.step, params, LSTM(5).zero_carry(2), xs)
    with pytest.raises(ValueError, match="step returns a carry .* unlike the carry it was given"):
        lstmjax.run(cell.step, params, jax.tree.map(lambda a: a.astype(jnp.bfloat16), carry), xs)
