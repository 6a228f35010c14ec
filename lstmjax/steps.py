"""The pure pieces of training: the train state, the jitted train and eval steps, evaluation.

``train_step(state, carry, inputs, targets) -> (state, carry, metrics)`` is pure, compiled once and
donates its state and carry; the dropout key is ``fold_in(state.rng, state.step)``, so a resumed
run draws the same masks as one that never stopped. The carry crosses windows under
``stop_gradient`` (truncated BPTT) and is reset at each epoch and for each evaluated split.
:func:`lstmjax.build.build_trainer` builds them for a config; :func:`lstmjax.train.train` runs
the loop.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstmjax import metrics as metrics_lib
from lstmjax.config import ModelConfig
from lstmjax.model import RNNLanguageModel, zero_carry
from lstmjax.optim import IterateAverage, init_average, update_average
from lstmjax.parallel import Placement


@flax.struct.dataclass
class TrainState:
    """params, optimizer state, optimizer step (int32 scalar), the run's PRNG key, and NT-ASGD's
    iterate average (:class:`lstmjax.optim.IterateAverage`; None for other optimizers, which
    leaves the checkpoint layout as it was)."""

    params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array
    average: IterateAverage | None = None


def evaluation_params(state: TrainState) -> Any:
    """The parameters to evaluate, sample and export: NT-ASGD's average (the parameters
    themselves until averaging starts), else ``state.params``."""
    return state.params if state.average is None else state.average.params


def token_losses(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Cross-entropy in nats, ``float32[B, T]``, of ``logits [B, T, V]`` against ``targets [B, T]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def activation_penalties(config: ModelConfig, intermediates: Any) -> dict[str, jax.Array]:
    """The weighted AR and TAR terms (Merity et al. 2017, sec. 4.6, as salesforce/awd-lstm-lm's
    main.py) that ``config`` turns on, as float32 scalars: ``{"ar": ar * mean(d ** 2), "tar":
    tar * mean((h[1:] - h[:-1]) ** 2)}``, means over every element.

    ``intermediates`` is :class:`~lstmjax.model.RNNLanguageModel`'s ``"intermediates"``
    collection: ``d`` its ``dropped_outputs`` and ``h`` its ``outputs``, the last layer's outputs
    after and before their dropout, time-major ``[T, B, H_out]``. TAR of a one-step window is 0.
    """
    penalties = {}
    if config.ar:
        (dropped,) = intermediates["dropped_outputs"]
        penalties["ar"] = config.ar * jnp.mean(jnp.square(dropped.astype(jnp.float32)))
    if config.tar:
        (outputs,) = intermediates["outputs"]
        change = jnp.diff(outputs.astype(jnp.float32), axis=0)  # h[1:] - h[:-1]: [T - 1, B, H_out]
        tar = jnp.mean(jnp.square(change)) if change.shape[0] else jnp.zeros((), jnp.float32)
        penalties["tar"] = config.tar * tar
    return penalties


def make_train_step(model: RNNLanguageModel, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, loss_scale: str, placement: Placement | None = None,
                    *, lr_seq_len: int | None = None):
    """The jitted ``train_step(state, carry, inputs, targets) -> (state, carry, metrics)``.

    ``inputs`` and ``targets`` are ``int32[B, T]``. ``metrics`` holds the per-token ``loss`` (the
    cross-entropy alone, comparable with validation's), the global gradient norm before clipping,
    the learning rate of this step, and the weighted ``ar`` and ``tar`` terms when the model has
    them on. The objective is the per-token cross-entropy plus those terms
    (:func:`activation_penalties`), as is (``loss_scale="mean"``) or times T
    (``"sum_over_time"``: the cross-entropy summed over time and averaged over the batch, the PTB
    recipes').

    With ``lr_seq_len`` (random BPTT, Merity et al. 2017 sec. 4.1), a window of T tokens steps
    with the learning rate scaled by ``T / lr_seq_len`` (the update scaled, which is the same for
    every optimizer of :func:`lstmjax.optim.make_optimizer`); each distinct T compiles once. A
    state with an :class:`~lstmjax.optim.IterateAverage` has it updated after the step.

    With a ``placement``, the step takes and returns the state and metrics replicated and the
    carry, inputs and targets split along B over its mesh (``lstmjax.parallel``); without one,
    wherever its arguments are.
    """

    def objective(params, carry, inputs, targets, dropout_key):
        (logits, carry), variables = model.apply(
            {"params": params}, inputs, carry, train=True, rngs={"dropout": dropout_key},
            mutable=["intermediates"])
        per_token = jnp.mean(token_losses(logits, targets))
        penalties = activation_penalties(model.config, variables["intermediates"])
        scale = inputs.shape[1] if loss_scale == "sum_over_time" else 1
        return sum(penalties.values(), per_token) * scale, (per_token, penalties, carry)

    def train_step(state: TrainState, carry, inputs, targets):
        carry = jax.lax.stop_gradient(carry)
        dropout_key = jax.random.fold_in(state.rng, state.step)
        grads, (loss, penalties, carry) = jax.grad(objective, has_aux=True)(
            state.params, carry, inputs, targets, dropout_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        lr_scale = 1.0 if lr_seq_len is None else inputs.shape[1] / lr_seq_len  # static
        if lr_scale != 1.0:
            updates = jax.tree.map(lambda u: u * lr_scale, updates)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        average = state.average
        if average is not None:
            average = update_average(average, params, step)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": jnp.asarray(schedule(state.step) * lr_scale, jnp.float32),
                   **penalties}
        new_state = state.replace(params=params, opt_state=opt_state, step=step, average=average)
        return new_state, carry, metrics

    shardings = {}
    if placement is not None:
        whole, split = placement.replicated, placement.batch_sharded
        shardings = {"in_shardings": (whole, split, split, split),
                     "out_shardings": (whole, split, whole)}
    return jax.jit(train_step, donate_argnums=(0, 1), **shardings)


@functools.partial(jax.jit, static_argnames="model")
def eval_step(model, params, carry, inputs, targets):
    """``(carry, summed loss)`` of one evaluation window: ``inputs``, ``targets`` ``int32[B, T]``;
    jitted once per model (the model is static), no dropout."""
    logits, carry = model.apply({"params": params}, inputs, carry)
    return carry, jnp.sum(token_losses(logits, targets))


def evaluate(model: RNNLanguageModel, params: Any, ids: np.ndarray, *, batch_size: int,
             seq_len: int, placement: Placement | None = None) -> dict[str, float]:
    """Mean loss, perplexity and bits per token over a whole split, the state carried through it.

    Every target of the ``batch_size`` streams is scored: the full windows, then the remainder as
    one shorter window. With ``batch_size=1`` the result does not depend on ``seq_len``. With a
    ``placement`` (``params`` replicated on it), the streams are split over its devices where
    their number divides ``batch_size``, else every device runs them all.
    """
    length = len(ids) // batch_size
    if length < 2:
        raise ValueError(f"the split has {len(ids)} tokens: too few for eval batch_size={batch_size}")
    streams = np.asarray(ids[: batch_size * length], np.int32).reshape(batch_size, length)
    carry = zero_carry(model.config, batch_size)
    place = np.asarray
    if placement is not None:
        carry = placement.put(carry, placement.batch(batch_size))
        place = placement.shard_batch
    total = 0.0
    for start in range(0, length - 1, seq_len):
        stop = min(start + seq_len, length - 1)
        carry, loss = eval_step(model, params, carry, place(streams[:, start:stop]),
                                place(streams[:, start + 1:stop + 1]))
        total += float(loss)
    mean = total / (batch_size * (length - 1))
    return {"loss": mean, "perplexity": metrics_lib.perplexity(mean),
            "bits_per_token": metrics_lib.bits_per_token(mean),
            "tokens": batch_size * (length - 1)}


def init_params(model: RNNLanguageModel, key: jax.Array) -> Any:
    """Fresh parameters of ``model`` drawn with ``key``."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    return model.init(key, tokens, zero_carry(model.config, 1))["params"]


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(parameter key, run key)`` of a run's ``train.seed``: the one split that fresh
    parameters (:func:`init_params`) and the train state's PRNG key come from."""
    init_key, rng = jax.random.split(jax.random.key(seed))
    return init_key, rng


def init_state(model: RNNLanguageModel, optimizer: optax.GradientTransformation, *, seed: int,
               params: Any = None, averaging: bool = False) -> TrainState:
    """A train state at step 0: fresh parameters from ``seed`` (or ``params``, e.g. imported
    weights), fresh optimizer state, the run's PRNG key from ``seed`` (both by
    :func:`seed_keys`), and with ``averaging`` (NT-ASGD: :func:`lstmjax.optim.averages_iterates`)
    an average not yet started."""
    init_key, rng = seed_keys(seed)
    if params is None:
        params = init_params(model, init_key)
    return TrainState(params=params, opt_state=optimizer.init(params),
                      step=jnp.zeros((), jnp.int32), rng=rng,
                      average=init_average(params) if averaging else None)
