"""Each cell against an independent float64 NumPy implementation of its textbook equations.

The references take per-gate matrices (W_x*, W_h*, b_*) cut out of lstmjax's fused layout as the
cell docstrings document it, so a swapped gate or a transposed kernel fails. Carries and all
parameters (biases, peepholes, layer-norm scales) are random, never zero or default.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs, to_numpy

import lstmjax
from lstmjax import GRU, LSTM, LayerNormLSTM, LSTMState, SimpleRNN


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def split_gates(kernel, bias, input_size, names):
    """{gate: (W_x [I, H], W_h [H_in, H], b [H])} from a fused ``[I + H_in, G*H]`` kernel."""
    width = kernel.shape[1] // len(names)
    gates = {}
    for k, name in enumerate(names):
        columns = slice(k * width, (k + 1) * width)
        b = bias[columns] if bias is not None else np.zeros(width)
        gates[name] = (kernel[:input_size, columns], kernel[input_size:, columns], b)
    return gates


def reference_lstm(p, carry, xs, *, forget_bias, cell_clip=None, proj_clip=None):
    """LSTM (Gers et al. 2000 forget gate; peepholes; Sak et al. 2014 projection), step by step."""
    g = split_gates(p["kernel"], p["bias"], xs.shape[-1], ["i", "j", "f", "o"])
    peep = {k: p.get(f"peephole_{k}", 0.0) for k in "ifo"}
    c, h = carry
    ys = []
    for x in xs:
        pre = {k: x @ wx + h @ wh + b for k, (wx, wh, b) in g.items()}
        input_gate = sigmoid(pre["i"] + peep["i"] * c)
        forget_gate = sigmoid(pre["f"] + forget_bias + peep["f"] * c)
        candidate = np.tanh(pre["j"])
        c = forget_gate * c + input_gate * candidate
        if cell_clip is not None:
            c = np.clip(c, -cell_clip, cell_clip)
        output_gate = sigmoid(pre["o"] + peep["o"] * c)
        h = output_gate * np.tanh(c)
        if "proj_kernel" in p:
            h = h @ p["proj_kernel"]
            if proj_clip is not None:
                h = np.clip(h, -proj_clip, proj_clip)
        ys.append(h)
    return (c, h), np.stack(ys)


def reference_gru(p, h, xs, *, reset_after):
    g = split_gates(p["gate_kernel"], p["gate_bias"], xs.shape[-1], ["r", "u"])
    (wx_n, wh_n, b_n), = split_gates(
        p["candidate_kernel"], p["candidate_bias"], xs.shape[-1], ["n"]
    ).values()
    ys = []
    for x in xs:
        r = sigmoid(x @ g["r"][0] + h @ g["r"][1] + g["r"][2])
        u = sigmoid(x @ g["u"][0] + h @ g["u"][1] + g["u"][2])
        if reset_after:
            n = np.tanh(x @ wx_n + b_n + r * (h @ wh_n + p["candidate_recurrent_bias"]))
        else:
            n = np.tanh(x @ wx_n + (r * h) @ wh_n + b_n)
        h = u * h + (1.0 - u) * n
        ys.append(h)
    return h, np.stack(ys)


def reference_simple_rnn(p, h, xs):
    (wx, wh, b), = split_gates(p["kernel"], p["bias"], xs.shape[-1], ["h"]).values()
    ys = []
    for x in xs:
        h = np.tanh(x @ wx + h @ wh + b)
        ys.append(h)
    return h, np.stack(ys)


def reference_layer_norm_lstm(p, carry, xs, *, forget_bias, epsilon):
    hidden = carry[0].shape[-1]
    g = split_gates(p["kernel"], None, xs.shape[-1], ["i", "j", "f", "o"])
    scale = {k: p["gate_scale"][n * hidden:(n + 1) * hidden] for n, k in enumerate("ijfo")}
    shift = {k: p["gate_shift"][n * hidden:(n + 1) * hidden] for n, k in enumerate("ijfo")}

    def norm(v, gain, bias):
        return (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + epsilon) * gain + bias

    c, h = carry
    ys = []
    for x in xs:
        pre = {k: norm(x @ wx + h @ wh, scale[k], shift[k]) for k, (wx, wh, _) in g.items()}
        c = c * sigmoid(pre["f"] + forget_bias) + sigmoid(pre["i"]) * np.tanh(pre["j"])
        memory = norm(c, p["cell_scale"], p["cell_shift"]) if "cell_scale" in p else c
        h = np.tanh(memory) * sigmoid(pre["o"])
        ys.append(h)
    return (c, h), np.stack(ys)


CELLS = {
    "lstm-fb0": (LSTM(5, forget_bias=0.0), lambda p, c, x: reference_lstm(p, c, x, forget_bias=0.0)),
    "lstm-fb1": (LSTM(5), lambda p, c, x: reference_lstm(p, c, x, forget_bias=1.0)),
    "lstm-peephole-proj-clip": (
        LSTM(5, use_peepholes=True, proj_size=3, cell_clip=0.8, proj_clip=0.5),
        lambda p, c, x: reference_lstm(p, c, x, forget_bias=1.0, cell_clip=0.8, proj_clip=0.5),
    ),
    "gru-tf": (GRU(5), lambda p, c, x: reference_gru(p, c, x, reset_after=False)),
    "gru-reset-after": (GRU(5, reset_after=True), lambda p, c, x: reference_gru(p, c, x, reset_after=True)),
    "rnn": (SimpleRNN(5), reference_simple_rnn),
    "ln-lstm": (LayerNormLSTM(5), lambda p, c, x: reference_layer_norm_lstm(p, c, x, forget_bias=1.0, epsilon=1e-5)),
    "ln-lstm-no-cell-norm": (
        LayerNormLSTM(5, forget_bias=0.5, layer_norm_cell=False, epsilon=1e-3),
        lambda p, c, x: reference_layer_norm_lstm(p, c, x, forget_bias=0.5, epsilon=1e-3),
    ),
}


def test_every_registered_cell_has_a_numpy_reference():
    """A cell added to the registry (lstmjax.CELLS) needs its textbook reference in CELLS here."""
    assert {type(cell) for cell, _ in CELLS.values()} >= set(lstmjax.CELLS.values())


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("batch,features", [(3, 4), (1, 1)])
def test_cell_matches_numpy_reference(name, batch, features, rng):
    cell, reference = CELLS[name]
    params, carry, xs = random_cell_inputs(cell, rng, batch=batch, steps=6, features=features)
    final, ys = lstmjax.run(cell.step, params, carry, xs, engine="static")  # op by op: no compile
    expected_final, expected_ys = reference(to_numpy(params), to_numpy(carry), to_numpy(xs))
    assert_trees_close(ys, expected_ys, rtol=2e-5, atol=2e-6, err_msg=name)
    assert_trees_close(tuple(final) if isinstance(final, tuple) else final, expected_final,
                       rtol=2e-5, atol=2e-6, err_msg=name)


def test_hidden_size_one_lstm_matches_reference(rng):
    cell = LSTM(1, forget_bias=0.0)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=3, features=2)
    _, ys = lstmjax.run(cell.step, params, carry, xs)
    _, expected = reference_lstm(to_numpy(params), to_numpy(carry), to_numpy(xs), forget_bias=0.0)
    np.testing.assert_allclose(ys, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("cell", [*(cls(4) for cls in lstmjax.CELLS.values()),
                                  LSTM(4, use_peepholes=True, proj_size=2),
                                  GRU(4, reset_after=True)], ids=repr)
def test_init_layout_and_dtypes(cell):
    params = cell.init(jax.random.key(0), 3)
    assert {k: v.shape for k, v in params.items()} == cell.param_shapes(3)
    assert all(v.dtype == jnp.float32 for v in params.values())
    carry = cell.zero_carry(2)
    assert jax.tree.map(lambda a: a.shape[0], carry) == jax.tree.map(lambda a: 2, carry)
    # the train step donates params and carry: one buffer in two leaves fails at its first call
    leaves = jax.tree.leaves((params, carry))
    assert len({leaf.unsafe_buffer_pointer() for leaf in leaves}) == len(leaves)


def test_init_defaults_follow_tensorflow():
    gru = GRU(3).init(jax.random.key(0), 2)
    np.testing.assert_array_equal(gru["gate_bias"], np.ones(6))  # TF1 GRUCell gate bias 1.0
    np.testing.assert_array_equal(gru["candidate_bias"], np.zeros(3))
    lstm = LSTM(3).init(jax.random.key(0), 2)
    np.testing.assert_array_equal(lstm["bias"], np.zeros(12))
    limit = np.sqrt(6.0 / (5 + 12))  # Glorot uniform over [I + H, 4H]
    assert 0 < np.abs(lstm["kernel"]).max() <= limit
    ln = LayerNormLSTM(3).init(jax.random.key(0), 2)
    np.testing.assert_array_equal(ln["gate_scale"], np.ones(12))
    np.testing.assert_array_equal(ln["cell_shift"], np.zeros(3))


def test_compute_dtype_and_param_dtype():
    cell = LSTM(4, param_dtype=jnp.float32, dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), 3)
    carry, y = cell.step(params, cell.zero_carry(2), jnp.ones((2, 3), jnp.bfloat16))
    assert params["kernel"].dtype == jnp.float32
    # bfloat16 matmuls, float32 state (c and h) and gate math, bfloat16 output.
    assert y.dtype == jnp.bfloat16 and carry.c.dtype == carry.h.dtype == jnp.float32


def test_lstm_state_fields_are_named():
    cell = LSTM(4, proj_size=2)
    carry = cell.zero_carry(3)
    assert isinstance(carry, LSTMState)
    assert carry.c.shape == (3, 4) and carry.h.shape == (3, 2)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LSTM(0), "hidden_size must be a positive int"),
        (lambda: GRU(-2), "hidden_size must be a positive int"),
        (lambda: LSTM(4, proj_size=0), "proj_size must be a positive int"),
        (lambda: LSTM(4).init(jax.random.key(0), 0), "input_size must be a positive int"),
    ],
)
def test_bad_sizes_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_step_rejects_wrong_rank_carry_and_params():
    cell = LSTM(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="x for LSTM.* must have rank 2"):
        cell.step(params, cell.zero_carry(2), jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match=r"carry for LSTM.*zero_carry\(2\)"):
        cell.step(params, LSTMState(jnp.ones((2, 5)), jnp.ones((2, 4))), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"params\['kernel'\].*shape \(7, 16\)"):
        cell.step(cell.init(jax.random.key(0), 4), cell.zero_carry(2), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="use_peepholes, proj_size, reset_after"):
        LSTM(4, use_peepholes=True).step(params, cell.zero_carry(2), jnp.ones((2, 3)))
