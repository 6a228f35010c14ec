"""The tools people would use instead of lstmjax, each training the benchmark's model, and lstmjax.

Every runner trains the same math on a fixed random batch (:func:`make_batch`): a token embedding
``[V, H]`` (E = H), ``shape.num_layers`` stacked LSTM layers of ``shape.hidden_size`` units, a
dense layer to V logits, softmax cross-entropy averaged over the B * T tokens, the gradients
clipped to a global norm of 5, then Adam with learning rate 1e-3. The LSTM state starts at zero and
the final state of one step is the initial state of the next, cut from the gradient (truncated
BPTT, as lstmjax's train step does).

``PEERS`` maps a row label to a factory ``factory(shape, *, precision="float32", seed=0) ->
Runner``; :func:`lstmjax_runner` and ``LSTMJAX`` build lstmjax's own rows, one per engine of the
registry (``lstmjax.engines.ENGINE_NAMES``, named by :func:`lstmjax_label`). A factory builds the
model, the optimizer, the batch and the zero state; nothing is traced or compiled before the
first ``runner.step()``, which the benchmarks time separately. A factory whose library is missing,
or that needs a GPU, raises :class:`~benchmarks.report.Unavailable` saying why, so every import
here but jax, flax, optax and lstmjax is optional.

``precision`` is ``"float32"`` (no TF32) or ``"tf32"``. The JAX rows (lstmjax, flax, jax cuDNN,
Keras on JAX) ignore it and follow ``jax_default_matmul_precision``, which the benchmark driver
sets; torch and TensorFlow runners set their own TF32 switches before every step.

Each ``runner.step`` is a :class:`TrainStep`: besides training, it gives the loss of its last step
(computed before that step's update) and host copies of the parameters, under the library's own
names, so tests can check that a peer trains the same model.

Two differences remain on purpose: each peer starts from its library's default initialization
(the tests give lstmjax a peer's initial weights and compare the first loss), and Keras's and
TF1's Adam add epsilon to the uncorrected root (see ``lstmjax.OptimConfig``), which matters only
in the first steps.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lstmjax
from benchmarks.report import Runner, Unavailable
from benchmarks.shapes import Shape
from lstmjax.build import build_trainer
from lstmjax.engines import ENGINE_NAMES
from lstmjax.model import resolve_engines

LEARNING_RATE = 1e-3
MAX_GRAD_NORM = 5.0
ADAM_EPSILON = 1e-8
PRECISIONS = ("float32", "tf32")


# ---------------------------------------------------------------------------------------------
# What all runners share.
# ---------------------------------------------------------------------------------------------


class TrainStep:
    """A runner's ``step``: ``step()`` trains one step and returns once the device is done.

    Args:
      train: runs one step, blocks until the device is done and returns its loss (any scalar
        that ``float()`` accepts; it is read only when :meth:`loss` asks).
      parameters: returns host copies of the trainable parameters, ``{name: array}``.
    """

    def __init__(self, train: Callable[[], Any], parameters: Callable[[], dict[str, np.ndarray]]):
        self._train = train
        self._parameters = parameters
        self._loss = None

    def __call__(self) -> None:
        self._loss = self._train()

    def loss(self) -> float:
        """The mean per-token loss of the last step, computed with the parameters before it."""
        if self._loss is None:
            raise RuntimeError("no step has run yet: call step() first")
        return float(self._loss)

    def parameters(self) -> dict[str, np.ndarray]:
        """Host copies of the current trainable parameters, by the library's own names."""
        return self._parameters()


def make_batch(shape: Shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed batch of every runner: ``(inputs, targets)``, each ``int32[B, T]``.

    Random token ids from ``seed``; the targets are the inputs shifted by one token.
    """
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, shape.vocab_size, (shape.batch_size, shape.seq_len + 1), np.int32)
    return tokens[:, :-1].copy(), tokens[:, 1:].copy()


def _allow_tf32(precision: str) -> bool:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "tf32"


def _flatten(tree: Any) -> dict[str, np.ndarray]:
    """``{"a/b/c": host copy}`` for the leaves of a pytree of dicts and sequences."""

    def name(path) -> str:
        return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                        for k in path)

    # np.array copies: a CPU jax array may share its buffer, which the next step donates.
    return {name(path): np.array(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _mean_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over tokens of the softmax cross-entropy, ``logits [B, T, V]``, ``targets [B, T]``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))


# ---------------------------------------------------------------------------------------------
# lstmjax itself.
# ---------------------------------------------------------------------------------------------


def lstmjax_label(engine: str, *, unroll: int = 1, remat_chunk: int | None = None) -> str:
    """The name of an lstmjax configuration: ``"scan"``, ``"scan unroll=8"``, ``"fused remat=100"``.

    A benchmark row of lstmjax is ``"lstmjax " + label``; :func:`parse_lstmjax_label` reads it back.
    """
    options = [f"unroll={unroll}"] if unroll != 1 else []
    options += [f"remat={remat_chunk}"] if remat_chunk is not None else []
    return " ".join([engine, *options])


def parse_lstmjax_label(label: str) -> dict[str, Any]:
    """``{"engine", "unroll", "remat_chunk"}`` of a :func:`lstmjax_label` (``"scan unroll=8"``).

    Raises:
      ValueError: the engine is not in ``lstmjax.engines.ENGINE_NAMES``, or an option is not
        ``unroll=K`` or ``remat=K`` with K a positive integer.
    """
    engine, *options = label.split() or [""]
    if engine not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {engine!r} in {label!r}: expected one of {ENGINE_NAMES}")
    parsed = {"engine": engine, "unroll": 1, "remat_chunk": None}
    keys = {"unroll": "unroll", "remat": "remat_chunk"}
    for option in options:
        key, _, value = option.partition("=")
        if key not in keys or not value.isdigit() or int(value) < 1:
            raise ValueError(f"unknown option {option!r} in {label!r}: expected unroll=K or "
                             "remat=K with K a positive integer")
        parsed[keys[key]] = int(value)
    return parsed


def lstmjax_labels(unroll: int) -> list[str]:
    """The lstmjax configurations every benchmark measures: each name of ``ENGINE_NAMES`` (the
    registry's engines and ``"auto"``), then ``scan`` with ``unroll`` steps per iteration."""
    return [*ENGINE_NAMES, lstmjax_label("scan", unroll=unroll)]


def lstmjax_config(shape: Shape, *, engine: str, unroll: int = 1,
                   remat_chunk: int | None = None):
    """The ``lstmjax.ModelConfig`` of the benchmark model with that engine, unroll and remat."""
    return lstmjax.ModelConfig(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
                               num_layers=shape.num_layers, engine=engine, unroll=unroll,
                               remat_chunk=remat_chunk, forget_bias=0.0)


def lstmjax_train_step(shape: Shape, *, engine: str, unroll: int = 1,
                       remat_chunk: int | None = None, seed: int = 0):
    """lstmjax's jitted train step for the benchmark model, and its first arguments.

    Returns ``(train_step, (state, carry, inputs, targets))``; the step donates state and carry.
    """
    config = lstmjax.Config(
        model=lstmjax_config(shape, engine=engine, unroll=unroll, remat_chunk=remat_chunk),
        optim=lstmjax.OptimConfig(optimizer="adam", learning_rate=LEARNING_RATE,
                                  max_grad_norm=MAX_GRAD_NORM, adam_eps=ADAM_EPSILON),
        train=lstmjax.TrainConfig(batch_size=shape.batch_size, seq_len=shape.seq_len,
                                  loss_scale="mean", seed=seed))
    trainer = build_trainer(config, steps_per_epoch=1)
    inputs, targets = (jnp.asarray(a) for a in make_batch(shape, seed))
    return trainer.train_step, (trainer.state, trainer.carry, inputs, targets)


def lstmjax_runner(shape: Shape, *, engine: str, unroll: int = 1, remat_chunk: int | None = None,
                   precision: str = "float32", seed: int = 0) -> Runner:
    """lstmjax's own train step (built by ``lstmjax.build.build_trainer``) with ``engine``,
    ``unroll`` and ``remat_chunk`` (``ModelConfig``'s). The notes say what runs
    (:func:`lstmjax_notes`).

    ``precision`` is unused: the driver's ``jax_default_matmul_precision`` governs.
    """
    del precision
    options = {"engine": engine, "unroll": unroll, "remat_chunk": remat_chunk}
    train_step, (train_state, carry, inputs, targets) = lstmjax_train_step(shape, **options,
                                                                           seed=seed)
    state = {"train": train_state, "carry": carry}

    def train():
        # The step donates the state and the carry: keep the ones it returns.
        state["train"], state["carry"], metrics = train_step(
            state["train"], state["carry"], inputs, targets)
        jax.block_until_ready((state["train"], state["carry"], metrics))
        return metrics["loss"]

    return Runner(f"lstmjax {lstmjax_label(**options)}",
                  TrainStep(train, lambda: _flatten(state["train"].params)),
                  lstmjax_notes(shape, **options))


def lstmjax_notes(shape: Shape, **options: Any) -> str:
    """``engine=...`` (and ``unroll=``, ``remat=``) as asked, then, where ``resolve_engines``
    does not just run the request (``"auto"``, a fallback), the engine each layer runs and why."""
    config = lstmjax_config(shape, **options)
    notes = [f"engine={config.engine}"]
    notes += [f"unroll={config.unroll}"] if config.unroll != 1 else []
    notes += [f"remat={config.remat_chunk}"] if config.remat_chunk is not None else []
    choices = resolve_engines(config, batch_size=shape.batch_size, seq_len=shape.seq_len)
    notes += [f"runs {choice.engine} unroll={choice.unroll} ({choice.reason})"
              for choice in dict.fromkeys(choices) if choice.reason != "requested"]
    return ", ".join(notes)


LSTMJAX_UNROLL = 8  # the unroll of LSTMJAX's unrolled scan row
LSTMJAX: dict[str, Callable[..., Runner]] = {
    f"lstmjax {label}": functools.partial(lstmjax_runner, **parse_lstmjax_label(label))
    for label in lstmjax_labels(LSTMJAX_UNROLL)
}
"""lstmjax's rows, ``"lstmjax <label>"`` for each of :func:`lstmjax_labels`, as factories."""


# ---------------------------------------------------------------------------------------------
# JAX peers: flax nn.RNN and jax.experimental.rnn (cuDNN), trained by one jitted optax step.
# ---------------------------------------------------------------------------------------------


class FlaxRNNLanguageModel(nn.Module):
    """The model in flax's own layers: ``nn.Embed``, L x ``nn.RNN(nn.OptimizedLSTMCell)``,
    ``nn.Dense``.

    ``__call__(tokens: int[B, T], carry) -> (logits: float[B, T, V], carry)``, where ``carry``
    holds one flax LSTM carry ``(c: [B, H], h: [B, H])`` per layer.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int

    @nn.compact
    def __call__(self, tokens: jax.Array, carry: tuple[tuple[jax.Array, jax.Array], ...]):
        x = nn.Embed(self.vocab_size, self.hidden_size, name="embedding")(tokens)  # [B, T, H]
        final_carry = []
        for layer in range(self.num_layers):
            cell = nn.OptimizedLSTMCell(self.hidden_size, name=f"lstm_{layer}")
            layer_carry, x = nn.RNN(cell, return_carry=True)(x, initial_carry=carry[layer])
            final_carry.append(layer_carry)
        return nn.Dense(self.vocab_size, name="head")(x), tuple(final_carry)


class CudnnLanguageModel(nn.Module):
    """The model with ``jax.experimental.rnn.lstm`` (cuDNN) for the whole LSTM stack.

    ``__call__(tokens: int[B, T], carry) -> (logits: float[B, T, V], carry)``, where ``carry`` is
    ``(h: [L, B, H], c: [L, B, H])``. The ``lstm`` parameter is cuDNN's packed weight vector
    (layout in the ``jax.experimental.rnn`` docstring: per layer W_ih, W_hh, then the biases;
    gates i, f, g, o), initialized by ``init_lstm_weight``.

    Attributes:
      lstm: ``jax.experimental.rnn.lstm``, or a function with its signature (the tests run the
        model on a CPU with one built on ``lstm_ref``).
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    lstm: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]

    @nn.compact
    def __call__(self, tokens: jax.Array, carry: tuple[jax.Array, jax.Array]):
        from jax.experimental import rnn

        size, layers = self.hidden_size, self.num_layers
        x = nn.Embed(self.vocab_size, size, name="embedding")(tokens)  # [B, T, H]
        weights = self.param(
            "lstm", lambda key: rnn.init_lstm_weight(key, size, size, layers, False))
        batch_size, seq_len = tokens.shape
        seq_lengths = jnp.full((batch_size,), seq_len, jnp.int32)
        h, c = carry
        # precision is left to its default, None: jax_default_matmul_precision decides TF32.
        y, h, c = self.lstm(x, h, c, weights, seq_lengths, input_size=size, hidden_size=size,
                            num_layers=layers, dropout=0.0, bidirectional=False)  # y: [B, T, H]
        return nn.Dense(self.vocab_size, name="head")(y), (h, c)


def _jax_runner(name: str, module: nn.Module, carry: Any, shape: Shape, seed: int,
                notes: str) -> Runner:
    """A runner for a flax ``module(tokens, carry) -> (logits, carry)``: optax clip + Adam, one
    ``jax.jit`` train step that donates parameters, optimizer state and carry."""
    inputs, targets = (jnp.asarray(a) for a in make_batch(shape, seed))
    params = module.init(jax.random.key(seed), inputs, carry)["params"]
    optimizer = optax.chain(optax.clip_by_global_norm(MAX_GRAD_NORM),
                            optax.adam(LEARNING_RATE, eps=ADAM_EPSILON))

    def objective(params, carry, inputs, targets):
        logits, carry = module.apply({"params": params}, inputs, carry)
        return _mean_cross_entropy(logits, targets), carry

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def train_step(params, opt_state, carry, inputs, targets):
        carry = jax.lax.stop_gradient(carry)
        (loss, carry), grads = jax.value_and_grad(objective, has_aux=True)(
            params, carry, inputs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, carry, loss

    state = {"params": params, "opt_state": optimizer.init(params), "carry": carry}

    def train():
        state["params"], state["opt_state"], state["carry"], loss = train_step(
            state["params"], state["opt_state"], state["carry"], inputs, targets)
        return jax.block_until_ready(loss)  # the step's outputs are ready together

    return Runner(name, TrainStep(train, lambda: _flatten(state["params"])), notes)


def flax_rnn(shape: Shape, *, precision: str = "float32", seed: int = 0) -> Runner:
    """flax ``nn.RNN(nn.OptimizedLSTMCell)`` (``nn.scan`` inside). ``precision`` is unused (the
    driver's ``jax_default_matmul_precision`` governs)."""
    del precision
    size = (shape.batch_size, shape.hidden_size)
    # Separate zero arrays: the train step donates every leaf of the carry.
    carry = tuple((jnp.zeros(size), jnp.zeros(size)) for _ in range(shape.num_layers))
    module = FlaxRNNLanguageModel(shape.vocab_size, shape.hidden_size, shape.num_layers)
    return _jax_runner("flax nn.RNN", module, carry, shape, seed, "OptimizedLSTMCell, nn.scan")


def jax_cudnn(shape: Shape, *, precision: str = "float32", seed: int = 0) -> Runner:
    """``jax.experimental.rnn.lstm``: cuDNN's fused multi-layer LSTM, GPU only. ``precision`` is
    unused (the driver's ``jax_default_matmul_precision`` decides cuDNN's TF32)."""
    del precision
    if jax.default_backend() != "gpu":
        raise Unavailable("needs a GPU (cuDNN)")
    from jax.experimental import rnn

    return _jax_cudnn(shape, lstm=rnn.lstm, seed=seed)


def _jax_cudnn(shape: Shape, *, lstm: Callable, seed: int, notes: str = "cuDNN") -> Runner:
    """:func:`jax_cudnn` with ``lstm`` given (the tests pass a CPU stand-in: ``lstm_ref``)."""
    size = (shape.num_layers, shape.batch_size, shape.hidden_size)
    carry = (jnp.zeros(size), jnp.zeros(size))
    module = CudnnLanguageModel(shape.vocab_size, shape.hidden_size, shape.num_layers, lstm)
    return _jax_runner("jax cuDNN", module, carry, shape, seed, notes)


# ---------------------------------------------------------------------------------------------
# torch.nn.LSTM
# ---------------------------------------------------------------------------------------------


def torch_lstm(shape: Shape, *, precision: str = "float32", seed: int = 0) -> Runner:
    """``torch.nn.LSTM(H, H, L, batch_first=True)`` between ``nn.Embedding`` and ``nn.Linear``;
    ``clip_grad_norm_`` and ``torch.optim.Adam``. On CUDA (cuDNN) when available, else on the CPU.

    ``precision`` sets ``torch.backends.cuda.matmul.allow_tf32`` and
    ``torch.backends.cudnn.allow_tf32`` before every step (``"tf32"``: True).
    """
    allow_tf32 = _allow_tf32(precision)
    try:
        import torch
    except ImportError as error:
        raise Unavailable(f"torch cannot be imported ({error})") from error
    import torch.nn.functional as F

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    vocab, hidden = shape.vocab_size, shape.hidden_size
    with torch.random.fork_rng(devices=[]):  # seeded, leaving the global generator as it was
        torch.manual_seed(seed)
        modules = torch.nn.ModuleDict({
            "embedding": torch.nn.Embedding(vocab, hidden),
            "lstm": torch.nn.LSTM(hidden, hidden, shape.num_layers, batch_first=True),
            "head": torch.nn.Linear(hidden, vocab),
        })
    modules.to(device)
    modules.train()
    optimizer = torch.optim.Adam(modules.parameters(), lr=LEARNING_RATE, eps=ADAM_EPSILON)
    inputs, targets = (torch.from_numpy(a).long().to(device) for a in make_batch(shape, seed))
    zeros = (shape.num_layers, shape.batch_size, hidden)
    state = {"hidden": (torch.zeros(zeros, device=device), torch.zeros(zeros, device=device))}

    def train():
        _set_torch_tf32(torch, allow_tf32)
        optimizer.zero_grad(set_to_none=True)
        y, hidden_out = modules["lstm"](modules["embedding"](inputs), state["hidden"])
        logits = modules["head"](y)  # [B, T, V]
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        state["hidden"] = tuple(t.detach() for t in hidden_out)
        if cuda:
            torch.cuda.synchronize()
        return loss.detach()

    def parameters():
        return {k: v.detach().cpu().numpy().copy() for k, v in modules.state_dict().items()}

    notes = "cuDNN" if cuda else f"CPU kernels, {torch.get_num_threads()} threads"
    return Runner("torch nn.LSTM", TrainStep(train, parameters), notes)


def _set_torch_tf32(torch, allow: bool) -> None:
    with warnings.catch_warnings():  # newer torch may prefer its fp32_precision settings
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = allow
        torch.backends.cudnn.allow_tf32 = allow


# ---------------------------------------------------------------------------------------------
# Keras 3 on its JAX backend.
# ---------------------------------------------------------------------------------------------


def _import_or_unavailable(module: str, missing: str):
    """``import module``, or Unavailable: ``missing`` if it is not installed, else the error."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise Unavailable(missing) from error
    except Exception as error:
        raise Unavailable(f"{module} failed to import ({type(error).__name__}: {error})") from error


def _import_keras():
    """Keras 3 on the JAX backend, or Unavailable saying why not."""
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = "jax"  # read once, when keras is first imported
        keras = _import_or_unavailable("keras", "keras is not installed (pip install keras)")
    version = getattr(keras, "__version__", "0")
    if int(version.split(".")[0]) < 3:
        raise Unavailable(f"needs Keras 3 (found keras {version})")
    backend = keras.backend.backend()
    if backend != "jax":
        raise Unavailable(f"keras was already imported with the {backend!r} backend; run in a new "
                          "process (this runner sets KERAS_BACKEND=jax before importing keras)")
    return keras


def keras_lstm(shape: Shape, *, precision: str = "float32", seed: int = 0) -> Runner:
    """Keras 3 ``layers.LSTM`` (JAX backend) between ``Embedding`` and ``Dense``, trained by a
    jitted stateless step (``model.stateless_call`` and ``optimizer.stateless_apply``, as the
    Keras guide to JAX training loops) with ``Adam(global_clipnorm=5)``.

    The LSTMs use ``use_cudnn="auto"``: Keras routes them to cuDNN on a GPU when its version can
    (recent Keras 3 calls ``jax.experimental.rnn``), else to its ``lax.scan`` loop. ``precision``
    is unused (the driver's ``jax_default_matmul_precision`` governs).
    """
    del precision
    keras = _import_keras()
    batch, steps = shape.batch_size, shape.seq_len
    vocab, hidden = shape.vocab_size, shape.hidden_size
    keras.utils.set_random_seed(seed)  # Keras's way: also seeds Python's and NumPy's globals
    tokens = keras.Input(shape=(steps,), batch_size=batch, dtype="int32", name="tokens")
    states_in = [keras.Input(shape=(hidden,), batch_size=batch, name=f"{kind}_{layer}")
                 for layer in range(shape.num_layers) for kind in ("h", "c")]
    x = keras.layers.Embedding(vocab, hidden, name="embedding")(tokens)
    states_out = []
    for layer in range(shape.num_layers):
        # unit_forget_bias=False: start the forget bias at 0, as forget_bias=0.0 does.
        x, h, c = keras.layers.LSTM(hidden, return_sequences=True, return_state=True,
                                    unit_forget_bias=False, name=f"lstm_{layer}")(
            x, initial_state=states_in[2 * layer:2 * layer + 2])
        states_out += [h, c]
    logits = keras.layers.Dense(vocab, name="head")(x)
    model = keras.Model([tokens, *states_in], [logits, *states_out])
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE, epsilon=ADAM_EPSILON,
                                      global_clipnorm=MAX_GRAD_NORM)
    optimizer.build(model.trainable_variables)

    def objective(trainable, non_trainable, states, inputs, targets):
        outputs, non_trainable = model.stateless_call(
            trainable, non_trainable, [inputs, *states], training=True)
        logits, *states = outputs
        loss = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return jnp.mean(loss), (non_trainable, states)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def train_step(trainable, non_trainable, optimizer_variables, states, inputs, targets):
        states = jax.lax.stop_gradient(states)
        (loss, (non_trainable, states)), grads = jax.value_and_grad(objective, has_aux=True)(
            trainable, non_trainable, states, inputs, targets)
        trainable, optimizer_variables = optimizer.stateless_apply(
            optimizer_variables, grads, trainable)
        return trainable, non_trainable, optimizer_variables, states, loss

    inputs, targets = (jnp.asarray(a) for a in make_batch(shape, seed))
    state = {
        "trainable": [v.value for v in model.trainable_variables],
        "non_trainable": [v.value for v in model.non_trainable_variables],
        "optimizer": [v.value for v in optimizer.variables],
        "states": [jnp.zeros((batch, hidden)) for _ in states_in],
    }
    names = [getattr(v, "path", v.name) for v in model.trainable_variables]

    def train():
        (state["trainable"], state["non_trainable"], state["optimizer"], state["states"],
         loss) = train_step(state["trainable"], state["non_trainable"], state["optimizer"],
                            state["states"], inputs, targets)
        return jax.block_until_ready(loss)

    def parameters():
        return {name: np.array(value) for name, value in zip(names, state["trainable"])}

    notes = f"keras {keras.__version__}, jax backend, use_cudnn='auto'"
    return Runner("keras LSTM", TrainStep(train, parameters), notes)


# ---------------------------------------------------------------------------------------------
# TensorFlow 1 graphs: static_rnn and dynamic_rnn over BasicLSTMCell, as the PTB tutorial.
# ---------------------------------------------------------------------------------------------


def _import_tensorflow():
    """TensorFlow with the TF1 cells (``tf.compat.v1.nn.rnn_cell``), or Unavailable."""
    # TF >= 2.16 serves the TF1 cells from tf_keras only in legacy-Keras mode. TF reads this when
    # a Keras-backed module (here tf.compat.v1.nn.rnn_cell) is first used, so it works even after
    # `import tensorflow` (Keras 3 imports it); it also keeps TF from importing Keras 3 itself.
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    tf = _import_or_unavailable("tensorflow", "tensorflow is not installed")
    try:
        tf.compat.v1.nn.rnn_cell.BasicLSTMCell  # noqa: B018 (a lazy attribute: is it there?)
    except (AttributeError, ImportError) as error:
        raise Unavailable(
            f"tf.compat.v1.nn.rnn_cell.BasicLSTMCell is unavailable ({error}); TF >= 2.16 needs "
            "`pip install tf_keras` and TF_USE_LEGACY_KERAS=1 before tensorflow is imported"
        ) from error
    return tf


def tf_static_rnn(shape: Shape, *, precision: str = "float32", seed: int = 0) -> Runner:
    """TF1 graph: ``tf.compat.v1.nn.static_rnn`` (a graph of T unrolled steps)."""
    return _tf_runner(shape, static=True, precision=precision, seed=seed)


def tf_dynamic_rnn(shape: Shape, *, precision: str = "float32", seed: int = 0) -> Runner:
    """TF1 graph: ``tf.compat.v1.nn.dynamic_rnn`` (a ``tf.while_loop`` over time)."""
    return _tf_runner(shape, static=False, precision=precision, seed=seed)


@dataclasses.dataclass
class _TFGraph:
    session: Any
    train_op: Any
    loss: Any
    initial_state: Any
    final_state: Any
    variables: list[Any]


def _tf_runner(shape: Shape, *, static: bool, precision: str, seed: int) -> Runner:
    """The PTB tutorial's model (``ptb_word_lm.py``) with Adam: a ``MultiRNNCell`` of
    ``BasicLSTMCell(H, forget_bias=0.0)``, ``tf.gradients``, ``clip_by_global_norm`` and
    ``AdamOptimizer``, run by a ``Session`` that feeds the state back as the tutorial does.

    The graph is built at the first step (building is TF's trace, and static_rnn's grows with T).
    ``precision`` sets ``tf.config.experimental.enable_tensor_float_32_execution`` before every
    step.
    """
    allow_tf32 = _allow_tf32(precision)
    tf = _import_tensorflow()
    v1 = tf.compat.v1
    batch, steps = shape.batch_size, shape.seq_len
    vocab, hidden = shape.vocab_size, shape.hidden_size
    inputs_np, targets_np = make_batch(shape, seed)
    cache: dict[str, Any] = {}

    def build() -> _TFGraph:
        graph = tf.Graph()
        graph.seed = seed  # TF1 random ops take their seeds from the graph's
        # The TF1 API is deprecated, and used on purpose: silence its notices while building.
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")
        try:
            # The scope's initializer, as in the tutorial: without one, tf_keras's cells would draw
            # from unseeded Keras initializers.
            with (graph.as_default(), warnings.catch_warnings(),
                  v1.variable_scope("Model", initializer=v1.glorot_uniform_initializer())):
                warnings.simplefilter("ignore")
                inputs, targets = tf.constant(inputs_np), tf.constant(targets_np)
                embedding = v1.get_variable("embedding", [vocab, hidden], tf.float32)
                x = tf.nn.embedding_lookup(embedding, inputs)  # [B, T, H]
                cell = v1.nn.rnn_cell.MultiRNNCell(
                    [v1.nn.rnn_cell.BasicLSTMCell(hidden, forget_bias=0.0)
                     for _ in range(shape.num_layers)], state_is_tuple=True)
                initial_state = cell.zero_state(batch, tf.float32)
                if static:
                    outputs, final_state = v1.nn.static_rnn(
                        cell, tf.unstack(x, num=steps, axis=1), initial_state=initial_state)
                    output = tf.stack(outputs, axis=1)  # [B, T, H]
                else:
                    output, final_state = v1.nn.dynamic_rnn(cell, x, initial_state=initial_state)
                softmax_w = v1.get_variable("softmax_w", [hidden, vocab], tf.float32)
                softmax_b = v1.get_variable("softmax_b", [vocab], tf.float32,
                                            initializer=v1.zeros_initializer())
                logits = v1.nn.xw_plus_b(tf.reshape(output, [-1, hidden]), softmax_w, softmax_b)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.reshape(targets, [-1]), logits=logits))
                variables = v1.trainable_variables()
                grads, _ = tf.clip_by_global_norm(tf.gradients(loss, variables), MAX_GRAD_NORM)
                optimizer = v1.train.AdamOptimizer(LEARNING_RATE, epsilon=ADAM_EPSILON)
                train_op = optimizer.apply_gradients(zip(grads, variables))
                initializer = v1.global_variables_initializer()
        finally:
            logger.setLevel(level)
        config = v1.ConfigProto()
        config.gpu_options.allow_growth = True  # share the GPU with JAX in the same process
        session = v1.Session(graph=graph, config=config)
        session.run(initializer)
        cache["state"] = session.run(initial_state)
        return _TFGraph(session, train_op, loss, initial_state, final_state, variables)

    def model() -> _TFGraph:
        if "graph" not in cache:
            cache["graph"] = build()
        return cache["graph"]

    def train():
        tf.config.experimental.enable_tensor_float_32_execution(allow_tf32)
        g = model()
        feed = {}
        for layer, (c, h) in enumerate(g.initial_state):
            feed[c], feed[h] = cache["state"][layer].c, cache["state"][layer].h
        _, loss, cache["state"] = g.session.run([g.train_op, g.loss, g.final_state], feed)
        return loss

    def parameters():
        g = model()
        return dict(zip([v.name for v in g.variables], g.session.run(g.variables)))

    kind = "static_rnn" if static else "dynamic_rnn"
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    notes = f"tf {tf.__version__}, graph mode, {kind}, {device}"
    return Runner(f"tf {kind}", TrainStep(train, parameters), notes)


PEERS: dict[str, Callable[..., Runner]] = {
    "flax nn.RNN": flax_rnn,
    "jax cuDNN": jax_cudnn,
    "torch nn.LSTM": torch_lstm,
    "keras LSTM": keras_lstm,
    "tf static_rnn": tf_static_rnn,
    "tf dynamic_rnn": tf_dynamic_rnn,
}
