"""The benchmark's runners train the benchmark's model.

Each available runner (lstmjax's engines and every peer) takes two real steps on a tiny shape; its
first loss must equal lstmjax's loss on the same batch with the runner's own initial weights,
converted to lstmjax's layout, and every parameter must move. Peers that cannot run here (the
cuDNN one on a CPU, libraries that are not installed) must say why. The cuDNN model is also run on
the CPU with ``jax.experimental.rnn.lstm_ref`` standing in for the cuDNN kernel.
"""

import contextlib
import importlib.util
import re

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

import lstmjax
from benchmarks import peers
from benchmarks.report import Unavailable
from benchmarks.shapes import QUICK_SHAPES
from lstmjax import LSTM, convert
from lstmjax.model import make_cells

pytestmark = pytest.mark.usefixtures("standard_promotion")

SHAPE = QUICK_SHAPES["quick-char"]  # V=16, H=8, L=2, B=4, T=6: two layers, so layer order counts


# ---------------------------------------------------------------------------------------------
# Each library's parameters -> lstmjax's (embedding [V, H], per-layer (cell, params), head), through
# lstmjax.convert: the cells come with the weights, so a forget_bias mismatch cannot pass.
# ---------------------------------------------------------------------------------------------


def _from_lstmjax(p):
    cell = LSTM(SHAPE.hidden_size, forget_bias=0.0)  # the runners' cell (benchmarks.peers)
    layers = [(cell, {"kernel": p[f"layer_{k}/kernel"], "bias": p[f"layer_{k}/bias"]})
              for k in range(SHAPE.num_layers)]
    return p["embedding/embedding"], layers, p["head/kernel"], p["head/bias"]


def _from_flax(p):
    nested = traverse_util.unflatten_dict(p, sep="/")  # the runner's parameters come flattened
    layers = [convert.lstm_from_flax(nested[f"lstm_{k}"]) for k in range(SHAPE.num_layers)]
    return p["embedding/embedding"], layers, p["head/kernel"], p["head/bias"]


def _from_cudnn(p):
    size = SHAPE.hidden_size
    layers = convert.lstm_from_cudnn(p["lstm"], input_size=size, hidden_size=size,
                                     num_layers=SHAPE.num_layers)
    return p["embedding/embedding"], layers, p["head/kernel"], p["head/bias"]


def _from_torch(p):
    layers = convert.lstm_from_torch({k: v for k, v in p.items() if k.startswith("lstm.")})
    return p["embedding.weight"], layers, p["head.weight"].T, p["head.bias"]


def _from_keras(p):
    def leaf(layer, name):
        (value,) = [v for k, v in p.items() if re.fullmatch(f"{layer}/(.*/)?{name}", k)]
        return value

    state_dict = {}  # keras's kernels are torch's transposed, gates i, f, c, o; one bias
    for k in range(SHAPE.num_layers):
        bias = leaf(f"lstm_{k}", "bias")
        state_dict |= {f"weight_ih_l{k}": leaf(f"lstm_{k}", "kernel").T,
                       f"weight_hh_l{k}": leaf(f"lstm_{k}", "recurrent_kernel").T,
                       f"bias_ih_l{k}": bias, f"bias_hh_l{k}": np.zeros_like(bias)}
    return (leaf("embedding", "embeddings"), convert.lstm_from_torch(state_dict),
            leaf("head", "kernel"), leaf("head", "bias"))


def _from_tf(p):
    return (p["Model/embedding:0"], convert.layers_from_tf(p, forget_bias=0.0),
            p["Model/softmax_w:0"], p["Model/softmax_b:0"])


def _lstmjax_loss(embedding, layers, head_kernel, head_bias, *, seed) -> float:
    """lstmjax's mean token loss on the runners' batch, from a zero state, for ``layers``
    ``[(cell, params)]`` whose cells must be the model's."""
    config = lstmjax.ModelConfig(vocab_size=SHAPE.vocab_size, hidden_size=SHAPE.hidden_size,
                                 num_layers=SHAPE.num_layers, forget_bias=0.0)
    assert [cell for cell, _ in layers] == make_cells(config)
    params = {"embedding": {"embedding": embedding}, "head": {"kernel": head_kernel,
                                                              "bias": head_bias}}
    params |= {f"layer_{k}": layer for k, (_, layer) in enumerate(layers)}
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    inputs, targets = peers.make_batch(SHAPE, seed)
    logits, _ = lstmjax.RNNLanguageModel(config).apply(
        {"params": params}, inputs, lstmjax.zero_carry(config, SHAPE.batch_size))
    return float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets)))


def _cpu_cudnn(shape, *, seed, precision="float32"):
    """The cuDNN runner with ``lstm_ref`` (jax's reference) in place of the cuDNN kernel."""
    from jax.experimental import rnn

    def reference_lstm(x, h_0, c_0, weights, seq_lengths, *, input_size, hidden_size,
                       num_layers, dropout, bidirectional):
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size,
                                                         num_layers, bidirectional)
        return rnn.lstm_ref(x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size,
                            hidden_size, num_layers, dropout, bidirectional)

    return peers._jax_cudnn(shape, lstm=reference_lstm, seed=seed, notes="lstm_ref on CPU")


RUNNERS = {  # row label -> (factory, converter to lstmjax's layout)
    **{label: (factory, _from_lstmjax) for label, factory in peers.LSTMJAX.items()},
    "flax nn.RNN": (peers.PEERS["flax nn.RNN"], _from_flax),
    "jax cuDNN": (peers.PEERS["jax cuDNN"], _from_cudnn),
    "jax cuDNN (lstm_ref)": (_cpu_cudnn, _from_cudnn),
    "torch nn.LSTM": (peers.PEERS["torch nn.LSTM"], _from_torch),
    "keras LSTM": (peers.PEERS["keras LSTM"], _from_keras),
    "tf static_rnn": (peers.PEERS["tf static_rnn"], _from_tf),
    "tf dynamic_rnn": (peers.PEERS["tf dynamic_rnn"], _from_tf),
}


def test_every_peer_has_a_test():
    assert set(peers.PEERS) | set(peers.LSTMJAX) <= set(RUNNERS)


def _jax_contexts(label):
    """Full float32 matmuls (a GPU would use TF32 by default, for lstmjax's reference too); and
    rank promotion allowed where the library broadcasts rank-1 biases itself (jax's lstm_ref, the
    CPU stand-in for cuDNN, and Keras)."""
    broadcasts = "cuDNN" in label or "keras" in label
    stack = contextlib.ExitStack()
    stack.enter_context(jax.default_matmul_precision("highest"))
    stack.enter_context(jax.numpy_rank_promotion("allow" if broadcasts else "raise"))
    return stack


def _make(label, seed):
    try:
        return RUNNERS[label][0](SHAPE, seed=seed)
    except Unavailable as why:
        pytest.skip(f"{label}: {why}")


@pytest.mark.parametrize("label", RUNNERS)
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_runner_trains_the_benchmark_model(label, seed):
    seed %= 2**31  # TF and torch want seeds below 2**31
    with _jax_contexts(label):
        runner = _make(label, seed)
        assert runner.name == label.removesuffix(" (lstm_ref)")
        initial = runner.step.parameters()
        runner.step()
        first_loss = runner.step.loss()
        first = runner.step.parameters()
        runner.step()
        second = runner.step.parameters()
        # The first step's loss is computed with the initial weights from a zero state:
        # lstmjax's loss with those weights, converted to its layout, must match it.
        expected = _lstmjax_loss(*RUNNERS[label][1](initial), seed=seed)

    assert np.isfinite(runner.step.loss())
    assert first_loss == pytest.approx(expected, rel=1e-5)
    for before, after in ((initial, first), (first, second)):
        assert before.keys() == after.keys()
        unchanged = [name for name in before if np.array_equal(before[name], after[name])]
        assert not unchanged, f"{label}: a step left {unchanged} unchanged"


@pytest.mark.parametrize("label", RUNNERS)
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_runner_weights_follow_the_seed(label):
    with _jax_contexts(label):
        weights = [_make(label, seed).step.parameters() for seed in (1, 1, 2)]
    for name in weights[0]:
        np.testing.assert_array_equal(weights[0][name], weights[1][name], err_msg=name)
    assert any(not np.array_equal(weights[0][name], weights[2][name]) for name in weights[0])


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="a GPU is present")
def test_cudnn_peer_needs_a_gpu():
    with pytest.raises(Unavailable, match="needs a GPU"):
        peers.jax_cudnn(SHAPE)


@pytest.mark.parametrize(("label", "module"), [
    ("keras LSTM", "keras"), ("tf static_rnn", "tensorflow"), ("tf dynamic_rnn", "tensorflow"),
])
def test_missing_library_is_unavailable(label, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed")
    with pytest.raises(Unavailable, match="not installed"):
        peers.PEERS[label](SHAPE)


@pytest.mark.parametrize("label", ["torch nn.LSTM", "tf static_rnn"])
def test_unknown_precision_is_an_error(label):
    with pytest.raises(ValueError, match="precision must be one of"):
        peers.PEERS[label](SHAPE, precision="bfloat16")


def test_step_before_loss_is_an_error():
    runner = peers.LSTMJAX["lstmjax scan"](SHAPE)
    with pytest.raises(RuntimeError, match="no step has run"):
        runner.step.loss()
