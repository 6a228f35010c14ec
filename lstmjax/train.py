"""Training: the pure, jitted train and eval steps, evaluation of a split, and the loop.

``train_step(state, carry, inputs, targets) -> (state, carry, metrics)`` is pure, compiled once and
donates its state and carry; the dropout key is ``fold_in(state.rng, state.step)``, so a resumed
run draws the same masks as one that never stopped. The carry crosses windows under
``stop_gradient`` (truncated BPTT) and is reset at each epoch and for each evaluated split.
:func:`train` is the Python loop around it: data, logging, validation, checkpoints.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import pathlib
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstmjax import metrics as metrics_lib
from lstmjax.checkpoint import Checkpoints
from lstmjax.config import Config
from lstmjax.data import Position, Vocab, load_corpus, require_windows, stream
from lstmjax.model import RNNLanguageModel, resolve_engines, zero_carry
from lstmjax.optim import make_optimizer
from lstmjax.sample import generate


@flax.struct.dataclass
class TrainState:
    """params, optimizer state, optimizer step (int32 scalar) and the run's PRNG key."""

    params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array


def token_losses(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Cross-entropy in nats, ``float32[B, T]``, of ``logits [B, T, V]`` against ``targets [B, T]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def make_train_step(model: RNNLanguageModel, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, loss_scale: str):
    """The jitted ``train_step(state, carry, inputs, targets) -> (state, carry, metrics)``.

    ``inputs`` and ``targets`` are ``int32[B, T]``. ``metrics`` holds the per-token ``loss``, the
    global gradient norm before clipping and the learning rate of this step. The objective is the
    per-token mean (``loss_scale="mean"``) or the sum over time averaged over the batch
    (``"sum_over_time"``, the PTB recipes').
    """

    def objective(params, carry, inputs, targets, dropout_key):
        logits, carry = model.apply({"params": params}, inputs, carry, train=True,
                                    rngs={"dropout": dropout_key})
        per_token = jnp.mean(token_losses(logits, targets))
        scale = inputs.shape[1] if loss_scale == "sum_over_time" else 1
        return per_token * scale, (per_token, carry)

    def train_step(state: TrainState, carry, inputs, targets):
        carry = jax.lax.stop_gradient(carry)
        dropout_key = jax.random.fold_in(state.rng, state.step)
        grads, (loss, carry) = jax.grad(objective, has_aux=True)(
            state.params, carry, inputs, targets, dropout_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "learning_rate": jnp.asarray(schedule(state.step), jnp.float32)}
        new_state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
        return new_state, carry, metrics

    return jax.jit(train_step, donate_argnums=(0, 1))


@functools.partial(jax.jit, static_argnames="model")
def _eval_window(model, params, carry, inputs, targets):
    logits, carry = model.apply({"params": params}, inputs, carry)
    return carry, jnp.sum(token_losses(logits, targets))


def evaluate(model: RNNLanguageModel, params: Any, ids: np.ndarray, *, batch_size: int,
             seq_len: int) -> dict[str, float]:
    """Mean loss, perplexity and bits per token over a whole split, the state carried through it.

    Every target of the ``batch_size`` streams is scored: the full windows, then the remainder as
    one shorter window. With ``batch_size=1`` the result does not depend on ``seq_len``.
    """
    length = len(ids) // batch_size
    if length < 2:
        raise ValueError(f"the split has {len(ids)} tokens: too few for eval batch_size={batch_size}")
    streams = np.asarray(ids[: batch_size * length], np.int32).reshape(batch_size, length)
    carry = zero_carry(model.config, batch_size)
    total = 0.0
    for start in range(0, length - 1, seq_len):
        stop = min(start + seq_len, length - 1)
        carry, loss = _eval_window(model, params, carry, streams[:, start:stop],
                                   streams[:, start + 1:stop + 1])
        total += float(loss)
    mean = total / (batch_size * (length - 1))
    return {"loss": mean, "perplexity": metrics_lib.perplexity(mean),
            "bits_per_token": metrics_lib.bits_per_token(mean),
            "tokens": batch_size * (length - 1)}


def init_state(model: RNNLanguageModel, optimizer: optax.GradientTransformation, *, seed: int,
               batch_size: int) -> TrainState:
    """Fresh parameters (from ``seed``) and optimizer state."""
    init_key, rng = jax.random.split(jax.random.key(seed))
    tokens = jnp.zeros((batch_size, 1), jnp.int32)
    params = model.init(init_key, tokens, zero_carry(model.config, batch_size))["params"]
    return TrainState(params=params, opt_state=optimizer.init(params),
                      step=jnp.zeros((), jnp.int32), rng=rng)


# Fields a resumed run may change: they say how long to run, how often to report, where files
# are, and how the same model is computed (engine, unroll, remat), not what is trained.
_RESUMABLE_CHANGES = {
    "model.engine", "model.unroll", "model.remat_chunk",
    "train.max_steps", "train.num_epochs", "train.log_every", "train.eval_every",
    "train.keep_checkpoints", "train.eval_batch_size", "train.eval_seq_len", "train.sample_length",
    "data.data_dir", "data.cache_dir",
}


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolve_config(config: Config, workdir: pathlib.Path) -> Config:
    """The config to run in ``workdir``: ``config``, checked against the one saved there."""
    saved_path = workdir / "config.json"
    if not saved_path.exists():
        return config
    saved = _flatten(json.loads(saved_path.read_text()))
    requested = _flatten(config.to_dict())
    saved.pop("model.vocab_size", None)
    requested.pop("model.vocab_size", None)
    changed = sorted(k for k in requested if saved.get(k) != requested[k] and k not in _RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {requested[k]!r}" for k in changed)
        raise ValueError(
            f"{workdir} holds a run with another config ({details}); resume it with the same "
            "settings, or start a new run with --workdir NEW_DIR"
        )
    return config


def train(config: Config, workdir: str | pathlib.Path, *, progress: bool = True,
          print_fn=print) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir``; return the final validation (and test) metrics.

    ``workdir`` receives ``config.json``, ``vocab.json``, ``metrics.jsonl`` and
    ``checkpoints/``. A run that finds checkpoints there continues from the latest one exactly.
    """
    from tqdm.auto import tqdm

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = resolve_config(config, workdir)
    data = config.data
    corpus = load_corpus(data.corpus, data_dir=data.data_dir, cache_dir=data.cache_dir,
                         split=data.split, unknown=data.unknown)
    steps_per_epoch = require_windows(len(corpus.train), config.train.batch_size,
                                      config.train.seq_len)
    vocab_path = workdir / "vocab.json"
    if vocab_path.exists() and Vocab.from_json(vocab_path.read_text()) != corpus.vocab:
        raise ValueError(f"{vocab_path} differs from the vocabulary of corpus {data.corpus!r}; "
                         "start a new run with --workdir NEW_DIR")
    vocab_path.write_text(corpus.vocab.to_json())
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, vocab_size=len(corpus.vocab)))
    (workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    settings = config.train
    limits = [settings.max_steps or math.inf, (settings.num_epochs or math.inf) * steps_per_epoch]
    total_steps = int(min(limits))
    model = RNNLanguageModel(config.model)
    engine = describe_engines(config.model, batch_size=settings.batch_size,
                              seq_len=settings.seq_len)
    print_fn(f"engine: {engine}")
    optimizer, schedule = make_optimizer(config.optim, steps_per_epoch)
    state = init_state(model, optimizer, seed=settings.seed, batch_size=settings.batch_size)
    carry = zero_carry(config.model, settings.batch_size)
    position = Position()
    log = metrics_lib.MetricsLog(workdir / "metrics.jsonl")

    with Checkpoints(workdir / "checkpoints", keep=settings.keep_checkpoints) as checkpoints:
        if checkpoints.latest_step() is not None:
            target = jax.eval_shape(lambda: {"state": state, "carry": carry})
            restored, extra = checkpoints.restore(target)
            state, carry = restored["state"], restored["carry"]
            position = Position.from_dict(extra["position"])
            print_fn(f"resuming {workdir} at step {int(state.step)} ({position})")
        step = int(state.step)
        train_step = make_train_step(model, optimizer, schedule, settings.loss_scale)

        def validate_and_save(step, position, carry, state, force=False):
            result = evaluate(model, state.params, corpus.valid, batch_size=settings.eval_batch_size,
                              seq_len=settings.eval_seq_len)
            log.write({"step": step, "epoch": step / steps_per_epoch, "split": "valid", **result})
            if not math.isfinite(result["loss"]):
                raise FloatingPointError(
                    f"the validation loss is {result['loss']} at step {step}; "
                    f"{_last_checkpoint(checkpoints, workdir)}. Lower --optim.learning-rate or set "
                    "--optim.max-grad-norm, then start a new --workdir")
            extra = {"position": position.to_dict(), "valid_loss": result["loss"],
                     "config": config.to_dict(), "vocab": json.loads(corpus.vocab.to_json())}
            checkpoints.save(step, {"state": state, "carry": carry}, extra,
                             metric=result["loss"], force=force)
            return result

        # disable=None: a bar on a terminal only, so logs piped to a file stay readable
        bar = tqdm(total=total_steps, initial=step, disable=None if progress else True, unit="step",
                   dynamic_ncols=True)
        pending, last_log_step, last_log_time = [], step, time.perf_counter()
        valid = None
        batches = stream(corpus.train, settings.batch_size, settings.seq_len, position)
        for window, inputs, targets in itertools.islice(batches, total_steps - step):
            if window.window == 0:  # a new epoch starts from a zero state
                carry = zero_carry(config.model, settings.batch_size)
            state, carry, step_metrics = train_step(state, carry, inputs, targets)
            step += 1
            position = window.next(steps_per_epoch)
            pending.append(step_metrics)
            bar.update(1)
            at_end = step >= total_steps
            validate = step % settings.eval_every == 0 or at_end or position.window == 0
            if step % settings.log_every == 0 or validate:
                record = _flush(pending, last_log_step, step, last_log_time, settings,
                                checkpoints, workdir)
                log.write({**record, "epoch": step / steps_per_epoch, "engine": engine})
                bar.set_postfix(loss=f"{record['loss']:.3f}", ppl=f"{record['perplexity']:.2f}")
                pending, last_log_step, last_log_time = [], step, time.perf_counter()
            if validate:
                valid = validate_and_save(step, position, carry, state, force=at_end)
                bar.write(f"step {step}: valid loss {valid['loss']:.4f}, "
                          f"perplexity {valid['perplexity']:.3f}")
        bar.close()
        if valid is None:
            print_fn(f"{workdir} is already at step {step} of {total_steps}; raise "
                     "--train.max-steps or --train.num-epochs to train further")
            valid = evaluate(model, state.params, corpus.valid, batch_size=settings.eval_batch_size,
                             seq_len=settings.eval_seq_len)

    summary = {"step": step, "valid": valid}
    if corpus.test is not None:
        summary["test"] = evaluate(model, state.params, corpus.test,
                                   batch_size=settings.eval_batch_size, seq_len=settings.eval_seq_len)
        log.write({"step": step, "epoch": step / steps_per_epoch, "split": "test",
                   **summary["test"]})
    if settings.sample_length:
        prime = corpus.vocab.decode(corpus.valid[:1])
        summary["sample"] = generate(model, {"params": state.params}, corpus.vocab, prime,
                                     length=settings.sample_length, seed=settings.seed)
    return summary


def describe_engines(config, *, batch_size: int, seq_len: int) -> str:
    """One line: the engine each layer runs in training and why, e.g. ``"fused unroll=1 (auto:
    ...)"``, or ``"layer 0: ...; layer 1: ..."`` where the layers differ."""
    choices = [f"{c.engine} unroll={c.unroll} ({c.reason})"
               for c in resolve_engines(config, batch_size=batch_size, seq_len=seq_len)]
    if len(set(choices)) == 1:
        return choices[0]
    return "; ".join(f"layer {k}: {choice}" for k, choice in enumerate(choices))


def _last_checkpoint(checkpoints, workdir) -> str:
    last = checkpoints.latest_step()
    if last is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint is step {last} in {workdir / 'checkpoints'}"


def _flush(pending, first_step, step, start_time, settings, checkpoints, workdir) -> dict:
    """Bring the pending step metrics to the host, check them, and make one log record."""
    host = jax.device_get(pending)
    losses = np.array([m["loss"] for m in host])
    finite = np.isfinite(losses) & np.isfinite([m["grad_norm"] for m in host])
    if not np.all(finite):
        bad = first_step + 1 + int(np.argmin(finite))
        raise FloatingPointError(
            f"the training loss or gradient norm is not finite at step {bad} (loss "
            f"{losses[bad - first_step - 1]}); {_last_checkpoint(checkpoints, workdir)}. Lower "
            "--optim.learning-rate or set --optim.max-grad-norm, then start a new --workdir"
        )
    elapsed = time.perf_counter() - start_time
    steps = step - first_step
    loss = float(losses.mean())
    return {
        "step": step, "split": "train", "loss": loss,
        "perplexity": metrics_lib.perplexity(loss),
        "bits_per_token": metrics_lib.bits_per_token(loss),
        "grad_norm": float(host[-1]["grad_norm"]),
        "learning_rate": float(host[-1]["learning_rate"]),
        "step_time_s": elapsed / steps,
        "tokens_per_s": steps * settings.batch_size * settings.seq_len / elapsed,
    }
