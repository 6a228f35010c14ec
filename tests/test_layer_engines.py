"""engines.run_layer: every engine of the registry equals "scan" on outputs, final carries and the
gradients with respect to parameters, inputs and initial carry, for every cell, with lengths,
reversed, with resets and with a recurrent-dropout mask; resets have exact semantics; the fused
engine's hand-written backward pass passes a float64 finite-difference check; remat chunks change
nothing but memory; "auto" and fallbacks say what they chose. (1 and 3 layers, T = 1, 7, 35 on the
whole model: tests/test_model.py.)"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs
from jax.test_util import check_grads

import lstmjax
from lstmjax import GRU, LSTM, LayerNormLSTM, LSTMState, SimpleRNN
from lstmjax.engines import ENGINES
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout

CELLS = {
    "lstm-peephole-proj-clip": LSTM(4, use_peepholes=True, proj_size=3, cell_clip=0.8,
                                    proj_clip=0.6),
    "lstm": LSTM(4, forget_bias=0.0),
    "gru": GRU(4),
    "gru-reset-after": GRU(4, reset_after=True),
    "rnn": SimpleRNN(4),
    "ln-lstm": LayerNormLSTM(4),
}
STEPS, BATCH, FEATURES = 7, 3, 2
OPTION_SETS = ["plain", "lengths-reverse", "resets-lengths", "resets-reverse-regularized"]


def regularized(cell, *, zoneout=True):
    """``cell`` with every regularizer of lstmjax.regularizers on (zoneout optional: the native
    kernel has none), at rates where each draw has some units on and some off."""
    cell = RecurrentDropout(WeightDrop(cell, 0.25), 0.3)
    if not zoneout:
        return cell
    has_c = isinstance(cell.zero_carry(1), LSTMState)
    return Zoneout(cell, cell_rate=0.2 if has_c else 0.0, hidden_rate=0.15)


def _options(name, cell, rng, steps=STEPS, *, zoneout=True):
    """``(cell, reverse, arrays)``: the cell (wrapped in regularizers for "...-regularized") and
    run_layer's options for an OPTION_SETS entry."""
    lengths = jnp.array([steps, steps // 2 + 1, 0], jnp.int32)
    resets = jnp.asarray(rng.random((steps, BATCH)) < 0.3)
    key = jax.random.key(int(rng.integers(1 << 30)))
    return {
        "plain": (cell, False, {}),
        "lengths-reverse": (cell, True, {"lengths": lengths}),
        "resets-lengths": (cell, False, {"resets": resets, "lengths": lengths}),
        "resets-reverse-regularized": (regularized(cell, zoneout=zoneout), True,
                                       {"resets": resets, "key": key}),
    }[name]


def _loss(cell, engine, reverse, unroll, remat_chunk, params, carry, xs, weights, arrays):
    """A fixed random projection of a layer's outputs and final carry."""
    final, ys = lstmjax.run_layer(cell, params, carry, xs, engine=engine, unroll=unroll,
                                  reverse=reverse, remat_chunk=remat_chunk, **arrays)
    carry_term = sum(
        jnp.sum(leaf * jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype)).reshape(leaf.shape))
        for leaf in jax.tree.leaves(final))
    return jnp.sum(ys * weights) + carry_term, (final, ys)


@functools.cache
def _value_and_grad(cell, engine, reverse, unroll=1, remat_chunk=None):
    loss = functools.partial(_loss, cell, engine, reverse, unroll, remat_chunk)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _problem(cell, rng, steps=STEPS):
    params, carry, xs = random_cell_inputs(cell, rng, batch=BATCH, steps=steps, features=FEATURES)
    weights = jnp.asarray(rng.normal(size=(steps, BATCH, cell.output_size)), jnp.float32)
    return params, carry, xs, weights


@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize("name", CELLS)
def test_fused_equals_scan(name, options, rng):
    cell, reverse, arrays = _options(options, CELLS[name], rng)
    problem = _problem(cell, rng)
    expected = _value_and_grad(cell, "scan", reverse)(*problem, arrays)
    actual = _value_and_grad(cell, "fused", reverse)(*problem, arrays)
    assert_trees_close(actual, expected, rtol=1e-5, atol=2e-6, err_msg=f"{name} {options}")


@pytest.mark.parametrize("name", ["lstm-peephole-proj-clip", "gru"])
def test_static_equals_scan_with_resets(name, rng):
    cell, reverse, arrays = _options("resets-reverse-regularized", CELLS[name], rng)
    problem = _problem(cell, rng)
    expected = _value_and_grad(cell, "scan", reverse)(*problem, arrays)
    actual = _value_and_grad(cell, "static", reverse)(*problem, arrays)
    assert_trees_close(actual, expected, rtol=1e-5, atol=2e-6, err_msg=name)


def test_every_registered_engine_is_covered():
    """The equivalence tests above name "fused" and "static", tests/test_native.py and
    tests/test_cudnn.py the others; a new engine must join them."""
    assert set(ENGINES) == {"scan", "static", "fused", "native", "cudnn"}


@pytest.mark.parametrize("engine", ["scan", "fused"])
@pytest.mark.parametrize("options", ["lengths-reverse", "resets-reverse-regularized"])
def test_remat_chunks_change_nothing(engine, options, rng):
    """Whole chunks (3: 3 + 3 steps), a shorter last chunk (4: 4 + 2) and one chunk longer than
    the window (10)."""
    cell, reverse, arrays = _options(options, CELLS["lstm-peephole-proj-clip"], rng, steps=6)
    problem = _problem(cell, rng, steps=6)
    expected = _value_and_grad(cell, engine, reverse)(*problem, arrays)
    for chunk in (3, 4, 10):
        actual = _value_and_grad(cell, engine, reverse, remat_chunk=chunk)(*problem, arrays)
        assert_trees_close(actual, expected, rtol=1e-5, atol=2e-6, err_msg=f"chunk {chunk}")


def test_remat_recomputes_chunks():
    """The gradient's jaxpr holds the checkpointed chunk (a remat primitive), also for one chunk
    as long as the window; remat_chunk must be a positive int."""
    cell = LSTM(3)
    params, carry = cell.init(jax.random.key(0), 2), cell.zero_carry(2)
    xs = jnp.ones((8, 2, 2))

    def loss(params, chunk):
        return jnp.sum(lstmjax.run_layer(cell, params, carry, xs, engine="fused",
                                         remat_chunk=chunk)[1])

    for chunk in (3, 8):
        jaxpr = str(jax.make_jaxpr(jax.grad(functools.partial(loss, chunk=chunk)))(params))
        assert "checkpoint" in jaxpr or "remat" in jaxpr
    with pytest.raises(ValueError, match="remat_chunk must be a positive int, got 0"):
        loss(params, 0)


def test_lstm_backward_stacks_one_gate_cotangent():
    """For gates = x_proj + recurrent(h), the backward loop emits that cotangent once: the LSTM's
    backward scan has one [T, B, 4H] output; the GRU's two cotangents differ, and both stay."""

    def gate_stacks(cell, width):
        params, carry = cell.init(jax.random.key(0), 3), cell.zero_carry(2)
        jaxpr = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(lstmjax.run_layer(
            cell, p, carry, jnp.ones((5, 2, 3)), engine="fused")[1])))(params)
        backward = [e for e in jaxpr.eqns if e.primitive.name == "scan"][-1]
        return sum(v.aval.shape == (5, 2, width) for v in backward.outvars)

    assert gate_stacks(LSTM(4), 16) == 1
    assert gate_stacks(GRU(4, reset_after=True), 12) == 2


@pytest.mark.parametrize("engine", ["scan", "fused"])
def test_batch_major_layer_equals_time_major(engine, rng):
    cell = CELLS["ln-lstm"]
    params, carry, xs = random_cell_inputs(cell, rng, batch=BATCH, steps=4, features=FEATURES)
    resets = jnp.asarray(rng.random((4, BATCH)) < 0.4)
    final_t, ys_t = lstmjax.run_layer(cell, params, carry, xs, engine=engine, resets=resets)
    final_b, ys_b = lstmjax.run_layer(cell, params, carry, jnp.swapaxes(xs, 0, 1), engine=engine,
                                      resets=resets.T, time_major=False)
    np.testing.assert_array_equal(ys_b, jnp.swapaxes(ys_t, 0, 1))
    assert_trees_close(final_b, final_t, rtol=0, atol=0)


def _counting_cell_step(params, carry, x):
    return carry + 1, carry * 100 + x


@pytest.mark.parametrize("engine", ["scan", "static"])
@pytest.mark.parametrize("reverse", [False, True])
def test_resets_zero_the_carry_before_their_step(engine, reverse):
    """A counting step: the output at t is (steps since the last reset, in running order) * 100 + x;
    resets past a sequence's length are ignored, as those steps are."""
    steps, batch = 6, 3
    xs = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch) % 7
    resets = np.zeros((steps, batch), bool)
    resets[2, 0] = resets[4, 0] = resets[0, 1] = resets[5, 2] = True
    lengths = jnp.array([6, 6, 4], jnp.int32)
    carry = jnp.full(batch, 50, jnp.int32)
    final, ys = lstmjax.run(_counting_cell_step, None, carry, xs, engine=engine, reverse=reverse,
                            resets=jnp.asarray(resets), lengths=lengths)
    for b in range(batch):
        count, expected = 50, np.zeros(steps, np.int64)
        order = range(int(lengths[b]))
        for t in reversed(order) if reverse else order:
            count = 0 if resets[t, b] else count
            expected[t] = count * 100 + int(xs[t, b])
            count += 1
        np.testing.assert_array_equal(ys[:, b], expected, err_msg=f"sequence {b}")
        assert final[b] == count


def test_resets_equal_separate_sequences(rng):
    """A layer over two documents packed in one row, reset at the boundary, gives what the two
    documents give alone from a zero carry (packed documents), and no gradient crosses."""
    cell = CELLS["gru-reset-after"]
    params, _, xs = random_cell_inputs(cell, rng, batch=1, steps=7, features=FEATURES)
    resets = jnp.zeros((7, 1), bool).at[3, 0].set(True)
    zero = cell.zero_carry(1)
    final, ys = lstmjax.run_layer(cell, params, zero, xs, engine="fused", resets=resets)
    _, first = lstmjax.run_layer(cell, params, zero, xs[:3], engine="fused")
    second_final, second = lstmjax.run_layer(cell, params, zero, xs[3:], engine="fused")
    np.testing.assert_allclose(ys, jnp.concatenate([first, second]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(final, second_final, rtol=1e-6, atol=1e-7)
    d_xs = jax.grad(lambda x: jnp.sum(lstmjax.run_layer(cell, params, zero, x, engine="fused",
                                                        resets=resets)[1][3:]))(xs)
    np.testing.assert_array_equal(d_xs[:3], 0.0)


def check_backward_in_float64(cell, engine, rng):
    """``engine``'s gradients of a random projection of one layer's outputs and final carry,
    with every option at once (lengths, resets, reversed, the regularizers under a fixed key;
    zoneout except on "native", which hands it to "fused"), against central differences, in
    float64."""
    with jax.enable_x64(True):
        cell = regularized(dataclasses.replace(cell, param_dtype=jnp.float64, dtype=jnp.float64),
                           zoneout=engine != "native")
        params, carry, xs = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64),
            random_cell_inputs(cell, rng, batch=BATCH, steps=5, features=FEATURES))
        weights = jnp.asarray(rng.normal(size=(5, BATCH, cell.output_size)), jnp.float64)
        resets = jnp.asarray([[False, False, True]] * 2 + [[True, False, False]] * 3)
        arrays = {"lengths": jnp.array([5, 3, 4], jnp.int32), "resets": resets,
                  "key": jax.random.key(int(rng.integers(1 << 30)))}
        assert lstmjax.resolve(cell, engine, num_steps=5, batch_size=BATCH).engine == engine

        def loss(params, carry, xs):
            return _loss(cell, engine, True, 1, None, params, carry, xs, weights, arrays)[0]

        check_grads(jax.jit(loss), (params, carry, xs), order=1, modes=["rev"],
                    atol=1e-7, rtol=1e-7, eps=1e-6)


@pytest.mark.parametrize("name", CELLS)
def test_fused_backward_matches_finite_differences_in_float64(name, rng):
    """Engine agreement cannot catch a gradient that two engines get wrong alike: check the
    hand-written VJP against central differences, in float64, with every option at once."""
    check_backward_in_float64(CELLS[name], "fused", rng)


class BareCell:
    """A cell with only the generic protocol (no layer_weights): engines must fall back to scan."""

    hidden_size = 2
    dtype = jnp.float32
    output_size = 2

    def param_shapes(self, input_size):
        return {"w": (input_size, 2)}

    def init(self, key, input_size):
        return {"w": jax.random.normal(key, (input_size, 2))}

    def zero_carry(self, batch_size):
        return jnp.zeros((batch_size, 2))

    def step(self, params, carry, x):
        new = jnp.tanh(x @ params["w"] + carry)
        return new, new

    def __repr__(self):
        return "BareCell()"


def test_layer_engine_falls_back_to_scan_and_says_why():
    cell = BareCell()
    choice = lstmjax.resolve(cell, "fused", num_steps=4, batch_size=2)
    assert choice.engine == "scan" and "fused cannot run BareCell()" in choice.reason
    assert "layer_weights" in choice.reason
    params, xs = cell.init(jax.random.key(0), 3), jnp.ones((4, 2, 3))
    fell_back = lstmjax.run_layer(cell, params, cell.zero_carry(2) + 1, xs, engine="fused")
    scanned = lstmjax.run_layer(cell, params, cell.zero_carry(2) + 1, xs, engine="scan")
    assert_trees_close(fell_back, scanned, rtol=0, atol=0)
    first = jnp.tanh(xs[0] @ params["w"] + 1)  # the carry (ones) enters step 0
    np.testing.assert_allclose(scanned[1][0], first, rtol=1e-6)


def test_auto_says_what_it_chose_and_why():
    """The test suite turns measuring off (conftest.py): "auto" takes the committed table
    (measuring, the cache and the off switch: tests/test_auto.py)."""
    cell = LSTM(8)
    cpu = lstmjax.resolve(cell, "auto", num_steps=20, batch_size=4, backend="cpu")
    assert cpu.engine in ENGINES and "LSTMJAX_AUTO=table: cpu LSTM H=8" in cpu.reason
    large = lstmjax.resolve(LSTM(1500), "auto", num_steps=35, batch_size=20, backend="cpu")
    assert large.engine == "fused"  # the CPU table's row for H > 650
    tpu = lstmjax.resolve(cell, "auto", num_steps=20, batch_size=4, backend="tpu")
    assert "no row for LSTM on tpu" in tpu.reason
    assert lstmjax.resolve(BareCell(), "auto", num_steps=20, batch_size=4).engine == "scan"
    assert lstmjax.resolve(cell, "scan", unroll=3, num_steps=20, batch_size=4) == (
        "scan", 3, "requested")


def test_run_layer_checks_arguments_once():
    cell = LSTM(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"xs must be \[T, B, I\]"):
        lstmjax.run_layer(cell, params, cell.zero_carry(2), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"params\['kernel'\].*shape \(7, 16\)"):
        lstmjax.run_layer(cell, cell.init(jax.random.key(0), 4), cell.zero_carry(2),
                          jnp.ones((5, 2, 3)))
    with pytest.raises(ValueError, match="carry for LSTM.* must be floating point"):
        lstmjax.run_layer(cell, params, jax.tree.map(lambda a: a.astype(jnp.int32),
                                                     cell.zero_carry(2)), jnp.ones((5, 2, 3)))
    with pytest.raises(ValueError, match=r"resets must be bool\[5, 2\]"):
        lstmjax.run_layer(cell, params, cell.zero_carry(2), jnp.ones((5, 2, 3)),
                          resets=jnp.zeros((5, 2), jnp.int32))


def test_static_layer_traces_the_cell_checks_once(monkeypatch):
    """Shape validation runs once per layer call, not at each of the T steps' traces."""
    calls = []
    original = lstmjax.cells.check_layer_arguments
    monkeypatch.setattr(lstmjax.cells, "check_layer_arguments",
                        lambda *args: calls.append(1) or original(*args))
    import lstmjax.engines as engines
    monkeypatch.setattr(engines, "check_layer_arguments",
                        lambda *args: calls.append(1) or original(*args))
    cell = LSTM(2)
    jax.make_jaxpr(lambda p: lstmjax.run_layer(cell, p, cell.zero_carry(1), jnp.ones((20, 1, 2)),
                                               engine="static"))(cell.init(jax.random.key(0), 2))
    assert len(calls) == 1
