"""engines.run_layer: every engine of the registry (lstmjax.ENGINES) equals "scan" on outputs,
final carries and the gradients with respect to parameters, inputs and initial carry, on every cell
of the registry (lstmjax.CELLS) and a few configured variants that it runs, the option sets
(lengths, reversed, resets, the regularizers) taken in turn; an engine or cell added to a registry
joins these tests, and one that cannot run here is skipped with the registry's reason. Every
engine with a hand-written backward pass passes a float64 finite-difference check on every cell it
runs. Resets have exact semantics; remat chunks change nothing but memory; "auto" and fallbacks
say what they chose. (1 and 3 layers, T = 1, 7, 35 on the whole model: tests/test_model.py.)"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs
from jax.test_util import check_grads

import lstmjax
from lstmjax import GRU, LSTM, LSTMState
from lstmjax.engines import ENGINES
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout

REFERENCE = "scan"
"""The engine the others are compared with: lax.scan over the cell's step."""
HIDDEN, STEPS, BATCH, FEATURES = 4, 7, 3, 2
CELLS = {
    **{name: cls(HIDDEN) for name, cls in lstmjax.CELLS.items()},  # the registry, as configured
    # by default; then the options it does not turn on:
    "lstm-peephole-proj-clip": LSTM(HIDDEN, use_peepholes=True, proj_size=3, cell_clip=0.8,
                                    proj_clip=0.6),
    "lstm-clip": LSTM(HIDDEN, forget_bias=0.0, cell_clip=0.3),  # some cell states reach it
    "gru-reset-after": GRU(HIDDEN, reset_after=True),
}
OPTION_SETS = {  # name -> the options of run_layer it sets
    "plain": (),
    "lengths-reverse": ("lengths", "reverse"),
    "resets-lengths": ("resets", "lengths"),
    "resets-reverse-regularized": ("resets", "reverse", "regularizers"),
}


def regularized(cell, *, zoneout=True):
    """``cell`` with every regularizer of lstmjax.regularizers on (zoneout optional: the native
    kernel has none), at rates where each draw has some units on and some off."""
    cell = RecurrentDropout(WeightDrop(cell, 0.25), 0.3)
    if not zoneout:
        return cell
    has_c = isinstance(cell.zero_carry(1), LSTMState)
    return Zoneout(cell, cell_rate=0.2 if has_c else 0.0, hidden_rate=0.15)


def regularized_for(engine, cell):
    """``regularized(cell)``, without zoneout if ``engine`` would hand the zoneout to another
    engine (native has none)."""
    wrapped = regularized(cell)
    if resolve(wrapped, engine, "resets-reverse-regularized").engine == engine:
        return wrapped
    return regularized(cell, zoneout=False)


def resolve(cell, engine, options, steps=STEPS):
    """What ``lstmjax.resolve`` runs for ``cell`` with the option set ``options``."""
    flags = {flag: flag in OPTION_SETS[options] for flag in ("lengths", "reverse", "resets")}
    return lstmjax.resolve(cell, engine, num_steps=steps, batch_size=BATCH, **flags)


def _options(name, cell, rng, steps=STEPS, *, engine=REFERENCE):
    """``(cell, reverse, arrays)``: the cell (wrapped in regularizers for "...-regularized", as
    ``engine`` runs them) and run_layer's options for an OPTION_SETS entry."""
    lengths = jnp.array([steps, steps // 2 + 1, 0], jnp.int32)
    resets = jnp.asarray(rng.random((steps, BATCH)) < 0.3)
    key = jax.random.key(int(rng.integers(1 << 30)))
    return {
        "plain": (cell, False, {}),
        "lengths-reverse": (cell, True, {"lengths": lengths}),
        "resets-lengths": (cell, False, {"resets": resets, "lengths": lengths}),
        "resets-reverse-regularized": (regularized_for(engine, cell), True,
                                       {"resets": resets, "key": key}),
    }[name]


def engine_cases():
    """The equivalence tests' covering design: each engine but the reference on each cell of
    :data:`CELLS`, the option sets in turn (shifted by one per engine, so that each cell meets
    several and each engine all). A cell that an engine runs only without some options takes the
    next option set it runs; one that it cannot run at all (or that it cannot run here: no GPU,
    no built kernel) is skipped with the reason the registry gives."""
    cases = []
    for e, engine in enumerate(name for name in ENGINES if name != REFERENCE):
        for c, (name, cell) in enumerate(CELLS.items()):
            turn = (e + c) % len(OPTION_SETS)
            order = [*OPTION_SETS][turn:] + [*OPTION_SETS][:turn]
            choices = {options: resolve(regularized_for(engine, cell) if "regularizers" in
                                        OPTION_SETS[options] else cell, engine, options)
                       for options in order}
            runs = [options for options, choice in choices.items() if choice.engine == engine]
            marks = [] if runs else [pytest.mark.skip(reason=choices[order[0]].reason)]
            cases.append(pytest.param(engine, name, (runs or order)[0], marks=marks,
                                      id=f"{engine}-{name}-{(runs or order)[0]}"))
    return cases


ENGINE_CASES = engine_cases()


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


@pytest.mark.parametrize(("engine", "name", "options"), ENGINE_CASES)
def test_engine_equals_scan(engine, name, options, rng):
    """float32 matmuls without TF32 on a GPU (cuDNN's and XLA's alike), so that engines compare
    to float32 rounding there too."""
    cell, reverse, arrays = _options(options, CELLS[name], rng, engine=engine)
    assert resolve(cell, engine, options).engine == engine  # no fallback
    problem = _problem(cell, rng)
    with jax.default_matmul_precision("float32"):
        expected = _value_and_grad(cell, REFERENCE, reverse)(*problem, arrays)
        actual = _value_and_grad(cell, engine, reverse)(*problem, arrays)
    assert_trees_close(actual, expected, rtol=1e-5, atol=2e-6, err_msg=f"{engine} {name} {options}")


def test_the_covering_design_meets_every_engine_cell_and_option_set():
    """Each engine of the registry but the reference meets every cell of the registry and every
    option set (where it runs them), and each cell at least three option sets."""
    cases = [case.values for case in ENGINE_CASES]
    assert {engine for engine, _, _ in cases} == set(ENGINES) - {REFERENCE}
    for engine in set(ENGINES) - {REFERENCE}:
        assert {name for e, name, _ in cases if e == engine} == set(CELLS)
    assert set(lstmjax.CELLS) <= set(CELLS)
    assert {options for _, _, options in cases} == set(OPTION_SETS)
    for name in CELLS:
        assert len({options for _, n, options in cases if n == name}) >= 3, name


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
    cell = CELLS["ln_lstm"]
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


def in_float64(cell, engine):
    """``cell`` in float64, with every regularizer that ``engine`` runs (:func:`regularized_for`)."""
    return regularized_for(engine, dataclasses.replace(cell, param_dtype=jnp.float64,
                                                       dtype=jnp.float64))


def backward_cases():
    """Each engine with a hand-written backward pass (no forward mode: a ``jax.custom_vjp``) on
    each cell of :data:`CELLS`, in float64 with every option; skipped with the registry's reason
    where it cannot run that."""
    cases = []
    for engine in (name for name, spec in ENGINES.items() if not spec.forward_mode):
        for name, cell in CELLS.items():
            with jax.enable_x64(True):  # the regularizers read the float64 carry's structure
                choice = lstmjax.resolve(in_float64(cell, engine), engine, num_steps=5,
                                         batch_size=BATCH, lengths=True, reverse=True,
                                         resets=True)
            marks = [] if choice.engine == engine else [pytest.mark.skip(reason=choice.reason)]
            cases.append(pytest.param(engine, name, marks=marks, id=f"{engine}-{name}"))
    return cases


def check_backward_in_float64(cell, engine, rng):
    """``engine``'s gradients of a random projection of one layer's outputs and final carry,
    with every option at once (lengths, resets, reversed, the regularizers under a fixed key;
    zoneout where the engine runs it), against central differences, in float64."""
    with jax.enable_x64(True):
        cell = in_float64(cell, engine)
        params, carry, xs = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64),
            random_cell_inputs(cell, rng, batch=BATCH, steps=5, features=FEATURES))
        weights = jnp.asarray(rng.normal(size=(5, BATCH, cell.output_size)), jnp.float64)
        resets = jnp.asarray([[False, False, True]] * 2 + [[True, False, False]] * 3)
        arrays = {"lengths": jnp.array([5, 3, 4], jnp.int32), "resets": resets,
                  "key": jax.random.key(int(rng.integers(1 << 30)))}
        assert lstmjax.resolve(cell, engine, num_steps=5, batch_size=BATCH, lengths=True,
                               reverse=True, resets=True).engine == engine

        def loss(params, carry, xs):
            return _loss(cell, engine, True, 1, None, params, carry, xs, weights, arrays)[0]

        check_grads(jax.jit(loss), (params, carry, xs), order=1, modes=["rev"],
                    atol=1e-7, rtol=1e-7, eps=1e-6)


@pytest.mark.parametrize(("engine", "name"), backward_cases())
def test_hand_written_backward_matches_finite_differences_in_float64(engine, name, rng):
    """Engine agreement cannot catch a gradient that two engines get wrong alike: check each
    hand-written VJP (fused, the native kernel's float64 instantiation, ...) against central
    differences, in float64, with every option at once; the clipped LSTM with a cell clip that
    some, not all, cell states reach."""
    check_backward_in_float64(CELLS[name], engine, rng)


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
