"""lstmjax.regularizers: each wrapper at rate 0 is its cell exactly; zoneout at rate 1 keeps the
carry, and in evaluation is the expectation computed by hand from the inner cell's step; weight
drop's mask is one mask for the whole window; recurrent dropout is one mask per sequence on h;
without a key every wrapper is its evaluation form; native hands zoneout to fused and says why.
(Every engine against scan with all wrappers on, and the float64 finite-difference checks:
tests/test_layer_engines.py and tests/test_native.py.)"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs

import lstmjax
from lstmjax import GRU, LSTM, LSTMState
from lstmjax.cells import mask_state
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout

KEY = jax.random.key(3)


@pytest.mark.parametrize(("wrapper", "engine"), [
    (lambda cell: RecurrentDropout(cell, 0.0), "native"),
    (lambda cell: Zoneout(cell, 0.0, 0.0), "fused"),
    (lambda cell: WeightDrop(cell, 0.0), "scan"),
])
def test_rate_zero_is_the_cell_exactly(wrapper, engine, rng):
    cell = LSTM(4, forget_bias=0.0)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=5, features=3)
    expected = lstmjax.run_layer(cell, params, carry, xs, engine=engine)
    actual = lstmjax.run_layer(wrapper(cell), params, carry, xs, engine=engine, key=KEY)
    assert_trees_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("engine", ["scan", "fused"])
def test_zoneout_at_rate_one_never_changes_the_carry(engine, rng):
    cell = Zoneout(LSTM(4), cell_rate=1.0, hidden_rate=1.0)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=5, features=3)
    for key in (KEY, None):
        final, ys = lstmjax.run_layer(cell, params, carry, xs, engine=engine, key=key)
        assert_trees_close(final, carry, rtol=0, atol=0)
        np.testing.assert_array_equal(ys, jnp.broadcast_to(carry.h, ys.shape))


@pytest.mark.parametrize("inner", [LSTM(4), GRU(3)])
def test_zoneout_in_evaluation_is_the_expectation(inner, rng):
    has_c = isinstance(inner.zero_carry(1), LSTMState)
    cell = Zoneout(inner, cell_rate=0.3 if has_c else 0.0, hidden_rate=0.6)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=4, features=3)
    _, ys = lstmjax.run_layer(cell, params, carry, xs, engine="fused")
    state = carry
    for t in range(4):
        new, _ = inner.step(params, state, xs[t])
        if has_c:
            state = LSTMState(0.3 * state.c + 0.7 * new.c, 0.6 * state.h + 0.4 * new.h)
            y = state.h
        else:
            state = y = 0.6 * state + 0.4 * new
        np.testing.assert_allclose(ys[t], y, rtol=1e-6, atol=1e-6)


def test_zoneout_in_training_keeps_or_updates_each_unit(rng):
    cell = Zoneout(GRU(6), hidden_rate=0.5)
    params, carry, xs = random_cell_inputs(cell, rng, batch=3, steps=4, features=2)
    _, ys = lstmjax.run_layer(cell, params, carry, xs, engine="scan", key=KEY)
    keep = cell.noise(KEY, 4, 3).steps[0]  # [T, B, H]: 1 where a unit keeps its value
    previous = carry
    for t in range(4):
        new, _ = cell.cell.step(params, previous, xs[t])
        np.testing.assert_allclose(ys[t], jnp.where(keep[t] == 1, previous, new), rtol=1e-6)
        previous = ys[t]
    assert 0 < float(jnp.mean(keep)) < 1


def test_weight_drop_is_one_mask_for_the_window(rng):
    """Weight drop == the inner cell run with its recurrent kernel rows masked once: the same
    mask at every step (and for every sequence of the batch)."""
    inner = LSTM(4)
    cell = WeightDrop(inner, 0.5)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=6, features=3)
    _, ys = lstmjax.run_layer(cell, params, carry, xs, engine="native", key=KEY)
    mask = cell.noise(KEY, 6, 2).window[0]["kernel"]  # [H, 4H], scaled by 1 / (1 - 0.5)
    assert set(np.unique(np.asarray(mask))) == {0.0, 2.0}
    masked = {**params, "kernel": params["kernel"].at[3:].multiply(mask)}  # rows I: are W_h
    _, expected = lstmjax.run_layer(inner, masked, carry, xs, engine="scan")
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6)


def test_recurrent_dropout_is_one_mask_per_sequence_on_h(rng):
    inner = LSTM(4)
    cell = RecurrentDropout(inner, 0.4)
    params, carry, xs = random_cell_inputs(cell, rng, batch=3, steps=5, features=2)
    _, ys = lstmjax.run_layer(cell, params, carry, xs, engine="fused", key=KEY)
    mask = cell.noise(KEY, 5, 3).window[0]  # [B, P]
    state, expected = carry, []
    for t in range(5):
        state, y = inner.step(params, mask_state(state, mask), xs[t])
        expected.append(y)
    np.testing.assert_allclose(ys, jnp.stack(expected), rtol=1e-5, atol=1e-6)


def test_without_a_key_dropouts_are_the_identity(rng):
    inner = GRU(4)
    cell = RecurrentDropout(WeightDrop(inner, 0.5), 0.5)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=4, features=3)
    assert_trees_close(lstmjax.run_layer(cell, params, carry, xs, engine="fused"),
                       lstmjax.run_layer(inner, params, carry, xs, engine="fused"), rtol=0, atol=0)


def test_native_hands_zoneout_to_fused_and_runs_the_dropouts():
    choice = lstmjax.resolve(Zoneout(LSTM(4), 0.1, 0.1), "native", num_steps=5, batch_size=2)
    assert choice.engine == "fused" and "no zoneout" in choice.reason
    dropouts = RecurrentDropout(WeightDrop(LSTM(4), 0.1), 0.1)
    expected = "fused" if lstmjax.engines.native.available() else "native"
    assert lstmjax.resolve(dropouts, "native", num_steps=5, batch_size=2).engine == expected


def test_bad_rates_and_cells_are_clear_errors():
    with pytest.raises(ValueError, match="rate is a drop probability"):
        RecurrentDropout(LSTM(2), 1.0)
    with pytest.raises(ValueError, match="rate is a drop probability in \\[0, 1\\), got -0.1"):
        WeightDrop(LSTM(2), -0.1)
    with pytest.raises(ValueError, match="cell_rate zones out an LSTM's c"):
        Zoneout(GRU(2), cell_rate=0.1)
    with pytest.raises(ValueError, match="wraps a lstmjax.cells.LayerCell"):
        WeightDrop("lstm", 0.1)


def test_config_wraps_each_layer_and_sizes_it():
    config = lstmjax.ModelConfig(vocab_size=5, num_layers=2, layer_sizes=(6, 3), weight_drop=0.2,
                                 recurrent_dropout=0.3, zoneout_cell=0.1, zoneout_hidden=0.05)
    cells = lstmjax.make_cells(config)
    assert [type(c).__name__ for c in (cells[0], cells[0].cell, cells[0].cell.cell)] == [
        "Zoneout", "RecurrentDropout", "WeightDrop"]
    assert [cell.hidden_size for cell in cells] == [6, 3]
    with pytest.raises(ValueError, match="layer_sizes has 1 sizes for num_layers=2"):
        lstmjax.ModelConfig(num_layers=2, layer_sizes=(4,))
    with pytest.raises(ValueError, match="zoneout_cell zones out an LSTM's c"):
        lstmjax.ModelConfig(cell="gru", zoneout_cell=0.1)


@pytest.mark.parametrize("name", ["ptb-medium-awd", "ptb-awd-lstm"])
def test_regularized_presets_build_their_model(name):
    """The presets' models initialize (shapes only: no compile); AWD-LSTM's is tied and sized
    1150, 1150, 400 with a 400-wide embedding."""
    from lstmjax.presets import PRESETS

    config = dataclasses.replace(PRESETS[name].model, vocab_size=10_000)
    model = lstmjax.RNNLanguageModel(config)
    tokens = jnp.zeros((2, 3), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), tokens, lstmjax.zero_carry(config, 2))
    params = shapes["params"]
    assert [cell.hidden_size for cell in lstmjax.make_cells(config)] == (
        [1150, 1150, 400] if name == "ptb-awd-lstm" else [650, 650])
    assert ("kernel" in params["head"]) == (name == "ptb-medium-awd")


def test_wrapped_layers_are_equal_cells_with_a_stable_description():
    """Layers of one size are one cell (one compiled engine), and auto's cache key describes a
    wrapped cell without its initializer's address, so it is the same in every process."""
    from lstmjax.engines.auto import describe_cell

    config = lstmjax.ModelConfig(num_layers=2, weight_drop=0.2, init_scale=0.1)
    first, second = lstmjax.make_cells(config)
    assert first == second
    assert describe_cell(first) == describe_cell(lstmjax.make_cells(config)[0])
    assert " at 0x" not in describe_cell(first)
