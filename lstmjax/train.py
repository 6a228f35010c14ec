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
import signal
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
from lstmjax.data import Position, Vocab, load_corpus, num_windows, stream
from lstmjax.model import RNNLanguageModel, resolve_engines, zero_carry
from lstmjax.optim import make_optimizer
from lstmjax.preemption import Interrupted, StopRequests
from lstmjax.runlock import RunLock, check_writable_directory
from lstmjax.runs_report import duration
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


def resolve_config(config: Config, workdir: pathlib.Path, *, saved: dict | None = None) -> Config:
    """The config to run in ``workdir``: ``config``, checked against the one saved there
    (``config.json``, or ``saved``: the config stored with the checkpoint being resumed)."""
    if saved is None:
        saved_path = workdir / "config.json"
        if not saved_path.exists():
            return config
        saved = json.loads(saved_path.read_text())
    saved = _flatten(Config.from_dict(saved).to_dict())  # fields added since: their defaults
    requested = _flatten(config.to_dict())
    saved.pop("model.vocab_size", None)
    requested.pop("model.vocab_size", None)
    changed = sorted(k for k in requested
                     if saved.get(k) != requested[k] and k not in _RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {requested[k]!r}" for k in changed)
        raise ValueError(
            f"{workdir} holds a run with another config ({details}); resume it with the same "
            "settings, or start a new run in another workdir"
        )
    return config


DIVERGENCE_NATS = 20.0
"""A per-token loss this many nats above a uniform guess (``log V``) stops the run as a NaN does:
the model then gives the targets under e^-20 of the uniform probability on average, which no
freshly initialized or training model does; only a diverging one (e.g. an SGD learning rate too
high for the loss scale) gets there, often long before its loss overflows to inf."""


def train(config: Config, workdir: str | pathlib.Path, *, progress: bool = True,
          print_fn=None) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir``; return the final validation (and test) metrics.

    ``workdir`` receives ``config.json``, ``vocab.json``, ``metrics.jsonl``, ``checkpoints/``
    and the trainer lock ``train.lock`` (one trainer per directory). A run that finds
    checkpoints there continues from the newest intact one exactly. Nothing is written to
    ``workdir`` until the request has been checked against what is there (config, vocabulary,
    checkpoint layout, step count).

    SIGINT and SIGTERM stop the run after the current step with a checkpoint saved and
    :class:`lstmjax.preemption.Interrupted` raised (see :mod:`lstmjax.preemption`).

    ``print_fn(line)`` receives the run header, warnings and, when ``progress`` is on and stdout
    is not a terminal, plain progress lines (default: ``print``, flushed).

    Raises:
      ValueError: a request that does not fit the data or the run in ``workdir``, naming the
        config field (``train.max_steps``) and the fix.
      FloatingPointError: the loss is not finite or diverged (:data:`DIVERGENCE_NATS`).
      Interrupted: stopped by a signal, after saving.
    """
    from tqdm.auto import tqdm

    print_fn = print_fn or functools.partial(print, flush=True)
    workdir = pathlib.Path(workdir)
    check_writable_directory(workdir)
    data = config.data
    corpus = load_corpus(**dataclasses.asdict(data))
    settings = config.train
    steps_per_epoch = _check_fits(config, corpus)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, vocab_size=len(corpus.vocab)))
    limits = [settings.max_steps or math.inf, (settings.num_epochs or math.inf) * steps_per_epoch]
    total_steps = int(min(limits))
    model = RNNLanguageModel(config.model)
    optimizer, schedule = make_optimizer(config.optim, steps_per_epoch)
    state = init_state(model, optimizer, seed=settings.seed, batch_size=settings.batch_size)
    carry = zero_carry(config.model, settings.batch_size)
    position = Position()

    stop = StopRequests(lambda signum: (
        f"{signal.Signals(signum).name} again: exiting now; the checkpoints already in "
        f"{workdir / 'checkpoints'} are intact (a save in progress is discarded)"))
    with stop, RunLock(workdir), Checkpoints(workdir / "checkpoints",
                                              keep=settings.keep_checkpoints) as checkpoints:
        config = resolve_config(config, workdir)
        vocab_path = workdir / "vocab.json"
        if vocab_path.exists() and Vocab.from_json(vocab_path.read_text()) != corpus.vocab:
            raise ValueError(f"{vocab_path} differs from the vocabulary of corpus {data.corpus!r}; "
                             "start a new run in another workdir")
        latest = checkpoints.latest_step()
        if latest is not None:
            # the config stored with the checkpoint, checked before its arrays are: a config.json
            # deleted by hand does not turn another model into a layout mismatch
            resolve_config(config, workdir, saved=(checkpoints.extra(latest) or {}).get("config"))
            target = jax.eval_shape(lambda: {"state": state, "carry": carry})
            restored, extra = checkpoints.restore(target, on_warning=print_fn, quarantine=True)
            resolve_config(config, workdir, saved=extra.get("config"))
            state, carry = restored["state"], restored["carry"]
            position = Position.from_dict(extra["position"])
        step = int(state.step)
        if step > total_steps:
            raise ValueError(_past_the_end(workdir, step, total_steps, settings, steps_per_epoch))
        # The request is checked: from here on the run directory is written.
        vocab_path.write_text(corpus.vocab.to_json())
        (workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        log = metrics_lib.MetricsLog(workdir / "metrics.jsonl")
        engine = describe_engines(config.model, batch_size=settings.batch_size,
                                  seq_len=settings.seq_len)
        for line in _header(config, corpus, workdir, state, position, steps_per_epoch,
                            total_steps, engine):
            print_fn(line)
        train_step = make_train_step(model, optimizer, schedule, settings.loss_scale)
        bound = math.log(len(corpus.vocab)) + DIVERGENCE_NATS

        def problem(loss, grad_norm=0.0):
            """What is wrong with a loss (None when nothing is)."""
            if not math.isfinite(loss):
                return "is not finite"
            if loss > bound:
                return (f"exceeds the divergence bound log(V) + {DIVERGENCE_NATS:g} = "
                        f"{bound:.1f} nats")
            if not math.isfinite(grad_norm):
                return f"has a gradient norm of {grad_norm}"
            return None

        def stop_on(what, loss, step, problem):
            raise FloatingPointError(
                f"the {what} {loss:.6g} at step {step} {problem}; "
                f"{_last_checkpoint(checkpoints, workdir)}. {_divergence_advice(config)}")

        def validate_and_save(step, position, carry, state, force=False):
            result = evaluate(model, state.params, corpus.valid, batch_size=settings.eval_batch_size,
                              seq_len=settings.eval_seq_len)
            log.write({"step": step, "epoch": step / steps_per_epoch, "split": "valid", **result})
            if problem(result["loss"]):
                stop_on("validation loss", result["loss"], step, problem(result["loss"]))
            save(step, position, carry, state, metric=result["loss"], force=force)
            return result

        def save(step, position, carry, state, metric=None, force=False):
            extra = {"position": position.to_dict(), "valid_loss": metric,
                     "config": config.to_dict(), "vocab": json.loads(corpus.vocab.to_json())}
            checkpoints.save(step, {"state": state, "carry": carry}, extra, metric=metric,
                             force=force)

        def interrupted(step, saved):
            checkpoints.wait_until_finished()
            where = (f"checkpoint {step} is saved in {workdir / 'checkpoints'}" if saved else
                     f"nothing new to save ({_last_checkpoint(checkpoints, workdir)})")
            return Interrupted(f"interrupted by {stop.name()} at step {step}: {where}; run the "
                               "same command again to resume", stop.signum)

        if stop.requested:
            raise interrupted(step, saved=False)
        # disable=None: a bar on a terminal only; elsewhere plain progress lines
        bar = tqdm(total=total_steps, initial=step, disable=None if progress else True, unit="step",
                   dynamic_ncols=True)
        plain = progress and bar.disable
        write = bar.write if not bar.disable else print_fn
        pending, last_log_step, last_log_time = [], step, time.perf_counter()
        first_step, start_time = step, time.perf_counter()
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
            if step % settings.log_every == 0 or validate or stop.requested:
                record, per_step = _flush(pending, last_log_step, step, last_log_time, settings)
                log.write({**record, "epoch": step / steps_per_epoch, "engine": engine})
                for k, (loss, grad_norm) in enumerate(per_step, start=last_log_step + 1):
                    if problem(loss, grad_norm):
                        stop_on("training loss", loss, k, problem(loss, grad_norm))
                bar.set_postfix(loss=f"{record['loss']:.3f}", ppl=f"{record['perplexity']:.2f}")
                if plain:
                    eta = (time.perf_counter() - start_time) / (step - first_step) * (
                        total_steps - step)
                    print_fn(f"step {step}/{total_steps}: loss {record['loss']:.4f}, perplexity "
                             f"{record['perplexity']:.3f}, {record['tokens_per_s']:,.0f} tokens/s, "
                             f"ETA {duration(eta)}")
                pending, last_log_step, last_log_time = [], step, time.perf_counter()
            if validate:
                valid = validate_and_save(step, position, carry, state, force=at_end)
                write(f"step {step}: valid loss {valid['loss']:.4f}, "
                      f"perplexity {valid['perplexity']:.3f}")
            if stop.requested:
                bar.close()
                save(step, position, carry, state, force=True)
                raise interrupted(step, saved=True)
        bar.close()
        if valid is None:
            print_fn(f"{workdir} is already at step {step} of {total_steps}; raise "
                     "--train.max-steps or --train.num-epochs to train further")
            valid = evaluate(model, state.params, corpus.valid, batch_size=settings.eval_batch_size,
                             seq_len=settings.eval_seq_len)

        summary = {"step": step, "valid": valid}
        if corpus.test is not None:
            summary["test"] = evaluate(model, state.params, corpus.test,
                                       batch_size=settings.eval_batch_size,
                                       seq_len=settings.eval_seq_len)
            log.write({"step": step, "epoch": step / steps_per_epoch, "split": "test",
                       **summary["test"]})
        if settings.sample_length:
            prime = corpus.vocab.decode(corpus.valid[:1])
            summary["sample"] = generate(model, {"params": state.params}, corpus.vocab, prime,
                                         length=settings.sample_length, seed=settings.seed)
        if stop.requested:
            raise interrupted(step, saved=False)
    return summary


def _check_fits(config: Config, corpus) -> int:
    """Steps per epoch; a ValueError naming the field when the windows or the evaluation batch do
    not fit the corpus, or ``model.vocab_size`` disagrees with it."""
    settings, vocab_size = config.train, config.model.vocab_size
    if vocab_size is not None and vocab_size != len(corpus.vocab):
        raise ValueError(f"model.vocab_size={vocab_size} differs from the vocabulary of corpus "
                         f"{config.data.corpus!r} (V={len(corpus.vocab)}); leave model.vocab_size "
                         "unset: training sets it from the corpus")
    steps_per_epoch = num_windows(len(corpus.train), settings.batch_size, settings.seq_len)
    if steps_per_epoch == 0:
        raise ValueError(
            f"window longer than the corpus: train.batch_size={settings.batch_size} streams of "
            f"train.seq_len={settings.seq_len} (+1 target) need "
            f"{settings.batch_size * (settings.seq_len + 1):,} tokens, the training split of "
            f"{config.data.corpus!r} has {len(corpus.train):,}; lower train.batch_size or "
            "train.seq_len")
    for name in ("valid", "test"):
        ids = getattr(corpus, name)
        if ids is not None and len(ids) // settings.eval_batch_size < 2:
            raise ValueError(
                f"train.eval_batch_size={settings.eval_batch_size} is too large for the {name} "
                f"split of {config.data.corpus!r} ({len(ids):,} tokens; each evaluation stream "
                f"needs at least 2): use at most {len(ids) // 2:,}")
    return steps_per_epoch


def _past_the_end(workdir, step, total_steps, settings, steps_per_epoch) -> str:
    if settings.max_steps is not None and settings.max_steps == total_steps:
        limit = f"train.max_steps={settings.max_steps}"
    else:
        limit = (f"train.num_epochs={settings.num_epochs} ({steps_per_epoch:,} steps per "
                 "epoch)")
    return (f"{workdir} is at step {step}, past the end that {limit} sets (step {total_steps}); "
            f"raise it above {step} to train further, or evaluate the run with lstmjax eval")


def _divergence_advice(config: Config) -> str:
    if "float16" in (config.model.dtype, config.model.param_dtype):
        return ("float16 holds no value below 6e-8 and none above 65,504: Adam's optim.adam_eps "
                f"{config.optim.adam_eps:g} rounds to 0 in float16 parameters. Use "
                "model.dtype bfloat16 with model.param_dtype float32 (16-bit matmuls, float32 "
                "parameters and state), or raise optim.adam_eps to 1e-4 or more; then start a new "
                "workdir")
    return "Lower optim.learning_rate or set optim.max_grad_norm, then start a new workdir"


def _header(config, corpus, workdir, state, position, steps_per_epoch, total_steps,
            engine) -> list[str]:
    """The lines printed when a run starts: where, what data, what model, how long."""
    model, settings, optim = config.model, config.train, config.optim
    step = int(state.step)
    num_params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(state.params))
    splits = ", ".join(f"{name} {len(ids):,}" for name, ids in
                       (("train", corpus.train), ("valid", corpus.valid), ("test", corpus.test))
                       if ids is not None)
    start = (f"resuming at step {step}: epoch {position.epoch}, window {position.window}" if step
             else "new run")
    optimizer = f"{optim.optimizer} lr {optim.learning_rate:g} ({optim.schedule})"
    if optim.max_grad_norm is not None:
        optimizer += f", clip {optim.max_grad_norm:g}"
    return [
        f"run directory: {workdir} ({start})",
        f"corpus: {config.data.corpus}, {corpus.vocab.level} level, V={len(corpus.vocab):,}; "
        f"tokens: {splits}",
        f"model: {model.num_layers} x {model.hidden_size} {model.cell}, {num_params:,} "
        f"parameters, {model.dtype} compute",
        f"engine: {engine}",
        f"training: batch {settings.batch_size} x {settings.seq_len} tokens, {steps_per_epoch:,} "
        f"steps per epoch, to step {total_steps:,} ({total_steps / steps_per_epoch:.2f} epochs); "
        f"{optimizer}",
    ]


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


def _flush(pending, first_step, step, start_time, settings) -> tuple[dict, list]:
    """Bring the pending step metrics to the host: one log record (the mean loss of the steps
    since ``first_step``), and each step's ``(loss, grad_norm)`` for the divergence checks."""
    host = jax.device_get(pending)
    per_step = [(float(m["loss"]), float(m["grad_norm"])) for m in host]
    elapsed = time.perf_counter() - start_time
    steps = step - first_step
    loss = float(np.mean([loss for loss, _ in per_step]))
    record = {
        "step": step, "split": "train", "loss": loss,
        "perplexity": metrics_lib.perplexity(loss),
        "bits_per_token": metrics_lib.bits_per_token(loss),
        "grad_norm": per_step[-1][1],
        "learning_rate": float(host[-1]["learning_rate"]),
        "step_time_s": elapsed / steps,
        "tokens_per_s": steps * settings.batch_size * settings.seq_len / elapsed,
    }
    return record, per_step
