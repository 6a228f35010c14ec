"""Weight import, proven on outputs, final states and gradients:

* against TensorFlow 1: fixtures recorded from real ``static_rnn``, ``dynamic_rnn`` and ``tf.scan``
  runs of TF1 cells (``tests/fixtures/tf1``; the script that made them is beside them);
* against PyTorch: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` run live (skipped without torch).

The converters are jnp code, so ``jax.grad`` through them gives gradients in the source layout,
compared tensor by tensor with TF's and torch's own gradients.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

import lstmjax
from lstmjax import GRU, LSTM, LayerNormLSTM, LSTMState, SimpleRNN, convert

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "tf1"


def run_stack(cells, layers, carries, xs, *, engine, lengths=None):
    """Layer-by-layer run of a stack on time-major ``xs``: the top layer's outputs and the carries."""
    finals = []
    for cell, params, carry in zip(cells, layers, carries):
        carry, xs = lstmjax.run_layer(cell, params, carry, xs, engine=engine, lengths=lengths)
        finals.append(carry)
    return xs, finals


def _tf_cells(meta):
    hidden, fb = meta["H"], meta["forget_bias"]
    cell = {
        "basic_lstm": lambda: LSTM(hidden, forget_bias=fb),
        "lstm_peephole_proj": lambda: LSTM(hidden, forget_bias=fb, use_peepholes=True, proj_size=meta["P"]),
        "gru": lambda: GRU(hidden),
        "basic_rnn": lambda: SimpleRNN(hidden),
        "ln_lstm_r2rt": lambda: LayerNormLSTM(hidden, forget_bias=fb),
        "tutorial_lstm_8mat": lambda: LSTM(hidden, forget_bias=0.0),
    }[meta["kind"]]()
    return [cell] * meta["layers"]


def _tf_state(fixture, prefix, layer, cell):
    """A TF state (``<prefix>cell_<l>/c``, ``.../h``) as the lstmjax carry of ``cell``."""
    if isinstance(cell, LSTM | LayerNormLSTM):
        return LSTMState(fixture[f"{prefix}cell_{layer}/c"], fixture[f"{prefix}cell_{layer}/h"])
    return fixture[f"{prefix}cell_{layer}/h"]


TF_CASES = sorted(path.stem for path in FIXTURES.glob("*.npz"))


@pytest.mark.parametrize("case", TF_CASES)
@pytest.mark.parametrize("engine", lstmjax.ENGINES)
def test_matches_tensorflow1(case, engine):
    fixture = dict(np.load(FIXTURES / f"{case}.npz"))
    meta = json.loads(str(fixture["meta"]))
    cells = _tf_cells(meta)
    importer = convert.lstm_from_tf_tutorial if meta["kind"] == "tutorial_lstm_8mat" else convert.layers_from_tf
    variables = {name: fixture[f"var/{name}"] for name in meta["var_names"]}
    inits = [_tf_state(fixture, "init/", k, cell) for k, cell in enumerate(cells)]
    lengths = fixture.get("lengths")

    def loss(variables, inputs, inits):
        layers = importer(variables)
        layers = [layers] if isinstance(layers, dict) else layers
        ys, finals = run_stack(cells, layers, inits, jnp.swapaxes(inputs, 0, 1), engine=engine,
                               lengths=lengths)
        out = jnp.swapaxes(ys, 0, 1)  # [B, T, out]
        weights = [_tf_state(fixture, "R/final/", k, cell) for k, cell in enumerate(cells)]
        total = jnp.sum(out * fixture["R/out"]) + sum(
            jnp.sum(final * weight)
            for final, weight in zip(jax.tree.leaves(finals), jax.tree.leaves(weights)))
        return total, (out, finals)

    (value, (out, finals)), grads = jax.jit(
        jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(variables, fixture["inputs"], inits)
    for tf_engine in meta["engines"]:
        expected_finals = [_tf_state(fixture, f"final/{tf_engine}/", k, c) for k, c in enumerate(cells)]
        expected_grads = (
            {name: fixture[f"grad/{tf_engine}/var/{name}"] for name in meta["var_names"]},
            fixture[f"grad/{tf_engine}/inputs"],
            [_tf_state(fixture, f"grad/{tf_engine}/init/", k, c) for k, c in enumerate(cells)],
        )
        where = f"{case}: lstmjax {engine} vs TF {tf_engine}"
        np.testing.assert_allclose(out, fixture[f"out/{tf_engine}"], rtol=1e-5, atol=1e-6, err_msg=where)
        assert_trees_close(finals, expected_finals, rtol=1e-5, atol=1e-6, err_msg=where)
        np.testing.assert_allclose(value, fixture[f"loss/{tf_engine}"], rtol=1e-5, err_msg=where)
        assert_trees_close(grads, expected_grads, rtol=1e-4, atol=1e-5, err_msg=where)


def test_layers_from_tf_reads_names_as_tensorflow_writes_them():
    kernel, bias = np.ones((5, 8), np.float32), np.arange(8, dtype=np.float32)
    layers = convert.layers_from_tf({
        "Model/RNN/multi_rnn_cell/cell_1/basic_lstm_cell/kernel:0": 2 * kernel,
        "Model/RNN/multi_rnn_cell/cell_0/basic_lstm_cell/kernel:0": kernel,
        "Model/RNN/multi_rnn_cell/cell_0/basic_lstm_cell/bias:0": bias,
        "Model/RNN/multi_rnn_cell/cell_1/basic_lstm_cell/bias:0": bias,
        "Model/embedding:0": np.zeros((10, 3), np.float32),
        "Model/softmax_w:0": np.zeros((2, 10), np.float32),
        "dense/kernel:0": np.zeros((2, 10), np.float32),
    })
    assert len(layers) == 2
    np.testing.assert_array_equal(layers[1]["kernel"], 2 * kernel)
    single = convert.layers_from_tf({"rnn/gru_cell/gates/weights": np.ones((4, 4)),
                                     "rnn/gru_cell/gates/biases": np.ones(4),
                                     "rnn/gru_cell/candidate/weights": np.ones((4, 2)),
                                     "rnn/gru_cell/candidate/biases": np.ones(2)})
    assert sorted(single[0]) == ["candidate_bias", "candidate_kernel", "gate_bias", "gate_kernel"]


def test_import_errors_name_the_problem():
    with pytest.raises(ValueError, match="no TF cell variables found"):
        convert.layers_from_tf({"Model/embedding": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="cannot tell the cell type of scope 'my_cell'"):
        convert.layers_from_tf({"rnn/multi_rnn_cell/cell_0/my_cell/kernel": np.zeros((3, 4)),
                                "rnn/multi_rnn_cell/cell_0/my_cell/bias": np.zeros(4)})
    with pytest.raises(ValueError, match="give all three peepholes"):
        convert.lstm_from_tf(np.zeros((3, 4)), np.zeros(4), w_i_diag=np.zeros(1))
    with pytest.raises(ValueError, match=r"bias must be shaped \[8\]"):
        convert.lstm_from_tf(np.zeros((3, 8)), np.zeros(4))
    with pytest.raises(ValueError, match=r"variables must hold \('input_gate_i'"):
        convert.lstm_from_tf_tutorial({"ix": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="no torch RNN weights found"):
        convert.lstm_from_torch({"linear.weight": np.zeros((2, 2))})


@pytest.mark.parametrize("case", [case for case in TF_CASES if case != "tutorial_lstm_8mat"])
def test_tf_cells_are_read_off_the_weights_and_export_restores_the_names(case):
    """cells_from_tf gives the cell each fixture was recorded with; layers_to_tf writes back the
    very variables TF1 wrote (names and bits)."""
    with np.load(FIXTURES / f"{case}.npz") as fixture:
        fixture = dict(fixture)
    meta = json.loads(str(fixture["meta"]))
    variables = {name: fixture[f"var/{name}"] for name in meta["var_names"]}
    cells, layers = convert.cells_from_tf(variables, forget_bias=meta["forget_bias"])
    assert cells == _tf_cells(meta)
    exported = convert.layers_to_tf(cells, layers)
    assert sorted(exported) == sorted(variables)
    for name, value in variables.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def _lstm_vars(prefix, hidden=3, inputs=2, seed=0, *, leaves=("kernel", "bias")):
    rng = np.random.default_rng(seed)
    shapes = {"kernel": (inputs + hidden, 4 * hidden), "bias": (4 * hidden,)}
    return {f"{prefix}/{leaf}": rng.normal(size=shapes[key]).astype(np.float32)
            for leaf, key in zip(leaves, ("kernel", "bias"))}


def test_single_layer_norm_lstm_without_cell_k():
    """Wall 1: the kernel of a lone LayerNormalizedLSTMCell was dropped (KeyError: 'kernel')."""
    rng = np.random.default_rng(1)
    hidden, inputs = 3, 2
    variables = {"rnn/LayerNormalizedLSTMCell/kernel:0": rng.normal(size=(inputs + hidden, 4 * hidden)).astype(np.float32)}
    for gate in ("i", "j", "f", "o"):
        for part in ("scale", "shift"):
            variables[f"rnn/LayerNormalizedLSTMCell/{gate}/layer_norm/{part}:0"] = rng.normal(size=hidden).astype(np.float32)
    (cell,), (params,) = convert.cells_from_tf(variables, forget_bias=1.0)
    assert cell == LayerNormLSTM(hidden, forget_bias=1.0, layer_norm_cell=False)
    np.testing.assert_array_equal(params["kernel"], variables["rnn/LayerNormalizedLSTMCell/kernel:0"])
    np.testing.assert_array_equal(params["gate_shift"][2 * hidden:3 * hidden],
                                  variables["rnn/LayerNormalizedLSTMCell/f/layer_norm/shift:0"])


def test_stacks_that_would_collide_need_a_scope():
    """Wall 2: fw and bw (or encoder and decoder) no longer merge into one layer 0."""
    fw = _lstm_vars("bidirectional_rnn/fw/basic_lstm_cell", seed=1)
    bw = _lstm_vars("bidirectional_rnn/bw/basic_lstm_cell", seed=2)
    with pytest.raises(ValueError, match=r"2 cell stacks: 'bidirectional_rnn/bw/basic_lstm_cell', "
                                         r"'bidirectional_rnn/fw/basic_lstm_cell'; pick one with scope="):
        convert.layers_from_tf({**fw, **bw})
    (fw_layer,) = convert.layers_from_tf({**fw, **bw}, scope="fw")
    np.testing.assert_array_equal(fw_layer["kernel"], fw["bidirectional_rnn/fw/basic_lstm_cell/kernel"])
    (fw_cells, fw_layers), (bw_cells, bw_layers) = convert.bidirectional_from_tf(
        {**fw, **bw, "softmax/W": np.zeros((6, 5))}, forget_bias=1.0)
    assert fw_cells == bw_cells == [LSTM(3, forget_bias=1.0)]
    np.testing.assert_array_equal(fw_layers[0]["bias"], fw["bidirectional_rnn/fw/basic_lstm_cell/bias"])
    np.testing.assert_array_equal(bw_layers[0]["bias"], bw["bidirectional_rnn/bw/basic_lstm_cell/bias"])

    stacks = {**_lstm_vars("encoder/multi_rnn_cell/cell_0/lstm_cell", seed=3),
              **_lstm_vars("encoder/multi_rnn_cell/cell_1/lstm_cell", seed=4),
              **_lstm_vars("decoder/multi_rnn_cell/cell_0/lstm_cell", seed=5)}
    with pytest.raises(ValueError, match=r"'decoder/multi_rnn_cell/cell_\*', 'encoder/multi_rnn_cell/cell_\*'"):
        convert.layers_from_tf(stacks)
    assert len(convert.layers_from_tf(stacks, scope="encoder")) == 2
    assert len(convert.layers_from_tf(stacks, scope="decoder/multi_rnn_cell")) == 1
    with pytest.raises(ValueError, match="no variable name contains scope 'decoder/fw'"):
        convert.layers_from_tf(stacks, scope="decoder/fw")


def test_tf0_names():
    """Wall 3: TF 0.x's MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix and friends."""
    modern = {**_lstm_vars("rnn/multi_rnn_cell/cell_0/basic_lstm_cell", seed=1),
              **_lstm_vars("rnn/multi_rnn_cell/cell_1/basic_lstm_cell", seed=2)}
    old = {name.replace("multi_rnn_cell/cell_", "MultiRNNCell/Cell").replace("basic_lstm_cell", "BasicLSTMCell")
           .replace("/kernel", "/Linear/Matrix").replace("/bias", "/Linear/Bias"): value
           for name, value in modern.items()}
    assert_trees_close(convert.layers_from_tf(old), convert.layers_from_tf(modern), rtol=0, atol=0)
    rng = np.random.default_rng(0)

    def normal(size):
        return rng.normal(size=size).astype(np.float32)

    gru = {f"RNN/GRUCell/{part}/Linear/{leaf}:0": normal(shape)
           for part, width in (("Gates", 4), ("Candidate", 2))
           for leaf, shape in (("Matrix", (3, width)), ("Bias", (width,)))}
    (params,) = convert.layers_from_tf(gru)
    np.testing.assert_array_equal(params["candidate_kernel"], gru["RNN/GRUCell/Candidate/Linear/Matrix:0"])
    lstm = {"RNN/LSTMCell/W_0": normal((4, 8)), "RNN/LSTMCell/B": normal(8),
            "RNN/LSTMCell/W_I_diag": np.ones(2), "RNN/LSTMCell/W_F_diag": np.ones(2),
            "RNN/LSTMCell/W_O_diag": np.ones(2), "RNN/LSTMCell/W_P_0": normal((2, 2))}
    (cell,), (params,) = convert.cells_from_tf(lstm, forget_bias=1.0)
    assert cell == LSTM(2, forget_bias=1.0, use_peepholes=True, proj_size=2)
    np.testing.assert_array_equal(params["proj_kernel"], lstm["RNN/LSTMCell/W_P_0"])
    with pytest.raises(ValueError, match="sharded TF 0.x variable 'W_1'"):
        convert.layers_from_tf({**lstm, "RNN/LSTMCell/W_1": np.ones((4, 8))})


def test_tutorial_unnamed_variables_in_creation_order():
    """Wall 4: the notebook's checkpoint holds Variable, Variable_1, ... (ix, im, ib, fx, ...)."""
    rng = np.random.default_rng(0)
    inputs, hidden = 3, 2
    shapes = {"x": (inputs, hidden), "m": (hidden, hidden), "b": (1, hidden)}
    named = {f"{g}{k}": rng.normal(size=shapes[k]).astype(np.float32) for g in "ifco" for k in "xmb"}
    unnamed = {("Variable" if k == 0 else f"Variable_{k}") + ":0": named[name]
               for k, name in enumerate(convert.TUTORIAL_CREATION_ORDER[:12])}
    unnamed["Variable_14:0"] = np.zeros((hidden, 27), np.float32)  # the classifier: ignored here
    assert_trees_close(convert.lstm_from_tf_tutorial(unnamed), convert.lstm_from_tf_tutorial(named),
                       rtol=0, atol=0)
    with pytest.raises(ValueError, match="lstm_from_tf_tutorial"):
        convert.layers_from_tf(unnamed)
    swapped = {**unnamed, "Variable:0": named["im"], "Variable_1:0": named["ix"]}
    with pytest.raises(ValueError, match="do not have the text8 notebook's shapes in its creation order"):
        convert.lstm_from_tf_tutorial(swapped)


def test_forget_bias_is_never_guessed():
    """Wall 5: options in the weights are read; forget_bias, which is not, must be given."""
    variables = _lstm_vars("rnn/basic_lstm_cell")
    with pytest.raises(ValueError, match="forget_bias is not stored in TF weights"):
        convert.cells_from_tf(variables)
    cells, _ = convert.cells_from_tf(variables, forget_bias=0.0)
    assert cells == [LSTM(3, forget_bias=0.0)]


@pytest.mark.parametrize("kind, options", [("LSTM", dict(num_layers=2, proj_size=2)),
                                           ("GRU", dict(num_layers=1)), ("RNN", dict(num_layers=2))])
def test_torch_export_reads_back_exactly(kind, options):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(4, 3, **options)
    state_dict = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    cells, layers = convert.cells_from_torch(state_dict)
    assert cells[0] == _lstmjax_cells(kind, 3, options)
    exported = convert.layers_to_torch(cells, layers)
    assert sorted(exported) == sorted(state_dict)
    assert_trees_close(convert.cells_from_torch(exported)[1], layers, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no layer norm"):
        convert.layers_to_torch([LayerNormLSTM(3)], [LayerNormLSTM(3).init(jax.random.key(0), 2)])


def test_tutorial_short_names_are_accepted():
    rng = np.random.default_rng(0)
    long_names = {f"{g}_{k}": rng.normal(size=(2, 2) if k != "b" else (1, 2))
                  for g in ("input_gate", "forget_gate", "output_gate", "memory") for k in "iob"}
    short = {"input_gate": "i", "forget_gate": "f", "output_gate": "o", "memory": "c"}
    short_names = {f"lstm/{short[name.rsplit('_', 1)[0]]}{dict(i='x', o='m', b='b')[name[-1]]}:0": v
                   for name, v in long_names.items()}
    assert_trees_close(convert.lstm_from_tf_tutorial(short_names), convert.lstm_from_tf_tutorial(long_names))


# ---------------------------------------------------------------------------------------------
# PyTorch, live.
# ---------------------------------------------------------------------------------------------

TORCH_CASES = {
    "lstm-2-layers-proj": ("LSTM", dict(num_layers=2, proj_size=3), convert.lstm_from_torch),
    "lstm-bidirectional-no-bias": ("LSTM", dict(bidirectional=True, bias=False), convert.lstm_from_torch),
    "gru-2-layers": ("GRU", dict(num_layers=2), convert.gru_from_torch),
    "rnn-2-layers": ("RNN", dict(num_layers=2), convert.simple_rnn_from_torch),
}


def _lstmjax_cells(kind, hidden, options):
    if kind == "LSTM":
        return LSTM(hidden, forget_bias=0.0, proj_size=options.get("proj_size") or None)
    if kind == "GRU":
        return GRU(hidden, reset_after=True)
    return SimpleRNN(hidden)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("case", TORCH_CASES)
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    kind, options, importer = TORCH_CASES[case]
    batch, steps, features, hidden = 3, 6, 4, 5
    torch.manual_seed(sum(map(ord, case)))
    module = getattr(torch.nn, kind)(features, hidden, batch_first=True, **options)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.normal_(0.0, 0.5)  # biases too: nothing at its default
    layers = options.get("num_layers", 1)
    directions = 2 if options.get("bidirectional") else 1
    out_size = options.get("proj_size") or hidden
    x = torch.randn(batch, steps, features, requires_grad=True)
    h0 = torch.randn(layers * directions, batch, out_size, requires_grad=True)
    c0 = torch.randn(layers * directions, batch, hidden, requires_grad=True)
    state0 = (h0, c0) if kind == "LSTM" else h0
    out, state = module(x, state0)
    finals = state if kind == "LSTM" else (state,)
    weights_out = torch.randn(out.shape)
    weights_state = [torch.randn(s.shape) for s in finals]
    loss = (out * weights_out).sum() + sum((s * w).sum() for s, w in zip(finals, weights_state))
    loss.backward()

    def to_np(t):
        return t.detach().numpy()

    state_dict = {name: to_np(p) for name, p in module.named_parameters()}
    cell = _lstmjax_cells(kind, hidden, options)

    def carry(layer, h, c):
        return LSTMState(c[layer], h[layer]) if kind == "LSTM" else h[layer]

    def jax_loss(state_dict, xs, h0, c0):
        ys_per_direction, finals_h, finals_c = [], [], []
        for direction in range(directions):
            params = importer(state_dict, reverse=direction == 1)
            inputs = jnp.swapaxes(xs, 0, 1)
            for layer in range(layers):
                index = layer * directions + direction
                final, inputs = lstmjax.run(cell.step, params[layer], carry(index, h0, c0), inputs,
                                            reverse=direction == 1)
                finals_h.append(final.h if kind == "LSTM" else final)
                finals_c.append(final.c if kind == "LSTM" else None)
            ys_per_direction.append(jnp.swapaxes(inputs, 0, 1))
        ys = jnp.concatenate(ys_per_direction, axis=-1)
        h_n = jnp.stack(finals_h)  # [L * directions, B, P]: torch's order when L or directions is 1
        total = jnp.sum(ys * to_np(weights_out)) + jnp.sum(h_n * to_np(weights_state[0]))
        if kind == "LSTM":
            total = total + jnp.sum(jnp.stack(finals_c) * to_np(weights_state[1]))
        return total, (ys, h_n)

    (value, (ys, h_n)), grads = jax.value_and_grad(jax_loss, argnums=(0, 1, 2, 3), has_aux=True)(
        state_dict, to_np(x), to_np(h0), to_np(c0))
    np.testing.assert_allclose(ys, to_np(out), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_n, to_np(finals[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, loss.item(), rtol=1e-5)
    expected_grads = ({name: to_np(p.grad) for name, p in module.named_parameters()},
                      to_np(x.grad), to_np(h0.grad), to_np(c0.grad) if kind == "LSTM" else np.zeros_like(to_np(c0)))
    assert_trees_close(grads, expected_grads, rtol=1e-4, atol=1e-5, err_msg=case)
