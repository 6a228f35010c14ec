"""Weight import, proven on outputs, final states and gradients:

* against TensorFlow 1: fixtures recorded from real ``static_rnn``, ``dynamic_rnn`` and ``tf.scan``
  runs of TF1 cells (``tests/fixtures/tf1``; the script that made them is beside them);
* against PyTorch: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` run live (skipped without torch).

The converters are jnp code, so ``jax.grad`` through them gives gradients in the source layout,
compared tensor by tensor with TF's and torch's own gradients.
"""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs

import lstmjax
from lstmjax import GRU, LSTM, LayerNormLSTM, LSTMState, SimpleRNN, convert

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "tf1"


def assert_layers_equal(actual, expected):
    """Two ``[(cell, params)]``: the same cells, the same parameters bit for bit."""
    assert [cell for cell, _ in actual] == [cell for cell, _ in expected]
    assert_trees_close([p for _, p in actual], [p for _, p in expected], rtol=0, atol=0)


def run_stack(layers, carries, xs, *, engine, lengths=None):
    """Layer-by-layer run of a stack ``[(cell, params)]`` on time-major ``xs``: the top layer's
    outputs and the carries."""
    finals = []
    for (cell, params), carry in zip(layers, carries, strict=True):
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
    if meta["kind"] == "tutorial_lstm_8mat":
        def importer(variables):
            return [convert.lstm_from_tf_tutorial(variables)]
    else:
        def importer(variables):
            return convert.layers_from_tf(variables, forget_bias=meta["forget_bias"])
    variables = {name: fixture[f"var/{name}"] for name in meta["var_names"]}
    inits = [_tf_state(fixture, "init/", k, cell) for k, cell in enumerate(cells)]
    lengths = fixture.get("lengths")

    def loss(variables, inputs, inits):
        ys, finals = run_stack(importer(variables), inits, jnp.swapaxes(inputs, 0, 1), engine=engine,
                               lengths=lengths)
        out = jnp.swapaxes(ys, 0, 1)  # [B, T, out]
        weights = [_tf_state(fixture, "R/final/", k, cell) for k, cell in enumerate(cells)]
        total = jnp.sum(out * fixture["R/out"]) + sum(
            jnp.sum(final * weight)
            for final, weight in zip(jax.tree.leaves(finals), jax.tree.leaves(weights)))
        return total, (out, finals)

    assert [cell for cell, _ in importer(variables)] == cells
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
    layers = convert.layers_from_tf(forget_bias=0.0, variables={
        "Model/RNN/multi_rnn_cell/cell_1/basic_lstm_cell/kernel:0": 2 * kernel,
        "Model/RNN/multi_rnn_cell/cell_0/basic_lstm_cell/kernel:0": kernel,
        "Model/RNN/multi_rnn_cell/cell_0/basic_lstm_cell/bias:0": bias,
        "Model/RNN/multi_rnn_cell/cell_1/basic_lstm_cell/bias:0": bias,
        "Model/embedding:0": np.zeros((10, 3), np.float32),
        "Model/softmax_w:0": np.zeros((2, 10), np.float32),
        "dense/kernel:0": np.zeros((2, 10), np.float32),
    })
    assert len(layers) == 2
    np.testing.assert_array_equal(layers[1][1]["kernel"], 2 * kernel)
    single = convert.layers_from_tf({"rnn/gru_cell/gates/weights": np.ones((4, 4)),
                                     "rnn/gru_cell/gates/biases": np.ones(4),
                                     "rnn/gru_cell/candidate/weights": np.ones((4, 2)),
                                     "rnn/gru_cell/candidate/biases": np.ones(2)})
    assert single[0][0] == GRU(2)
    assert sorted(single[0][1]) == ["candidate_bias", "candidate_kernel", "gate_bias", "gate_kernel"]


def test_import_needs_no_optional_framework():
    """``import lstmjax.convert`` imports none of torch, TensorFlow, Equinox or ``flax.nnx``."""
    code = ("import sys, lstmjax.convert; print(sorted(m for m in sys.modules if m.split('.')[0] "
            "in ('torch', 'tensorflow', 'equinox') or m.startswith('flax.nnx')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_import_errors_name_the_problem():
    with pytest.raises(ValueError, match="no TF cell variables found"):
        convert.layers_from_tf({"Model/embedding": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="cannot tell the cell type of scope 'my_cell'"):
        convert.layers_from_tf({"rnn/multi_rnn_cell/cell_0/my_cell/kernel": np.zeros((3, 4)),
                                "rnn/multi_rnn_cell/cell_0/my_cell/bias": np.zeros(4)})
    with pytest.raises(ValueError, match="give all three peepholes"):
        convert.lstm_from_tf(np.zeros((3, 4)), np.zeros(4), forget_bias=1.0, w_i_diag=np.zeros(1))
    with pytest.raises(ValueError, match=r"bias must be shaped \[8\]"):
        convert.lstm_from_tf(np.zeros((3, 8)), np.zeros(4))
    with pytest.raises(ValueError, match=r"variables must hold \('input_gate_i'"):
        convert.lstm_from_tf_tutorial({"ix": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="no torch RNN weights found"):
        convert.lstm_from_torch({"linear.weight": np.zeros((2, 2))})


@pytest.mark.parametrize("case", [case for case in TF_CASES if case != "tutorial_lstm_8mat"])
def test_tf_cells_are_read_off_the_weights_and_export_restores_the_names(case):
    """layers_from_tf gives the cell each fixture was recorded with; layers_to_tf writes back the
    very variables TF1 wrote (names and bits)."""
    with np.load(FIXTURES / f"{case}.npz") as fixture:
        fixture = dict(fixture)
    meta = json.loads(str(fixture["meta"]))
    variables = {name: fixture[f"var/{name}"] for name in meta["var_names"]}
    layers = convert.layers_from_tf(variables, forget_bias=meta["forget_bias"])
    assert [cell for cell, _ in layers] == _tf_cells(meta)
    exported = convert.layers_to_tf(layers)
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
    ((cell, params),) = convert.layers_from_tf(variables, forget_bias=1.0)
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
    ((_, fw_layer),) = convert.layers_from_tf({**fw, **bw}, scope="fw", forget_bias=1.0)
    np.testing.assert_array_equal(fw_layer["kernel"], fw["bidirectional_rnn/fw/basic_lstm_cell/kernel"])
    ((fw_cell, fw_params),), ((bw_cell, bw_params),) = convert.bidirectional_from_tf(
        {**fw, **bw, "softmax/W": np.zeros((6, 5))}, forget_bias=1.0)
    assert fw_cell == bw_cell == LSTM(3, forget_bias=1.0)
    np.testing.assert_array_equal(fw_params["bias"], fw["bidirectional_rnn/fw/basic_lstm_cell/bias"])
    np.testing.assert_array_equal(bw_params["bias"], bw["bidirectional_rnn/bw/basic_lstm_cell/bias"])

    stacks = {**_lstm_vars("encoder/multi_rnn_cell/cell_0/lstm_cell", seed=3),
              **_lstm_vars("encoder/multi_rnn_cell/cell_1/lstm_cell", seed=4),
              **_lstm_vars("decoder/multi_rnn_cell/cell_0/lstm_cell", seed=5)}
    with pytest.raises(ValueError, match=r"'decoder/multi_rnn_cell/cell_\*', 'encoder/multi_rnn_cell/cell_\*'"):
        convert.layers_from_tf(stacks)
    assert len(convert.layers_from_tf(stacks, scope="encoder", forget_bias=1.0)) == 2
    assert len(convert.layers_from_tf(stacks, scope="decoder/multi_rnn_cell", forget_bias=1.0)) == 1
    with pytest.raises(ValueError, match="no variable name contains scope 'decoder/fw'"):
        convert.layers_from_tf(stacks, scope="decoder/fw")


def test_tf0_names():
    """Wall 3: TF 0.x's MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix and friends."""
    modern = {**_lstm_vars("rnn/multi_rnn_cell/cell_0/basic_lstm_cell", seed=1),
              **_lstm_vars("rnn/multi_rnn_cell/cell_1/basic_lstm_cell", seed=2)}
    old = {name.replace("multi_rnn_cell/cell_", "MultiRNNCell/Cell").replace("basic_lstm_cell", "BasicLSTMCell")
           .replace("/kernel", "/Linear/Matrix").replace("/bias", "/Linear/Bias"): value
           for name, value in modern.items()}
    assert_layers_equal(convert.layers_from_tf(old, forget_bias=1.0),
                        convert.layers_from_tf(modern, forget_bias=1.0))
    rng = np.random.default_rng(0)

    def normal(size):
        return rng.normal(size=size).astype(np.float32)

    gru = {f"RNN/GRUCell/{part}/Linear/{leaf}:0": normal(shape)
           for part, width in (("Gates", 4), ("Candidate", 2))
           for leaf, shape in (("Matrix", (3, width)), ("Bias", (width,)))}
    ((_, params),) = convert.layers_from_tf(gru)
    np.testing.assert_array_equal(params["candidate_kernel"], gru["RNN/GRUCell/Candidate/Linear/Matrix:0"])
    lstm = {"RNN/LSTMCell/W_0": normal((4, 8)), "RNN/LSTMCell/B": normal(8),
            "RNN/LSTMCell/W_I_diag": np.ones(2), "RNN/LSTMCell/W_F_diag": np.ones(2),
            "RNN/LSTMCell/W_O_diag": np.ones(2), "RNN/LSTMCell/W_P_0": normal((2, 2))}
    ((cell, params),) = convert.layers_from_tf(lstm, forget_bias=1.0)
    assert cell == LSTM(2, forget_bias=1.0, use_peepholes=True, proj_size=2)
    np.testing.assert_array_equal(params["proj_kernel"], lstm["RNN/LSTMCell/W_P_0"])
    with pytest.raises(ValueError, match="sharded TF 0.x variable 'W_1'"):
        convert.layers_from_tf({**lstm, "RNN/LSTMCell/W_1": np.ones((4, 8))}, forget_bias=1.0)


def test_tutorial_unnamed_variables_in_creation_order():
    """Wall 4: the notebook's checkpoint holds Variable, Variable_1, ... (ix, im, ib, fx, ...)."""
    rng = np.random.default_rng(0)
    inputs, hidden = 3, 2
    shapes = {"x": (inputs, hidden), "m": (hidden, hidden), "b": (1, hidden)}
    named = {f"{g}{k}": rng.normal(size=shapes[k]).astype(np.float32) for g in "ifco" for k in "xmb"}
    unnamed = {("Variable" if k == 0 else f"Variable_{k}") + ":0": named[name]
               for k, name in enumerate(convert.TUTORIAL_CREATION_ORDER[:12])}
    unnamed["Variable_14:0"] = np.zeros((hidden, 27), np.float32)  # the classifier: ignored here
    assert_layers_equal([convert.lstm_from_tf_tutorial(unnamed)],
                        [convert.lstm_from_tf_tutorial(named)])
    with pytest.raises(ValueError, match="lstm_from_tf_tutorial"):
        convert.layers_from_tf(unnamed)
    swapped = {**unnamed, "Variable:0": named["im"], "Variable_1:0": named["ix"]}
    with pytest.raises(ValueError, match="do not have the text8 notebook's shapes in its creation order"):
        convert.lstm_from_tf_tutorial(swapped)


def test_forget_bias_is_never_guessed():
    """Wall 5: options in the weights are read; forget_bias, which is not, must be given."""
    variables = _lstm_vars("rnn/basic_lstm_cell")
    with pytest.raises(ValueError, match="forget_bias is not stored in TF weights"):
        convert.layers_from_tf(variables)
    with pytest.raises(ValueError, match="forget_bias is not stored in TF weights"):
        convert.lstm_from_tf(variables["rnn/basic_lstm_cell/kernel"],
                             variables["rnn/basic_lstm_cell/bias"])
    ((cell, _),) = convert.layers_from_tf(variables, forget_bias=0.0)
    assert cell == LSTM(3, forget_bias=0.0)


@pytest.mark.parametrize("kind, options", [("LSTM", dict(num_layers=2, proj_size=2)),
                                           ("GRU", dict(num_layers=1)), ("RNN", dict(num_layers=2))])
def test_torch_export_reads_back_exactly(kind, options):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(4, 3, **options)
    state_dict = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    layers = convert.layers_from_torch(state_dict)
    assert [cell for cell, _ in layers] == [_lstmjax_cells(kind, 3, options)] * options["num_layers"]
    exported = convert.layers_to_torch(layers)
    assert sorted(exported) == sorted(state_dict)
    assert_layers_equal(convert.layers_from_torch(exported), layers)
    with pytest.raises(ValueError, match="no export of LayerNormLSTM cells in format 'torch'"):
        convert.layers_to_torch([(LayerNormLSTM(3), LayerNormLSTM(3).init(jax.random.key(0), 2))])
    with pytest.raises(ValueError, match="read it with layers_from_torch"):
        {"LSTM": convert.gru_from_torch}.get(kind, convert.lstm_from_torch)(state_dict)


def test_tutorial_short_names_are_accepted():
    rng = np.random.default_rng(0)
    long_names = {f"{g}_{k}": rng.normal(size=(2, 2) if k != "b" else (1, 2))
                  for g in ("input_gate", "forget_gate", "output_gate", "memory") for k in "iob"}
    short = {"input_gate": "i", "forget_gate": "f", "output_gate": "o", "memory": "c"}
    short_names = {f"lstm/{short[name.rsplit('_', 1)[0]]}{dict(i='x', o='m', b='b')[name[-1]]}:0": v
                   for name, v in long_names.items()}
    assert_layers_equal([convert.lstm_from_tf_tutorial(short_names)],
                        [convert.lstm_from_tf_tutorial(long_names)])


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
    # Bug 5: the importer's cell, not a default LSTM(H) (forget_bias 1.0), goes with the weights.
    assert [c for c, _ in importer(state_dict)] == [cell] * layers

    def carry(layer, h, c):
        return LSTMState(c[layer], h[layer]) if kind == "LSTM" else h[layer]

    def jax_loss(state_dict, xs, h0, c0):
        ys_per_direction, finals_h, finals_c = [], [], []
        for direction in range(directions):
            imported = importer(state_dict, reverse=direction == 1)
            inputs = jnp.swapaxes(xs, 0, 1)
            for layer, (layer_cell, params) in enumerate(imported):
                index = layer * directions + direction
                final, inputs = lstmjax.run(layer_cell.step, params, carry(index, h0, c0), inputs,
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


# ---------------------------------------------------------------------------------------------
# The registry: every conversion round-trips; unknown cells and formats are errors.
# ---------------------------------------------------------------------------------------------

SAMPLE_CELLS = {  # cell class -> cells whose options cover what the formats do and do not take
    LSTM: [LSTM(4, forget_bias=0.5), LSTM(4, forget_bias=1.0, use_peepholes=True, proj_size=3)],
    GRU: [GRU(4), GRU(4, reset_after=True)],
    SimpleRNN: [SimpleRNN(4)],
    LayerNormLSTM: [LayerNormLSTM(4, forget_bias=1.0), LayerNormLSTM(4, layer_norm_cell=False)],
}
EXPORTS = [key for key, entry in convert.CONVERTERS.items() if entry.export is not None]


@pytest.mark.parametrize("cls, fmt", EXPORTS, ids=[f"{c.__name__}-{f}" for c, f in EXPORTS])
def test_every_export_reads_back_exactly(cls, fmt, rng):
    """export then import runs as the original (one step from a random carry); the imported
    layer exports to the same arrays, and reads back to the same cell and parameters, bit for
    bit. A cell the format lacks is a ValueError, and every entry exports some sample."""
    entry = convert.CONVERTERS[(cls, fmt)]
    exported = 0
    for cell in SAMPLE_CELLS[cls]:
        params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=1, features=3)
        try:
            layer = entry.export(cell, params)
        except ValueError:
            continue
        exported += 1
        options = {"forget_bias": getattr(cell, "forget_bias", None)} if fmt == "tf" else {}
        imported_cell, imported = entry.import_(layer, **options)
        assert_trees_close(imported_cell.step(imported, carry, xs[0]),
                           cell.step(params, carry, xs[0]), rtol=1e-6, atol=1e-6, err_msg=fmt)
        again = entry.export(imported_cell, imported)
        assert jax.tree.structure(again) == jax.tree.structure(layer)
        for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(layer), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=fmt)  # arrays, and a TF cell's scope
        assert_layers_equal([entry.import_(again, **options)], [(imported_cell, imported)])
    assert exported


class MyLSTM(LSTM):
    """A user's cell: a subclass may change the math, so no converter may take it for an LSTM."""


def test_unknown_cells_and_formats_are_errors():
    """Bug 6: a cell convert.py does not know was exported as a SimpleRNN."""
    cell = MyLSTM(4, forget_bias=0.0)
    params = cell.init(jax.random.key(0), 3)
    for export in (convert.layers_to_tf, convert.layers_to_torch, convert.lstm_to_cudnn):
        with pytest.raises(ValueError, match=r"cannot convert MyLSTM\(hidden_size=4.*supported: lstm tf"):
            export([(cell, params)])
    with pytest.raises(ValueError, match=r"cannot convert MyLSTM\(.*to flax as a LSTM"):
        convert.lstm_to_flax(cell, params)
    with pytest.raises(ValueError, match="unknown format 'onnx' .formats: cudnn, equinox, flax, tf, torch"):
        convert.converter(LSTM, "onnx")
    with pytest.raises(ValueError, match="no export of LSTM cells in format 'equinox'"):
        convert.converter(LSTM(4), "equinox", way="export")


# ---------------------------------------------------------------------------------------------
# flax, Equinox and cuDNN, against the libraries' own cells: outputs, final carries, gradients.
# ---------------------------------------------------------------------------------------------

STEPS, BATCH, FEATURES, HIDDEN = 3, 2, 3, 4


def _weighted_loss(final, ys, weights):
    """``(sum(ys * w) + sum(final carry * w'), ys)``: every output and state counts."""
    return jnp.sum(ys * weights[0]) + sum(jnp.sum(a * w) for a, w in zip(
        jax.tree.leaves(final), weights[1:], strict=True)), ys


def _lstmjax_loss(layer, carry, xs, weights):
    """:func:`_weighted_loss` of one layer (time-major ``xs``), engine scan."""
    return _weighted_loss(*lstmjax.run_layer(*layer, carry, xs, engine="scan"), weights)


def _assert_import_matches(source_run, importer, source, carry, xs, weights):
    """The imported layer's loss, outputs and gradients (in the source's layout, through the
    importer) equal those of ``source_run(source) -> (final carry, ys)``."""
    def source_loss(source):
        return _weighted_loss(*source_run(source), weights)

    def our_loss(source):
        return _lstmjax_loss(importer(source), _as_lstmjax_carry(carry), xs, weights)

    (expected, expected_ys), expected_grads = jax.value_and_grad(source_loss, has_aux=True)(source)
    (value, ys), grads = jax.value_and_grad(our_loss, has_aux=True)(source)
    np.testing.assert_allclose(ys, expected_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert_trees_close(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), rtol=1e-5, atol=1e-5)


def _problem(rng, lstm):
    """Random carry (``(c, h)`` for an LSTM), time-major inputs and the loss's weights."""
    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    carry = (normal(BATCH, HIDDEN), normal(BATCH, HIDDEN)) if lstm else normal(BATCH, HIDDEN)
    weights = [normal(STEPS, BATCH, HIDDEN)] + [normal(BATCH, HIDDEN) for _ in range(1 + lstm)]
    return carry, normal(STEPS, BATCH, FEATURES), weights


def _as_lstmjax_carry(carry):
    return LSTMState(*carry) if isinstance(carry, tuple) else carry


FLAX_LINEN = ["LSTMCell", "OptimizedLSTMCell", "GRUCell"]
FLAX_NNX = ["LSTMCell", "OptimizedLSTMCell", "GRUCell"]


@pytest.mark.parametrize("api, name", [("linen", n) for n in FLAX_LINEN] + [("nnx", n) for n in FLAX_NNX])
def test_flax_cells(api, name, rng):
    from flax import linen, nnx

    lstm = "LSTM" in name
    importer = convert.lstm_from_flax if lstm else convert.gru_from_flax
    carry, xs, weights = _problem(rng, lstm)
    if api == "linen":
        rnn = linen.RNN(getattr(linen, name)(HIDDEN), time_major=True, return_carry=True)
        params = rnn.init(jax.random.key(0), xs, initial_carry=carry)["params"]["cell"]
        params = jax.tree.map(lambda a: a + 0.3 * jnp.asarray(rng.normal(size=a.shape), a.dtype), params)

        def flax_run(params):
            return rnn.apply({"params": {"cell": params}}, xs, initial_carry=carry)
    else:
        module = getattr(nnx, name)(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(module)
        params = jax.tree.map(lambda a: a + 0.3 * jnp.asarray(rng.normal(size=a.shape), a.dtype), params)

        def flax_run(params):
            cell = nnx.merge(graphdef, params)
            return jax.lax.scan(lambda c, x: cell(c, x), carry, xs)

    _assert_import_matches(flax_run, importer, params, carry, xs, weights)
    if api == "linen" and name != "OptimizedLSTMCell":
        cell, imported = importer(params)
        export = convert.lstm_to_flax if lstm else convert.gru_to_flax
        assert_trees_close(export(cell, imported), params, rtol=0, atol=0)


def test_flax_errors():
    from flax import nnx

    gru = nnx.GRUCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"got a flax.nnx.GRUCell's: \['dense_h/kernel'"):
        convert.lstm_from_flax(nnx.state(gru))
    with pytest.raises(ValueError, match=r"expected the parameters of a flax LSTM cell, one of "
                                         r"\{'flax.linen.LSTMCell or OptimizedLSTMCell': \['hf/bias'"):
        convert.lstm_from_flax({"params": {"ii": {"kernel": np.zeros((3, 4))}}})
    relu = nnx.LSTMCell(FEATURES, HIDDEN, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="LSTMCell.activation_fn is .*relu.*compute tanh"):
        convert.lstm_from_flax(relu)
    cell, _ = convert.lstm_from_flax(nnx.OptimizedLSTMCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0)))
    assert cell == LSTM(HIDDEN, forget_bias=0.0)
    linen_params = convert.lstm_to_flax(cell, convert.lstm_from_flax(
        nnx.OptimizedLSTMCell(FEATURES, HIDDEN, rngs=nnx.Rngs(0)))[1])
    flat = {f"{module}/{leaf}": v for module, leaves in linen_params.items()
            for leaf, v in leaves.items()}
    with pytest.raises(ValueError, match=r"flat key '\w+/\w+'.*unflatten_dict"):
        convert.lstm_from_flax(flat)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell"])
def test_equinox_cells(name, rng):
    eqx = pytest.importorskip("equinox")
    lstm = name == "LSTMCell"
    importer = convert.lstm_from_equinox if lstm else convert.gru_from_equinox
    module = getattr(eqx.nn, name)(FEATURES, HIDDEN, key=jax.random.key(0))
    carry, xs, weights = _problem(rng, lstm)

    def eqx_run(module):
        step = jax.vmap(module)  # one example -> a batch
        if lstm:  # equinox's carry is (h, c), lstmjax's (c, h)
            (h, c), ys = jax.lax.scan(lambda s, x: ((hc := step(x, s)), hc[0]), carry[::-1], xs)
            return (c, h), ys
        return jax.lax.scan(lambda h, x: (step(x, h), step(x, h)), carry, xs)

    _assert_import_matches(eqx_run, importer, module, carry, xs, weights)
    no_bias = getattr(eqx.nn, name)(FEATURES, HIDDEN, use_bias=False, key=jax.random.key(1))
    _, params = importer(no_bias)
    assert not any(np.any(params[k]) for k in params if "bias" in k)
    with pytest.raises(ValueError, match=f"expected an equinox.nn.{'GRU' if lstm else 'LSTM'}Cell"):
        (convert.gru_from_equinox if lstm else convert.lstm_from_equinox)(module)


def test_cudnn_weights_against_lstm_ref(rng):
    """A 2-layer bidirectional stack of jax.experimental.rnn (lstm_ref, its CPU reference): the
    layers lstm_from_cudnn reads, run forward and reversed, give its outputs, final states and
    weight gradients; what lstm_to_cudnn writes reads back bit for bit."""
    from jax.experimental import rnn

    layers, size = 2, rnn.get_num_params_in_lstm(FEATURES, HIDDEN, 2, True)
    weights = jnp.asarray(rng.normal(size=size), jnp.float32)
    h0, c0 = (jnp.asarray(rng.normal(size=(2 * layers, BATCH, HIDDEN)), jnp.float32) for _ in "hc")
    xs = jnp.asarray(rng.normal(size=(BATCH, STEPS, FEATURES)), jnp.float32)
    probe = [jnp.asarray(rng.normal(size=shape), jnp.float32)
             for shape in [(BATCH, STEPS, 2 * HIDDEN), h0.shape, c0.shape]]

    def loss(outputs):
        return sum(jnp.sum(a * w) for a, w in zip(outputs, probe, strict=True)), outputs[0]

    def reference(weights):
        with jax.numpy_rank_promotion("allow"):  # lstm_ref broadcasts rank-1 biases
            outputs = rnn.lstm_ref(
                xs, h0, c0, *rnn.unpack_lstm_weights(weights, FEATURES, HIDDEN, layers, True),
                jnp.full((BATCH,), STEPS, jnp.int32), FEATURES, HIDDEN, layers, 0.0, True)
        return loss(outputs)

    def ours(weights):
        directions = [convert.lstm_from_cudnn(weights, input_size=FEATURES, hidden_size=HIDDEN,
                                              num_layers=layers, bidirectional=True, reverse=r)
                      for r in (False, True)]
        inputs, finals = jnp.swapaxes(xs, 0, 1), []
        for k in range(layers):
            outputs = []
            for reverse, stack in enumerate(directions):
                index = 2 * k + reverse
                final, ys = lstmjax.run_layer(*stack[k], LSTMState(c0[index], h0[index]), inputs,
                                              engine="scan", reverse=bool(reverse))
                finals.append(final)
                outputs.append(ys)
            inputs = jnp.concatenate(outputs, axis=-1)
        return loss((jnp.swapaxes(inputs, 0, 1), jnp.stack([f.h for f in finals]),
                     jnp.stack([f.c for f in finals])))

    (expected, expected_ys), expected_grad = jax.value_and_grad(reference, has_aux=True)(weights)
    (value, ys), grad = jax.value_and_grad(ours, has_aux=True)(weights)
    np.testing.assert_allclose(ys, expected_ys, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-5)

    fw, bw = (convert.lstm_from_cudnn(weights, input_size=FEATURES, hidden_size=HIDDEN,
                                      num_layers=layers, bidirectional=True, reverse=r)
              for r in (False, True))
    assert [cell for cell, _ in fw + bw] == [LSTM(HIDDEN, forget_bias=0.0)] * 4
    written = convert.lstm_to_cudnn(fw, reverse_layers=bw)  # b_ih + b_hh in b_ih, b_hh zeros
    for reverse, expected_layers in enumerate((fw, bw)):
        assert_layers_equal(convert.lstm_from_cudnn(
            written, input_size=FEATURES, hidden_size=HIDDEN, num_layers=layers,
            bidirectional=True, reverse=bool(reverse)), expected_layers)
    with pytest.raises(ValueError, match=r"weights must be shaped \[\d+\] for input_size=3"):
        convert.lstm_from_cudnn(weights, input_size=FEATURES, hidden_size=HIDDEN)
