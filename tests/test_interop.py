"""Whole language models in and out, through the CLI: a TF1 PTB-style model checked against a
NumPy forward pass, a torch model against torch itself, both through ``lstmjax eval``; exports
that read back exactly (TF: the same names and bits; torch: the same outputs in torch); weight-tied
models both ways."""

import importlib.util
import json

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from lstmjax import interop
from lstmjax.cli import main
from lstmjax.data import Vocab, load_corpus
from lstmjax.model import RNNLanguageModel, zero_carry
from lstmjax.trained import load_run

EVAL_STREAMS = 64  # lstmjax eval --batch-size: few steps per stream for the references


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("default")


def _streams(ids):
    """The valid split as ``lstmjax eval`` reads it: B streams, inputs and next-token targets."""
    length = len(ids) // EVAL_STREAMS
    streams = np.asarray(ids[: EVAL_STREAMS * length], np.int64).reshape(EVAL_STREAMS, length)
    return streams[:, :-1], streams[:, 1:]


def _mean_nll(logits, targets):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, targets[..., None], -1).mean()


def _eval_loss(workdir, capsys):
    assert main(["eval", "--workdir", str(workdir), "--batch-size", str(EVAL_STREAMS)]) == 0
    return json.loads(capsys.readouterr().out)["loss"]


def _ptb_tf_variables(rng, vocab_size, hidden=4, layers=2):
    """A PTB-tutorial-style TF1 model (BasicLSTMCell, forget_bias=0) with random weights."""
    def normal(*shape):
        return rng.normal(scale=0.5, size=shape).astype(np.float32)

    variables = {"Model/embedding:0": normal(vocab_size, hidden),
                 "Model/softmax_w:0": normal(hidden, vocab_size),
                 "Model/softmax_b:0": normal(vocab_size)}
    for k in range(layers):
        scope = f"Model/RNN/multi_rnn_cell/cell_{k}/basic_lstm_cell"
        variables[f"{scope}/kernel:0"] = normal(2 * hidden, 4 * hidden)
        variables[f"{scope}/bias:0"] = normal(4 * hidden)
    return variables


def _numpy_ptb_logits(variables, tokens, *, forget_bias):
    """TF1's PTB model in float64 NumPy: embedding, BasicLSTMCell stack (i, j, f, o), softmax."""
    v = {name.split(":")[0]: value.astype(np.float64) for name, value in variables.items()}
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    x = v["Model/embedding"][tokens]  # [B, T, H]
    k = 0
    while f"Model/RNN/multi_rnn_cell/cell_{k}/basic_lstm_cell/kernel" in v:
        scope = f"Model/RNN/multi_rnn_cell/cell_{k}/basic_lstm_cell"
        hidden = v[f"{scope}/bias"].shape[0] // 4
        c = h = np.zeros((tokens.shape[0], hidden))
        outputs = []
        for t in range(tokens.shape[1]):
            gates = np.concatenate([x[:, t], h], -1) @ v[f"{scope}/kernel"] + v[f"{scope}/bias"]
            i, j, f, o = np.split(gates, 4, -1)
            c = sigmoid(f + forget_bias) * c + sigmoid(i) * np.tanh(j)
            h = sigmoid(o) * np.tanh(c)
            outputs.append(h)
        x, k = np.stack(outputs, 1), k + 1
    return x @ v["Model/softmax_w"] + v["Model/softmax_b"]


def test_tf1_ptb_model_through_eval_and_back(tmp_path, corpus, capsys):
    rng = np.random.default_rng(0)
    variables = _ptb_tf_variables(rng, len(corpus.vocab))
    np.savez(tmp_path / "ptb.npz", **variables)
    run = tmp_path / "run"
    args = ["import", str(tmp_path / "ptb.npz"), "--workdir", str(run), "--corpus", "default"]
    assert main(args) == 1
    assert "forget_bias is not stored in TF weights" in capsys.readouterr().err
    assert main([*args, "--forget-bias", "0"]) == 0
    capsys.readouterr()

    config, vocab, model, params, step = load_run(run)
    assert (config.model.cell, config.model.num_layers, config.model.forget_bias) == ("lstm", 2, 0.0)
    assert vocab == corpus.vocab and step == 0
    inputs, targets = _streams(corpus.valid)
    window = inputs[:3, :20]
    logits, _ = model.apply({"params": params}, jnp.asarray(window, jnp.int32),
                            zero_carry(config.model, 3))
    expected = _numpy_ptb_logits(variables, window, forget_bias=0.0)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    reference = _mean_nll(_numpy_ptb_logits(variables, inputs, forget_bias=0.0), targets)
    np.testing.assert_allclose(_eval_loss(run, capsys), reference, rtol=1e-5)

    assert main(["export", "--workdir", str(run), str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as exported:
        assert sorted(exported.files) == sorted(name.split(":")[0] for name in variables)
        for name, value in variables.items():
            np.testing.assert_array_equal(exported[name.split(":")[0]], value, err_msg=name)


def _torch_lm(torch, kind, vocab_size, *, embed=3, hidden=4, layers=2, **options):
    """PyTorch's word_language_model: encoder, rnn, decoder."""
    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(vocab_size, embed)
            self.rnn = getattr(torch.nn, kind)(embed, hidden, layers, batch_first=True, **options)
            self.decoder = torch.nn.Linear(options.get("proj_size") or hidden, vocab_size)

        def forward(self, tokens):
            return self.decoder(self.rnn(self.encoder(tokens))[0])

    torch.manual_seed(0)
    module = LM()
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.normal_(0.0, 0.5)
    return module


def test_torch_model_through_eval_and_back(tmp_path, corpus, capsys):
    torch = pytest.importorskip("torch")
    module = _torch_lm(torch, "LSTM", len(corpus.vocab))
    torch.save(module.state_dict(), tmp_path / "lm.pt")
    run = tmp_path / "run"
    assert main(["import", str(tmp_path / "lm.pt"), "--workdir", str(run)]) == 1
    assert "give the vocabulary: --corpus NAME" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "lm.pt"), "--workdir", str(run), "--corpus", "default"]) == 0
    capsys.readouterr()

    config, _, model, params, _ = load_run(run)
    assert (config.model.embed_size, config.model.forget_bias) == (3, 0.0)
    inputs, targets = _streams(corpus.valid)
    with torch.no_grad():
        expected = module(torch.from_numpy(inputs)).numpy()
    logits, _ = model.apply({"params": params}, jnp.asarray(inputs[:3, :20], jnp.int32),
                            zero_carry(config.model, 3))
    np.testing.assert_allclose(logits, expected[:3, :20], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_eval_loss(run, capsys), _mean_nll(expected, targets), rtol=1e-5)

    assert main(["export", "--workdir", str(run), str(tmp_path / "out.pt")]) == 0
    again = _torch_lm(torch, "LSTM", len(corpus.vocab))
    again.load_state_dict(torch.load(tmp_path / "out.pt", weights_only=True))  # strict: same keys
    with torch.no_grad():
        np.testing.assert_allclose(again(torch.from_numpy(inputs[:3])).numpy(), expected[:3],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("kind, options", [("GRU", {}), ("RNN", {}), ("LSTM", {"proj_size": 2})])
def test_torch_round_trips_are_exact(kind, options):
    torch = pytest.importorskip("torch")
    module = _torch_lm(torch, kind, 7, **options)
    config, params = interop.lm_from_torch(module.state_dict())
    exported = interop.lm_to_torch(config, params)
    assert sorted(exported) == sorted(module.state_dict())
    assert_trees_close(interop.lm_from_torch(exported)[1], params, rtol=0, atol=0)
    assert interop.lm_from_torch(exported)[0] == config


def test_tf_r2rt_names_and_errors(rng, tmp_path):
    variables = _ptb_tf_variables(rng, 7, layers=1)
    config, params = interop.lm_from_tf(variables, forget_bias=1.0)
    r2rt = interop.lm_to_tf(config, params, names="r2rt")
    assert {"embedding_matrix", "softmax/W", "softmax/b",
            "rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel"} <= set(r2rt)
    assert_trees_close(interop.lm_from_tf(r2rt, forget_bias=1.0)[1], params, rtol=0, atol=0)
    with pytest.raises(ValueError, match="found neither"):
        interop.lm_from_tf({k: v for k, v in variables.items() if "softmax_b" not in k}, forget_bias=1.0)
    with pytest.raises(ValueError, match=r"\['head'\]\['bias'\]: expected \[7\], got \[8\]"):
        interop.lm_from_tf({**variables, "Model/softmax_b:0": np.zeros(8, np.float32)}, forget_bias=1.0)
    with pytest.raises(ValueError, match="the vocabulary has 3 tokens but the model's embedding has 7"):
        interop.write_run(tmp_path / "run", config, params, Vocab(("a", "b", "c"), "char"))
    if importlib.util.find_spec("tensorflow") is None:
        (tmp_path / "model.ckpt-1.index").write_bytes(b"")
        with pytest.raises(ValueError, match=r"needs TensorFlow \(pip install 'lstmjax\[tf\]'\)"):
            interop.load_variables(tmp_path / "model.ckpt-1")


def test_tied_models_export_the_embedding_as_the_softmax_and_import_tied(rng):
    """A softmax weight equal to the embedding table imports as tie_weights (no head kernel),
    computes the reference's logits, and exports back to the same names and bits (TF) or a
    state dict that a tied torch module loads and runs the same (torch)."""
    variables = _ptb_tf_variables(rng, 7, layers=1)
    variables["Model/softmax_w:0"] = variables["Model/embedding:0"].T.copy()
    config, params = interop.lm_from_tf(variables, forget_bias=0.0)
    assert config.tie_weights and set(params["head"]) == {"bias"}
    tokens = rng.integers(0, 7, (2, 5))
    logits, _ = RNNLanguageModel(config).apply({"params": params}, jnp.asarray(tokens, jnp.int32),
                                               zero_carry(config, 2))
    np.testing.assert_allclose(logits, _numpy_ptb_logits(variables, tokens, forget_bias=0.0),
                               rtol=1e-5, atol=1e-5)
    exported = interop.lm_to_tf(config, params)
    assert sorted(exported) == sorted(name.split(":")[0] for name in variables)
    for name, value in variables.items():
        np.testing.assert_array_equal(exported[name.split(":")[0]], value, err_msg=name)

    torch = pytest.importorskip("torch")
    module = _torch_lm(torch, "LSTM", 7, embed=4, hidden=4)
    module.decoder.weight = module.encoder.weight
    config, params = interop.lm_from_torch(module.state_dict())
    assert config.tie_weights and set(params["head"]) == {"bias"}
    with torch.no_grad():
        expected = module(torch.from_numpy(tokens)).numpy()
    logits, _ = RNNLanguageModel(config).apply({"params": params}, jnp.asarray(tokens, jnp.int32),
                                               zero_carry(config, 2))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    exported = interop.lm_to_torch(config, params)
    assert sorted(exported) == sorted(module.state_dict())
    again = _torch_lm(torch, "LSTM", 7, embed=4, hidden=4)
    again.decoder.weight = again.encoder.weight
    again.load_state_dict({name: torch.from_numpy(np.array(value))
                           for name, value in exported.items()})
    with torch.no_grad():
        np.testing.assert_allclose(again(torch.from_numpy(tokens)).numpy(), expected, rtol=1e-6)
    assert interop.lm_from_torch(exported)[0] == config
    assert_trees_close(interop.lm_from_torch(exported)[1], params, rtol=0, atol=0)
