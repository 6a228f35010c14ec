"""lstmjax.layers and the carry contract of run_layer: stacks and bidirectional layers on every
engine equal their run_layer composition (and torch's packed bidirectional LSTM); packed documents
read backwards per document; stepping equals the rollout, resets included; forward-mode
differentiation through "auto" and the custom-vjp engines; plain-tuple, None and bf16 carries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs, randomize

import lstmjax
from lstmjax import GRU, LSTM, LayerNormLSTM, SimpleRNN, convert
from lstmjax.engines import ENGINES, resolve

TOL = {"rtol": 2e-5, "atol": 2e-6}


def _stack(cells, rng, *, batch, steps, features):
    sizes = [features, *(cell.output_size for cell in cells[:-1])]
    params = [randomize(cell.init(jax.random.key(0), size), rng)
              for cell, size in zip(cells, sizes)]
    carries = [randomize(cell.zero_carry(batch), rng) for cell in cells]
    xs = jnp.asarray(rng.normal(size=(steps, batch, features)), jnp.float32)
    return params, carries, xs


# One engine per stack, every engine once (covering design, not a product).
@pytest.mark.parametrize("engine", [*ENGINES, "auto"])
def test_stack_equals_its_layers_outputs_and_gradients(engine, rng):
    cells = [LSTM(4, forget_bias=0.0), GRU(3, reset_after=True), SimpleRNN(2)]
    params, carries, xs = _stack(cells, rng, batch=2, steps=5, features=3)
    lengths = jnp.array([5, 3], jnp.int32)
    weights = jnp.asarray(rng.normal(size=(5, 2, 2)), jnp.float32)

    def between(layer, ys):
        return ys * (layer + 2.0)

    def stacked(params, carries, xs):
        final, ys = lstmjax.run_stack(cells, params, carries, xs, engine=engine, lengths=lengths,
                                      between=between)
        return jnp.sum(ys * weights) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    def composed(params, carries, xs):
        final = []
        for layer, (cell, p, c) in enumerate(zip(cells, params, carries)):
            xs = between(layer - 1, xs) if layer else xs
            c, xs = lstmjax.run_layer(cell, p, c, xs, engine="scan", lengths=lengths)
            final.append(c)
        return jnp.sum(xs * weights) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    args = (params, carries, xs)
    assert_trees_close(jax.value_and_grad(stacked, argnums=(0, 1, 2))(*args),
                       jax.value_and_grad(composed, argnums=(0, 1, 2))(*args), **TOL)


@pytest.mark.parametrize("engine", ["fused", "native", "static"])
def test_bidirectional_stack_with_lengths_equals_torch_packed(engine, rng):
    """Two bidirectional layers (run_stack of cell pairs, so run_bidirectional) equal torch's
    packed ``LSTM(num_layers=2, bidirectional=True)``: outputs and every final state."""
    torch = pytest.importorskip("torch")
    batch, steps, features, hidden = 3, 6, 4, 5
    torch.manual_seed(int(rng.integers(1 << 30)))
    module = torch.nn.LSTM(features, hidden, num_layers=2, bidirectional=True).double()
    xs = rng.normal(size=(steps, batch, features))
    lengths = np.array([6, 2, 4])
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(xs), torch.tensor(lengths),
                                                     enforce_sorted=False)
    out, (h_n, c_n) = module(packed)
    expect, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=steps)
    state_dict = module.state_dict()
    layers = zip(convert.lstm_from_torch(state_dict),
                 convert.lstm_from_torch(state_dict, reverse=True))
    cells, params = zip(*(((fw[0], bw[0]), (fw[1], bw[1])) for fw, bw in layers))
    finals, ys = lstmjax.run_stack(cells, params, None, jnp.asarray(xs, jnp.float32),
                                   engine=engine, lengths=jnp.asarray(lengths, jnp.int32))
    np.testing.assert_allclose(ys, expect.detach().numpy(), rtol=1e-5, atol=1e-5)
    got_h = [carry.h for pair in finals for carry in pair]  # torch's order: layer, direction
    got_c = [carry.c for pair in finals for carry in pair]
    np.testing.assert_allclose(np.stack(got_h), h_n.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack(got_c), c_n.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("engine", "time_major"), [("fused", True), ("scan", False)])
def test_bidirectional_reads_packed_documents_one_by_one(engine, time_major, rng):
    """Documents of lengths 3, 4, 2 packed in one row equal each document run alone (bug: the
    backward direction needs resets at document ends, which run_bidirectional derives)."""
    cells = (LSTM(3), GRU(3))
    params = tuple(randomize(cell.init(jax.random.key(0), 2), rng) for cell in cells)
    docs = [jnp.asarray(rng.normal(size=(n, 1, 2)), jnp.float32) for n in (3, 4, 2)]
    xs = jnp.concatenate(docs)
    resets = jnp.zeros((9, 1), bool).at[jnp.array([0, 3, 7])].set(True)
    if not time_major:
        xs, resets = jnp.swapaxes(xs, 0, 1), resets.T
    _, ys = lstmjax.run_bidirectional(cells, params, None, xs, engine=engine, resets=resets,
                                      time_major=time_major)
    alone = jnp.concatenate([lstmjax.run_bidirectional(cells, params, None, doc)[1]
                             for doc in docs])
    np.testing.assert_allclose(ys if time_major else jnp.swapaxes(ys, 0, 1), alone, **TOL)


def test_reverse_resets_marks_document_ends_within_lengths():
    starts = jnp.array([[1, 1], [0, 0], [1, 1], [0, 1]], bool)
    np.testing.assert_array_equal(lstmjax.reverse_resets(starts),
                                  [[0, 0], [1, 1], [0, 1], [0, 0]])
    np.testing.assert_array_equal(lstmjax.reverse_resets(starts, jnp.array([4, 3])),
                                  [[0, 0], [1, 1], [0, 0], [0, 0]])


@pytest.mark.parametrize(("cell", "engine"), [
    (LSTM(4, forget_bias=0.5), "native"), (GRU(4), "fused"), (SimpleRNN(4), "scan"),
    (LayerNormLSTM(4), "static"),
])
def test_stepping_with_resets_equals_the_rollout(cell, engine, rng):
    params, carry, xs = random_cell_inputs(cell, rng, batch=3, steps=6, features=2)
    resets = jnp.asarray(rng.random((6, 3)) < 0.3)
    final, ys = lstmjax.run_layer(cell, params, carry, xs, engine=engine, resets=resets)
    step = jax.jit(lambda c, x, r: lstmjax.step_layer(cell, params, c, x, reset=r))
    stepped = carry
    for t in range(6):
        stepped, y = step(stepped, xs[t], resets[t])
        np.testing.assert_allclose(y, ys[t], **TOL)
    assert_trees_close(stepped, final, **TOL)


def test_step_stack_equals_run_stack(rng):
    cells = [GRU(3), LSTM(2)]
    params, carries, xs = _stack(cells, rng, batch=2, steps=4, features=3)
    resets = jnp.asarray(rng.random((4, 2)) < 0.4)
    final, ys = lstmjax.run_stack(cells, params, carries, xs, engine="fused", resets=resets,
                                  between=lambda layer, ys: ys * 0.5)
    stepped = carries
    for t in range(4):
        stepped, y = lstmjax.step_stack(cells, params, stepped, xs[t], reset=resets[t],
                                        between=lambda layer, ys: ys * 0.5)
        np.testing.assert_allclose(y, ys[t], **TOL)
    assert_trees_close(stepped, final, **TOL)


def test_jvp_and_jacfwd_through_auto_at_h256(rng):
    """Forward mode through "auto" where the table picks a custom-vjp engine (bug: it raised)."""
    cell = LSTM(256)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=3, features=2)
    assert resolve(cell, num_steps=3, batch_size=2, input_size=2).engine in ("fused", "native")
    assert resolve(cell, num_steps=3, batch_size=2, input_size=2,
                   forward_mode=True).engine not in ("fused", "native", "cudnn")

    def layer(engine):
        return lambda xs: lstmjax.run_layer(cell, params, carry, xs, engine=engine)[1]

    tangent = jnp.asarray(rng.normal(size=xs.shape), jnp.float32)
    got = jax.jvp(layer("auto"), (xs,), (tangent,))
    assert_trees_close(got, jax.jvp(layer("scan"), (xs,), (tangent,)), **TOL)
    def head(engine):
        return lambda x: lstmjax.run_layer(cell, params, None, x, engine=engine)[1][-1, 0, :4]

    small = xs[:, :1]
    np.testing.assert_allclose(jax.jacfwd(head("native"))(small),
                               jax.jacrev(head("scan"))(small), **TOL)


@pytest.mark.parametrize("engine", ["fused", "native"])
def test_named_custom_vjp_engine_falls_back_under_forward_mode(engine):
    choice = resolve(LSTM(3), engine, num_steps=4, batch_size=2, forward_mode=True)
    assert choice.engine == "scan"
    assert "jax.jvp cannot differentiate" in choice.reason
    assert resolve(LSTM(3), engine, num_steps=4, batch_size=2).engine == engine or (
        engine == "native" and lstmjax.engines.native.available() is not None)


def test_forward_mode_is_seen_below_vmap(rng):
    cell = GRU(3)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=3, features=2)

    def layer(engine, xs):
        return lstmjax.run_layer(cell, params, carry, xs, engine=engine)[1]

    primals, tangents = jnp.stack([xs, 2 * xs]), jnp.ones((2, *xs.shape), jnp.float32)
    got = jax.jvp(jax.vmap(lambda x: layer("fused", x)), (primals,), (tangents,))
    expect = jax.jvp(jax.vmap(lambda x: layer("scan", x)), (primals,), (tangents,))
    assert_trees_close(got, expect, **TOL)


def test_carry_may_be_none_or_a_plain_tuple(rng):
    cell = LSTM(3)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=4, features=2)
    expect = lstmjax.run_layer(cell, params, carry, xs, engine="fused")
    assert_trees_close(lstmjax.run_layer(cell, params, (carry.c, carry.h), xs, engine="fused"),
                       expect, rtol=0, atol=0)
    assert_trees_close(cell.step(params, (carry.c, carry.h), xs[0]), cell.step(params, carry, xs[0]),
                       rtol=0, atol=0)
    assert_trees_close(lstmjax.run_layer(cell, params, None, xs, engine="fused"),
                       lstmjax.run_layer(cell, params, cell.zero_carry(2), xs, engine="fused"),
                       rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"structured like .* \(or a plain tuple"):
        lstmjax.run_layer(cell, params, (carry.c, carry.h, carry.h), xs)
    with pytest.raises(ValueError, match="must be floating point"):
        lstmjax.run_layer(cell, params, (carry.c.astype(jnp.int32), carry.h), xs)


@pytest.mark.parametrize("engine", ["scan", "fused"])
def test_bf16_carry_is_computed_in_the_state_dtype(engine, rng):
    """run_layer accepts the bf16 carry that cell.step accepts (bug: it raised), and both compute
    the state in float32 from its values; the carry's gradient comes back in bf16."""
    cell = LSTM(3, dtype=jnp.bfloat16)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=4, features=2)
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), carry)
    final, ys = lstmjax.run_layer(cell, params, half, xs, engine=engine)
    expect = lstmjax.run_layer(cell, params, jax.tree.map(lambda a: a.astype(jnp.float32), half),
                               xs, engine=engine)
    assert_trees_close((final, ys), expect, rtol=0, atol=0)
    assert final.c.dtype == jnp.float32
    assert cell.step(params, half, xs[0])[0].c.dtype == jnp.float32
    grad = jax.grad(lambda c: jnp.sum(lstmjax.run_layer(cell, params, c, xs, engine=engine)[1]
                                      .astype(jnp.float32)))(half)
    assert grad.c.dtype == jnp.bfloat16


def test_last_valid_takes_each_sequences_last_step(rng):
    ys = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)  # batch-major
    got = lstmjax.last_valid(ys, jnp.array([5, 2], jnp.int32), time_major=False)
    np.testing.assert_array_equal(got, jnp.stack([ys[0, 4], ys[1, 1]]))
    np.testing.assert_array_equal(lstmjax.last_valid(jnp.swapaxes(ys, 0, 1)), ys[:, -1])
    np.testing.assert_array_equal(
        lstmjax.last_valid(jnp.swapaxes(ys, 0, 1), jnp.array([0, 1], jnp.int32)),
        jnp.stack([jnp.zeros(3), ys[1, 0]]))
