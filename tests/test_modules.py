"""The framework modules (lstmjax.nnx, lstmjax.linen, lstmjax.equinox) equal the functions they
call (run_layer, run_bidirectional, run_stack) on random parameters, carries and inputs: outputs,
final carries and gradients with respect to the module's parameters and the inputs; reverse,
keep_order and seq_lengths agree with flax's nn.RNN on the same LSTM weights; dropout, the NNX
optimizer step, and the errors a user meets.

The cases form a covering design, not a product: every framework, engine, cell (and a user cell
with only the RecurrentCell protocol) and option appears at least once."""

import dataclasses
import importlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.errors import FlaxError
from flax.linen.recurrent import flip_sequences
from helpers import assert_trees_close, randomize

import lstmjax
from lstmjax.convert import lstm_from_flax
from lstmjax.layers import flip_within_lengths
from lstmjax.regularizers import RecurrentDropout, WeightDrop, Zoneout

B, T, IN = 3, 5, 4  # batch, steps, input features (I)


@dataclasses.dataclass(frozen=True)
class LeakyCell:
    """A user cell with only :class:`lstmjax.RecurrentCell`'s methods (no layer weights):
    ``h' = (1 - s) * h + s * tanh(x @ w + h @ u)``, ``s = sigmoid(a)``."""

    hidden_size: int
    dtype: Any = jnp.float32

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def param_shapes(self, input_size):
        hidden = self.hidden_size
        return {"w": (input_size, hidden), "u": (hidden, hidden), "a": (hidden,)}

    def init(self, key, input_size):
        return {name: jax.random.normal(k, shape) for (name, shape), k in
                zip(self.param_shapes(input_size).items(), jax.random.split(key, 3))}

    def zero_carry(self, batch_size):
        return jnp.zeros((batch_size, self.hidden_size))

    def step(self, params, carry, x):
        share = jax.nn.sigmoid(params["a"])[None]
        h = (1 - share) * carry + share * jnp.tanh(x @ params["w"] + carry @ params["u"])
        return h, h


CELL_MAKERS = {**{name: lambda cls=cls: cls(4) for name, cls in lstmjax.CELLS.items()},
               "lstm_proj": lambda: lstmjax.LSTM(4, proj_size=3, use_peepholes=True),
               "user": lambda: LeakyCell(3)}


def add(ys_forward, ys_backward):
    """A merge other than the default."""
    return ys_forward + ys_backward


# --- one way to build and run each framework's modules, and to read their cells' parameters ---


def framework(name):
    if name == "equinox":
        pytest.importorskip("equinox")
    return importlib.import_module(f"lstmjax.{name}")


def make_rnn(name, cell, in_features, seed, **options):
    module = framework(name)
    if name == "nnx":
        return module.RNN(cell, in_features, rngs=nnx.Rngs(seed), **options)
    if name == "linen":
        return module.RNN(cell, **options)
    return module.RNN(cell, in_features, key=jax.random.key(seed), **options)


def make_stack(name, layers, dropout, seed=0):
    if name == "nnx":
        return framework(name).Stack(layers, dropout, rngs=nnx.Rngs(dropout=seed))
    return framework(name).Stack(layers, dropout)


def functional(name, module, xs, rng, **init_kwargs):
    """``(tree, apply, cell_params)``: the module's parameters (random), ``apply(tree, *args,
    **kwargs)`` calls the module with them, ``cell_params(tree)`` gives the arguments of
    run_layer / run_bidirectional / run_stack, read from the framework's own structures."""
    if name == "nnx":
        graphdef, params, rest = nnx.split(module, nnx.Param, ...)

        def merged(tree):
            return nnx.merge(graphdef, tree, rest)

        def read(m):
            if hasattr(m, "layers"):
                return [read(layer) for layer in m.layers]
            if hasattr(m, "forward"):
                return read(m.forward), read(m.backward)
            return {k: p[...] for k, p in m.params.items()}

        return (randomize(params, rng), lambda tree, *a, **k: merged(tree)(*a, **k),
                lambda tree: read(merged(tree)))
    if name == "linen":
        variables = module.init(jax.random.key(0), xs, **init_kwargs)

        def read(m, tree):
            if hasattr(m, "layers"):
                return [read(layer, tree[f"layers_{i}"]) for i, layer in enumerate(m.layers)]
            if hasattr(m, "forward"):
                return read(m.forward, tree["forward"]), read(m.backward, tree["backward"])
            return tree["cell"]

        return (randomize(variables["params"], rng),
                lambda tree, *a, **k: module.apply({"params": tree}, *a, **k),
                lambda tree: read(module, tree))
    import equinox as eqx

    arrays, static = eqx.partition(module, eqx.is_inexact_array)

    def read(m):
        if hasattr(m, "layers"):
            return [read(layer) for layer in m.layers]
        if hasattr(m, "forward"):
            return read(m.forward), read(m.backward)
        return m.params

    return (randomize(arrays, rng), lambda tree, *a, **k: eqx.combine(tree, static)(*a, **k),
            lambda tree: read(eqx.combine(tree, static)))


def outputs_and_grads(f, tree, xs):
    """``(f(tree, xs), grads)`` of a loss that weighs every output and carry leaf differently."""
    def loss(tree, xs):
        out = f(tree, xs)
        total = sum(jnp.sum(leaf * jnp.cos(1.3 * jnp.arange(leaf.size, dtype=leaf.dtype))
                            .reshape(leaf.shape)) for leaf in jax.tree.leaves(out))
        return total, out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(tree, xs)
    return out, grads


def random_options(rng, *, time_major, lengths, resets):
    """xs ``[B, T, IN]`` (``[T, B, IN]`` if time_major) and the optional lengths and resets."""
    xs = jnp.asarray(rng.normal(size=(T, B, IN) if time_major else (B, T, IN)), jnp.float32)
    options = {"seq_lengths": jnp.asarray([T, 2, 0][:B], jnp.int32) if lengths else None}
    if resets:
        marks = rng.random((T, B) if time_major else (B, T)) < 0.3
        options["resets"] = jnp.asarray(marks)
    return xs, options


def assert_module_equals(name, module, reference, rng, xs, call, **init_kwargs):
    """``module(xs, return_carry=True, **call)`` equals ``reference(cell_params, xs)``: outputs,
    final carries, gradients with respect to the module's parameters and to ``xs``."""
    tree, apply, cell_params = functional(name, module, xs, rng, **init_kwargs)
    out, grads = outputs_and_grads(
        lambda tree, xs: apply(tree, xs, return_carry=True, **call), tree, xs)
    expected, expected_grads = outputs_and_grads(
        lambda tree, xs: reference(cell_params(tree), xs), tree, xs)
    assert_trees_close(out, expected, err_msg="outputs")
    assert_trees_close(grads, expected_grads, err_msg="gradients")


# --- RNN ------------------------------------------------------------------------------------

RNN_CASES = [  # framework, engine, cell, time_major, reverse, keep_order, lengths, resets, carry
    ("nnx", "scan", "lstm", False, False, False, True, False, True),
    ("nnx", "fused", "gru", True, True, False, True, True, False),
    ("linen", "static", "rnn", False, True, True, False, True, True),
    ("linen", "native", "ln_lstm", False, True, False, True, False, False),
    ("equinox", "cudnn", "lstm_proj", True, False, False, True, True, True),
    ("equinox", "auto", "user", False, True, False, False, False, True),
]


@pytest.mark.parametrize(
    "name, engine, cell_name, time_major, reverse, keep_order, lengths, resets, carry", RNN_CASES)
def test_rnn_equals_run_layer(name, engine, cell_name, time_major, reverse, keep_order, lengths,
                              resets, carry, rng):
    cell = CELL_MAKERS[cell_name]()
    xs, options = random_options(rng, time_major=time_major, lengths=lengths, resets=resets)
    initial = randomize(cell.zero_carry(B), rng) if carry else None
    module = make_rnn(name, cell, IN, seed=1, engine=engine, time_major=time_major)
    call = {"reverse": reverse, "keep_order": keep_order, **options}

    def reference(params, xs):
        final, ys = lstmjax.run_layer(cell, params, initial, xs, engine=engine,
                                      lengths=options["seq_lengths"], reverse=reverse,
                                      resets=options.get("resets"), time_major=time_major)
        if reverse and not keep_order:
            ys = flip_within_lengths(ys, options["seq_lengths"], time_major=time_major)
        return final, ys

    assert_module_equals(name, module, reference, rng, xs, {"initial_carry": initial, **call})


def test_flip_within_lengths_is_flax_flip_sequences(rng):
    ys = jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32)
    lengths = jnp.asarray([T, 0, 3], jnp.int32)
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]  # [B, T]
    for time_major in (False, True):
        data = jnp.swapaxes(ys, 0, 1) if time_major else ys
        ours = flip_within_lengths(data, lengths, time_major=time_major)
        flax = flip_sequences(data, lengths, num_batch_dims=1, time_major=time_major)
        ours, flax = (np.swapaxes(a, 0, 1) if time_major else np.asarray(a) for a in (ours, flax))
        np.testing.assert_array_equal(ours[valid], flax[valid])
        np.testing.assert_array_equal(ours[~valid], np.asarray(ys)[~valid])  # padding stays put
    np.testing.assert_array_equal(flip_within_lengths(ys, time_major=False), ys[:, ::-1])


@pytest.mark.parametrize("reverse, keep_order", [(False, False), (True, False), (True, True)])
def test_linen_rnn_agrees_with_flax_rnn(reverse, keep_order, rng):
    """Same LSTM weights (lstm_from_flax), same carry: equal outputs at the valid steps (zeros at
    the padded ones here) and equal final carries."""
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)
    lengths = jnp.asarray([T, 2, 4], jnp.int32)
    flax_rnn = nn.RNN(nn.LSTMCell(3))
    flax_params = randomize(flax_rnn.init(jax.random.key(0), xs)["params"], rng)
    cell, params = lstm_from_flax(flax_params["cell"])
    carry = randomize(cell.zero_carry(B), rng)
    options = {"seq_lengths": lengths, "reverse": reverse, "keep_order": keep_order,
               "return_carry": True}
    ours = lstmjax.linen.RNN(cell, engine="scan")
    final, ys = jax.jit(lambda p: ours.apply({"params": {"cell": p}}, xs, tuple(carry),
                                             **options))(params)
    flax_final, flax_ys = jax.jit(lambda p: flax_rnn.apply(
        {"params": p}, xs, initial_carry=tuple(carry), **options))(flax_params)
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(flax_ys)[valid], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ys)[~valid], 0.0)
    assert_trees_close(tuple(final), tuple(flax_final), err_msg="final carry")


def test_linen_bidirectional_agrees_with_flax_bidirectional(rng):
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)
    lengths = jnp.asarray([3, T, 1], jnp.int32)
    flax_bi = nn.Bidirectional(nn.RNN(nn.LSTMCell(3)), nn.RNN(nn.LSTMCell(3)))
    flax_params = randomize(flax_bi.init(jax.random.key(0), xs)["params"], rng)
    (cell, fw), (_, bw) = (lstm_from_flax(flax_params[n]["cell"])
                           for n in ("forward_rnn", "backward_rnn"))
    ours = lstmjax.linen.Bidirectional(lstmjax.linen.RNN(cell), lstmjax.linen.RNN(cell))
    params = {"forward": {"cell": fw}, "backward": {"cell": bw}}
    final, ys = ours.apply({"params": params}, xs, seq_lengths=lengths, return_carry=True)
    flax_final, flax_ys = flax_bi.apply({"params": flax_params}, xs, seq_lengths=lengths,
                                        return_carry=True)
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(flax_ys)[valid], rtol=1e-5,
                               atol=1e-6)
    assert_trees_close(jax.tree.leaves(final), jax.tree.leaves(flax_final), err_msg="carries")


# --- Bidirectional and Stack -------------------------------------------------------------------

BIDIRECTIONAL_CASES = [  # framework, engine, time_major, merge, lengths, resets, carry
    ("nnx", "static", False, add, True, True, False),
    ("linen", "fused", True, lstmjax.layers.concatenate, False, True, True),
    ("equinox", "native", False, add, True, False, True),
]


@pytest.mark.parametrize("name, engine, time_major, merge, lengths, resets, carry",
                         BIDIRECTIONAL_CASES)
def test_bidirectional_equals_run_bidirectional(name, engine, time_major, merge, lengths, resets,
                                                carry, rng):
    cells = (lstmjax.LSTM(3), lstmjax.GRU(3))
    xs, options = random_options(rng, time_major=time_major, lengths=lengths, resets=resets)
    initial = tuple(randomize(c.zero_carry(B), rng) for c in cells) if carry else None
    layers = [make_rnn(name, c, IN, seed, engine=engine, time_major=time_major)
              for seed, c in enumerate(cells)]
    module = framework(name).Bidirectional(*layers, merge=merge)

    def reference(params, xs):
        return lstmjax.run_bidirectional(cells, params, initial, xs, engine=engine,
                                         lengths=options["seq_lengths"],
                                         resets=options.get("resets"), merge=merge,
                                         time_major=time_major)

    assert_module_equals(name, module, reference, rng, xs, {"initial_carry": initial, **options})


STACK_CASES = [  # framework, engine, time_major, lengths, resets, carry
    ("nnx", "auto", False, True, False, True),
    ("linen", "scan", False, False, True, False),
    ("equinox", "fused", True, True, True, False),
]


@pytest.mark.parametrize("name, engine, time_major, lengths, resets, carry", STACK_CASES)
def test_stack_in_eval_mode_equals_run_stack(name, engine, time_major, lengths, resets, carry,
                                             rng):
    """[RNN(LSTM), Bidirectional(GRU, RNN), RNN(LN-LSTM)] with dropout 0.5 switched off."""
    cells = [lstmjax.LSTM(3), (lstmjax.GRU(2), lstmjax.SimpleRNN(2)), lstmjax.LayerNormLSTM(2)]
    xs, options = random_options(rng, time_major=time_major, lengths=lengths, resets=resets)
    initial = [None, tuple(randomize(c.zero_carry(B), rng) for c in cells[1]),
               randomize(cells[2].zero_carry(B), rng)] if carry else None

    def rnn(cell, in_features, seed):
        return make_rnn(name, cell, in_features, seed, engine=engine, time_major=time_major)

    layers = [rnn(cells[0], IN, 0),
              framework(name).Bidirectional(rnn(cells[1][0], 3, 1), rnn(cells[1][1], 3, 2)),
              rnn(cells[2], 4, 3)]
    module = make_stack(name, layers, dropout=0.5)
    off = {"nnx": {}, "linen": {"deterministic": True}, "equinox": {"inference": True}}[name]
    if name == "nnx":
        module.eval()

    def reference(params, xs):
        return lstmjax.run_stack(cells, params, initial, xs, engine=engine,
                                 lengths=options["seq_lengths"], resets=options.get("resets"),
                                 time_major=time_major)

    assert_module_equals(name, module, reference, rng, xs,
                         {"initial_carry": initial, **options, **off}, **off)


@pytest.mark.parametrize("name", ["nnx", "linen", "equinox"])
def test_stack_dropout_between_layers_only(name, rng):
    """Training mode draws masks between layers; after the last layer there is none."""
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)

    def stack(num_layers):
        layers = [make_rnn(name, lstmjax.SimpleRNN(4), IN, seed) for seed in range(num_layers)]
        return make_stack(name, layers, dropout=0.5, seed=7)

    def train_and_eval(module):
        if name == "nnx":
            module.train()
            train = module(xs)
            module.eval()
            return train, module(xs)
        if name == "linen":
            variables = module.init(jax.random.key(0), xs, deterministic=True)
            return (module.apply(variables, xs, deterministic=False,
                                 rngs={"dropout": jax.random.key(1)}),
                    module.apply(variables, xs, deterministic=True))
        return module(xs, key=jax.random.key(1)), module(xs, inference=True)

    train, evaluate = train_and_eval(stack(2))
    assert not np.allclose(train, evaluate)
    train, evaluate = train_and_eval(stack(1))
    np.testing.assert_array_equal(train, evaluate)


# --- regularizer cells: a key in training, none in evaluation --------------------------------


def regularized_cell():
    return Zoneout(RecurrentDropout(WeightDrop(lstmjax.LSTM(4), 0.3), 0.3), 0.2, 0.1)


def forked_dropout_keys(seed, count):
    """The keys an NNX module built with ``nnx.Rngs(dropout=seed)`` draws from its fork of the
    ``"dropout"`` stream, as ``nnx.Dropout`` keeps it."""
    stream = nnx.Rngs(dropout=seed).dropout.fork()
    return [stream() for _ in range(count)]


@pytest.mark.parametrize("name", ["nnx", "linen", "equinox"])
def test_rnn_over_a_regularizer_cell_draws_a_key_in_training_only(name, rng):
    """Training equals run_layer with the key the framework draws (NNX: the module's fork of the
    "dropout" stream, a new key per call; Linen: make_rng("dropout"); Equinox: the call's key);
    evaluation equals run_layer without a key."""
    cell = regularized_cell()
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)
    carry = randomize(cell.zero_carry(B), rng)
    if name == "nnx":
        module = lstmjax.nnx.RNN(cell, IN, rngs=nnx.Rngs(params=0, dropout=1))
        params, keys = module.cell_params(), forked_dropout_keys(1, 2)
        trains = [module(xs, carry)]
        module.eval()
        evaluate = module(xs, carry)
        module.train()
        trains.append(module(xs, carry))
    elif name == "linen":
        module = lstmjax.linen.RNN(cell)
        variables = module.init(jax.random.key(0), xs, deterministic=True)
        params, rngs = variables["params"]["cell"], {"dropout": jax.random.key(1)}
        keys = [module.apply(variables, rngs=rngs, method=lambda m: m.make_rng("dropout"))]
        trains = [module.apply(variables, xs, carry, deterministic=False, rngs=rngs)]
        evaluate = module.apply(variables, xs, carry, deterministic=True)
    else:
        eqx = pytest.importorskip("equinox")
        module = make_rnn(name, cell, IN, 0)
        params, keys = module.params, [jax.random.key(1)]
        trains = [module(xs, carry, key=keys[0])]
        evaluate = eqx.nn.inference_mode(module)(xs, carry)
        assert_trees_close(module(xs, carry, inference=True), evaluate, err_msg="inference=True")

    def reference(key):
        return lstmjax.run_layer(cell, params, carry, xs, key=key, time_major=False)[1]

    for index, (train, key) in enumerate(zip(trains, keys, strict=True)):
        assert_trees_close(train, reference(key), err_msg=f"training call {index}")
    assert_trees_close(evaluate, reference(None), err_msg="evaluation")
    assert not np.allclose(trains[0], evaluate)


def test_nnx_stack_passes_each_layer_its_key(rng):
    """In training each layer draws its key from its own stream (a Bidirectional from its
    regularized direction's) and the between-layer dropout from the Stack's; in evaluation no
    keys and no dropout."""
    make = lstmjax.nnx.RNN
    layers = [make(regularized_cell(), IN, rngs=nnx.Rngs(params=0, dropout=1)),
              lstmjax.nnx.Bidirectional(
                  make(lstmjax.LSTM(3), 4, rngs=nnx.Rngs(2)),
                  make(RecurrentDropout(lstmjax.GRU(3), 0.5), 4, rngs=nnx.Rngs(params=3, dropout=4)))]
    stack = lstmjax.nnx.Stack(layers, 0.5, rngs=nnx.Rngs(dropout=5))
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)
    cells, params = [layer.cell for layer in layers], [layer.cell_params() for layer in layers]
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=5))
    keys = [forked_dropout_keys(1, 1)[0], forked_dropout_keys(4, 1)[0]]
    train = stack(xs)
    expected = lstmjax.run_stack(cells, params, None, xs, keys=keys, time_major=False,
                                 between=lambda layer, ys: drop(ys))[1]
    assert_trees_close(train, expected, err_msg="training")
    stack.eval()
    evaluate = stack(xs)
    assert_trees_close(evaluate, lstmjax.run_stack(cells, params, None, xs, time_major=False)[1],
                       err_msg="evaluation")
    assert not np.allclose(train, evaluate)



@pytest.mark.parametrize("name", ["linen", "equinox"])
def test_stack_over_regularizer_cells_keys(name, rng):
    """Linen: each layer's key is the Stack's next make_rng("dropout"); Equinox: the call's key
    split in two, the second half split into one key per layer. Evaluation: no keys."""
    cells = [regularized_cell(), RecurrentDropout(lstmjax.GRU(3), 0.5)]
    stack = make_stack(name, [make_rnn(name, cells[0], IN, 0), make_rnn(name, cells[1], 4, 1)], 0.0)
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)
    if name == "linen":
        variables = stack.init(jax.random.key(0), xs, deterministic=True)
        params = [variables["params"][f"layers_{i}"]["cell"] for i in range(2)]
        rngs = {"dropout": jax.random.key(1)}
        keys = stack.apply(variables, rngs=rngs, method=lambda m: [
            m.make_rng("dropout") for _ in range(2)])
        train = stack.apply(variables, xs, deterministic=False, rngs=rngs)
        evaluate = stack.apply(variables, xs, deterministic=True)
    else:
        eqx = pytest.importorskip("equinox")
        params = [layer.params for layer in stack.layers]
        keys = list(jax.random.split(jax.random.split(jax.random.key(1))[1], 2))
        train = stack(xs, key=jax.random.key(1))
        evaluate = eqx.nn.inference_mode(stack)(xs)

    def reference(keys):
        return lstmjax.run_stack(cells, params, None, xs, keys=keys, time_major=False)[1]

    assert_trees_close(train, reference(keys), err_msg="training")
    assert_trees_close(evaluate, reference(None), err_msg="evaluation")
    assert not np.allclose(train, evaluate)

# --- framework idioms ----------------------------------------------------------------------


def test_nnx_optimizer_step_under_nnx_jit(rng):
    """One SGD step of nnx.Optimizer under nnx.jit moves every Param by -lr * its gradient."""
    model = make_stack("nnx", [make_rnn("nnx", lstmjax.LSTM(3), IN, 0, engine="fused"),
                               make_rnn("nnx", lstmjax.GRU(2), 3, 1, engine="fused")], 0.25)
    model.eval()
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(B, T, 2)), jnp.float32)

    def loss(model):
        return jnp.mean(jnp.square(model(xs) - target))

    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))  # a copy, not a view
    grads = nnx.grad(loss)(model)

    @nnx.jit
    def train_step(model, optimizer):
        optimizer.update(model, nnx.grad(loss)(model))

    train_step(model, optimizer)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, before, grads)
    assert_trees_close(nnx.state(model, nnx.Param), expected, err_msg="after one step")


def test_equinox_filter_jit_and_filter_grad(rng):
    eqx = pytest.importorskip("equinox")
    model = make_rnn("equinox", lstmjax.LSTM(3), IN, 0, engine="scan")
    xs = jnp.asarray(rng.normal(size=(B, T, IN)), jnp.float32)

    @eqx.filter_jit
    @eqx.filter_grad
    def grads(model):
        return jnp.sum(jnp.square(model(xs, reverse=True)))

    expected = jax.grad(lambda p: jnp.sum(jnp.square(lstmjax.run_layer(
        model.cell, p, None, xs, reverse=True, time_major=False)[1])))(model.params)
    assert_trees_close(grads(model).params, expected, err_msg="filter_grad")


# --- errors --------------------------------------------------------------------------------


def _raises(name, build, match):
    return pytest.param(name, build, match, id=match.split()[0])


def _nnx_rnn(cell, in_features=IN, **options):
    return make_rnn("nnx", cell, in_features, 0, **options)


def _eqx_rnn(cell, in_features=IN, **options):
    return make_rnn("equinox", cell, in_features, 0, **options)


ERRORS = [
    _raises("nnx", lambda: _nnx_rnn(nn.LSTMCell(3)), "lstmjax cell"),
    _raises("linen", lambda: lstmjax.linen.RNN(lstmjax.LSTM(3), engine="fast"),
            "engine must be one of"),
    _raises("equinox", lambda: _eqx_rnn(lstmjax.LSTM(3), 0), "in_features must be"),
    _raises("nnx", lambda: _nnx_rnn(lstmjax.LSTM(3))(jnp.ones((B, T, IN + 1))),
            "in_features=4"),
    _raises("equinox", lambda: _eqx_rnn(lstmjax.GRU(3))(jnp.ones((B, T, 2))), "in_features=4"),
    _raises("linen", lambda: lstmjax.linen.RNN(lstmjax.LSTM(3)).apply(
        lstmjax.linen.RNN(lstmjax.LSTM(3)).init(jax.random.key(0), jnp.ones((B, T, IN))),
        jnp.ones((B, T, IN + 1))), 'parameter "cell"'),
    _raises("nnx", lambda: lstmjax.nnx.Bidirectional(
        _nnx_rnn(lstmjax.LSTM(3)), _nnx_rnn(lstmjax.LSTM(3), engine="scan")), "share one engine"),
    _raises("nnx", lambda: lstmjax.nnx.Bidirectional(
        _nnx_rnn(lstmjax.LSTM(3)), _nnx_rnn(lstmjax.LSTM(3), 2)), "share one in_features"),
    _raises("nnx", lambda: lstmjax.nnx.Bidirectional(_nnx_rnn(lstmjax.LSTM(3)), lstmjax.LSTM(3)),
            "backward must be an lstmjax.nnx.RNN, got LSTM"),
    _raises("equinox", lambda: make_stack("equinox", [lstmjax.LSTM(3)], 0.0),
            "Stack layer 0 must be an lstmjax.equinox.RNN or Bidirectional, got LSTM"),
    _raises("equinox", lambda: make_stack("equinox", [
        _eqx_rnn(lstmjax.LSTM(3)), _eqx_rnn(lstmjax.LSTM(3), 3, time_major=True)], 0.0),
        "share one time_major"),
    _raises("equinox", lambda: make_stack("equinox", [
        _eqx_rnn(lstmjax.LSTM(3)), _eqx_rnn(lstmjax.LSTM(3), 4)], 0.0), "layer 1 has"),
    _raises("linen", lambda: lstmjax.linen.Stack([
        lstmjax.linen.Bidirectional(lstmjax.linen.RNN(lstmjax.LSTM(3)),
                                    lstmjax.linen.RNN(lstmjax.LSTM(3)), merge=add),
        lstmjax.linen.Bidirectional(lstmjax.linen.RNN(lstmjax.LSTM(3)),
                                    lstmjax.linen.RNN(lstmjax.LSTM(3)))]).init(
        jax.random.key(0), jnp.ones((B, T, IN))), "share one merge"),
    _raises("linen", lambda: lstmjax.linen.Stack([lstmjax.linen.RNN(lstmjax.LSTM(3))], 0.5).init(
        jax.random.key(0), jnp.ones((B, T, IN))), "deterministic=False"),
    _raises("nnx", lambda: lstmjax.nnx.Stack([_nnx_rnn(lstmjax.LSTM(3))], 0.5), "rngs"),
    _raises("linen", lambda: lstmjax.linen.RNN(regularized_cell()).init(
        jax.random.key(0), jnp.ones((B, T, IN))), "over a regularizer cell needs"),
    _raises("nnx", lambda: lstmjax.nnx.RNN(regularized_cell(), IN, rngs=nnx.Rngs(params=0)),
            "'dropout' stream"),
    _raises("equinox", lambda: _eqx_rnn(regularized_cell())(jnp.ones((B, T, IN))),
            "key= in training"),
    _raises("nnx", lambda: make_stack("nnx", [_nnx_rnn(lstmjax.LSTM(3))], 1.0),
            "drop probability"),
]


@pytest.mark.parametrize("name, build, match", ERRORS)
def test_bad_arguments_name_the_problem(name, build, match):
    framework(name)
    with pytest.raises(Exception, match=match) as error:
        build()
    assert isinstance(error.value, ValueError | FlaxError)
