"""The training loop, :func:`train`: data, steps, logging, validation, checkpoints.

What it runs (model, optimizer, the jitted train step, the fresh or restored state) comes from
:func:`lstmjax.build.setup`; the run directory's files and resume rules from
:mod:`lstmjax.rundir`; the pure steps live in :mod:`lstmjax.steps`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import pathlib
import signal
import time
from typing import Any

import jax
import numpy as np

from lstmjax import metrics as metrics_lib
from lstmjax import rundir
from lstmjax.config import Config
from lstmjax.data import load_corpus, require_windows, stream
from lstmjax.data.batching import bptt_length
from lstmjax.engines import auto
from lstmjax.model import resolve_engines
from lstmjax.optim import should_start_averaging, start_averaging
from lstmjax.parallel import is_primary, max_over_processes
from lstmjax.preemption import Interrupted, StopRequests
from lstmjax.runlock import RunLock, check_writable_directory
from lstmjax.metrics import duration
from lstmjax.sample import generate
from lstmjax.build import setup
from lstmjax.steps import evaluation_params

DIVERGENCE_NATS = 20.0
"""A per-token loss this many nats above a uniform guess (``log V``) stops the run as a NaN does:
the model then gives the targets under e^-20 of the uniform probability on average, which no
freshly initialized or training model does; only a diverging one (e.g. an SGD learning rate too
high for the loss scale) gets there, often long before its loss overflows to inf."""


def train(config: Config, workdir: str | pathlib.Path, *, progress: bool = True,
          print_fn=None) -> dict[str, Any]:
    """Train (or resume) the run in ``workdir``; return the final validation (and test) metrics.

    ``workdir`` receives ``config.json``, ``vocab.json``, ``metrics.jsonl``, ``checkpoints/``,
    ``engines.json`` (with ``model.engine="auto"``: what it chose) and the trainer lock
    ``train.lock`` (one trainer per directory). A run that finds checkpoints there continues from
    the newest intact one exactly, with the engines it chose before unless another is named.
    Nothing is written to ``workdir`` until the request has been checked against what is there
    (config, vocabulary, checkpoint layout, step count).

    SIGINT and SIGTERM stop the run after the current step with a checkpoint saved and
    :class:`lstmjax.preemption.Interrupted` raised (see :mod:`lstmjax.preemption`).

    ``print_fn(line)`` receives the run header, warnings and, when ``progress`` is on and stdout
    is not a terminal, plain progress lines (default: ``print``, flushed).

    The batch is split over ``train.num_devices`` devices (:mod:`lstmjax.parallel`). In a run of
    several processes (after ``lstmjax.parallel.initialize``) every process calls ``train`` with
    the same arguments and ``workdir`` is a directory that they all reach; process 0 alone
    takes the lock, writes the files other than checkpoints (which all of them write, through
    orbax) and prints; a stop signal takes effect at the next log step, where the processes
    agree on it.

    Raises:
      ValueError: a request that does not fit the data or the run in ``workdir``, naming the
        config field (``train.max_steps``) and the fix.
      FloatingPointError: the loss is not finite or diverged (:data:`DIVERGENCE_NATS`).
      Interrupted: stopped by a signal, after saving.
    """
    from tqdm.auto import tqdm

    primary = is_primary()
    if not primary:
        progress, print_fn = False, lambda line: None
    print_fn = print_fn or functools.partial(print, flush=True)
    workdir = pathlib.Path(workdir)
    directory = rundir.RunDirectory(workdir)
    check_writable_directory(workdir)
    data = config.data
    corpus = load_corpus(**dataclasses.asdict(data))
    settings = config.train
    steps_per_epoch = _check_fits(config, corpus)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, vocab_size=len(corpus.vocab)))
    limits = [settings.max_steps or math.inf, (settings.num_epochs or math.inf) * steps_per_epoch]
    total_steps = int(min(limits))

    stop = StopRequests(lambda signum: (
        f"{signal.Signals(signum).name} again: exiting now; the checkpoints already in "
        f"{directory.checkpoints_dir} are intact (a save in progress is discarded)"))
    lock = RunLock(workdir) if primary else contextlib.nullcontext()
    with stop, lock, directory.checkpoints(config) as checkpoints, contextlib.ExitStack() as scope:
        directory.check_request(config, corpus.vocab, checkpoints)
        resuming = checkpoints.latest_step() is not None
        run = setup(config, steps_per_epoch=steps_per_epoch,
                    checkpoints=checkpoints if resuming else None, on_warning=print_fn,
                    quarantine=True)
        if resuming:  # the step restored may be older than the newest (damaged) one checked
            rundir.check_resume(config, run.extra.get("config"), workdir)
        state, carry, position, step = run.state, run.carry, run.position, run.step
        valid_losses = list(run.extra.get("valid_losses", []))  # NT-ASGD's trigger reads them
        if step > total_steps:
            raise ValueError(_past_the_end(workdir, step, total_steps, settings, steps_per_epoch))
        # The request is checked: from here on the run directory is written.
        if primary:
            directory.write(config, corpus.vocab)
        log = metrics_lib.MetricsLog(directory.metrics_file if primary else None)
        choosing = config.model.engine == "auto"
        # engine="auto": each layer shape keeps its first choice for the run, and a resumed run
        # the choices it saved (the same programs as before: bit-exact); a named engine wins
        chosen = scope.enter_context(auto.pinned(
            directory.read_engines() if choosing and resuming else None,
            source=str(directory.engines_file)))
        engine = describe_engines(config.model, batch_size=settings.batch_size,
                                  seq_len=settings.seq_len)

        def write_engines():
            if primary and choosing:
                directory.write_engines(chosen)

        write_engines()
        for line in _header(config, corpus, workdir, state, position, steps_per_epoch,
                            total_steps, engine, run.placement):
            print_fn(line)
        train_step = run.train_step
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
                f"{_last_checkpoint(checkpoints)}. {_divergence_advice(config)}")

        def validate_and_save(step, position, carry, state, force=False):
            """Validate, start NT-ASGD's averaging if this validation triggers it, save; return
            the validation metrics and the state."""
            result = run.evaluate(evaluation_params(state), corpus.valid)
            record = {"step": step, "epoch": step / steps_per_epoch, "split": "valid", **result}
            if state.average is not None:
                record["averaged"] = int(state.average.start) >= 0
            log.write(record)
            if problem(result["loss"]):
                stop_on("validation loss", result["loss"], step, problem(result["loss"]))
            if (state.average is not None and not record["averaged"] and should_start_averaging(
                    valid_losses, result["loss"], config.optim.nt_asgd_nonmono)):
                average = start_averaging(state.average, step)
                state = state.replace(average=run.placement.put(average,
                                                                run.placement.replicated))
                write(f"step {step}: NT-ASGD starts averaging (valid loss {result['loss']:.4f} "
                      f"above the best before the last {config.optim.nt_asgd_nonmono} "
                      "validations); evaluation uses the average from here on")
            valid_losses.append(result["loss"])
            save(step, position, carry, state, metric=result["loss"], force=force)
            return result, state

        def save(step, position, carry, state, metric=None, force=False):
            write_engines()  # with the evaluation's choices, made since the run started
            whole_carry = run.placement.put(carry, run.placement.replicated)
            rundir.save(checkpoints, step, state, whole_carry, position, config, corpus.vocab,
                        valid_loss=metric, valid_losses=valid_losses, force=force)

        def stop_now(log_step):
            """Whether a signal stops the run after this step: with several processes, one
            that any of them received, agreed on at log steps (a collective)."""
            if jax.process_count() == 1:
                return stop.requested
            if not log_step:
                return False
            # the agreed answer, not the local flag: a signal may land during the collective
            signum = max_over_processes(stop.signum or 0)
            if signum:
                stop.adopt(signum)
            return bool(signum)

        def interrupted(step, saved):
            checkpoints.wait_until_finished()
            where = (f"checkpoint {step} is saved in {directory.checkpoints_dir}" if saved else
                     f"nothing new to save ({_last_checkpoint(checkpoints)})")
            return Interrupted(f"interrupted by {stop.name()} at step {step}: {where}; run the "
                               "same command again to resume", stop.signum)

        if stop_now(True):
            raise interrupted(step, saved=False)
        # disable=None: a bar on a terminal only; elsewhere plain progress lines
        bar = tqdm(total=total_steps, initial=step, disable=None if progress else True, unit="step",
                   dynamic_ncols=True)
        plain = progress and bar.disable
        write = bar.write if not bar.disable else print_fn
        pending, last_log_step, last_log_time = [], step, time.perf_counter()
        first_step, start_time = step, time.perf_counter()
        valid = None
        lengths = None
        if settings.random_bptt:  # step k's window length, a function of (seed, k)
            lengths = (bptt_length(settings.seed, k, settings.seq_len)
                       for k in itertools.count(step))
        batches = stream(corpus.train, settings.batch_size, settings.seq_len, position,
                         lengths=lengths)
        for window in itertools.islice(batches, total_steps - step):
            if window.position.window == 0:  # a new epoch starts from a zero state
                carry = run.zero_carry()
            state, carry, step_metrics = train_step(state, carry,
                                                    run.placement.shard_batch(window.inputs),
                                                    run.placement.shard_batch(window.targets))
            step += 1
            position = window.next
            pending.append((step_metrics, window.inputs.size))
            bar.update(1)
            at_end = step >= total_steps
            validate = step % settings.eval_every == 0 or at_end or position.window == 0
            log_step = step % settings.log_every == 0 or validate
            stopping = stop_now(log_step)
            if log_step or stopping:
                record, per_step = _flush(pending, last_log_step, step, last_log_time)
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
                valid, state = validate_and_save(step, position, carry, state, force=at_end)
                write(f"step {step}: valid loss {valid['loss']:.4f}, "
                      f"perplexity {valid['perplexity']:.3f}")
            if stopping:
                bar.close()
                save(step, position, carry, state, force=True)
                raise interrupted(step, saved=True)
        bar.close()
        if valid is None:
            print_fn(f"{workdir} is already at step {step} of {total_steps}; raise "
                     "--train.max-steps or --train.num-epochs to train further")
            valid = run.evaluate(evaluation_params(state), corpus.valid)

        summary = {"step": step, "valid": valid}
        if corpus.test is not None:
            summary["test"] = run.evaluate(evaluation_params(state), corpus.test)
            log.write({"step": step, "epoch": step / steps_per_epoch, "split": "test",
                       **summary["test"]})
        if settings.sample_length and primary:  # from this process's own copy of the params
            params = jax.tree.map(lambda array: array.addressable_data(0),
                                  evaluation_params(state))
            prime = corpus.vocab.decode(corpus.valid[:1])
            summary["sample"] = generate(run.model, {"params": params}, corpus.vocab, prime,
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
    steps_per_epoch = require_windows(len(corpus.train), settings.batch_size, settings.seq_len,
                                      names=("train.batch_size", "train.seq_len"))
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
            engine, placement) -> list[str]:
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
    if optim.optimizer == "nt_asgd":
        optimizer += f" (NT-ASGD, nonmono {optim.nt_asgd_nonmono})"
    if optim.max_grad_norm is not None:
        optimizer += f", clip {optim.max_grad_norm:g}"
    each = settings.batch_size // placement.num_devices
    devices = [] if placement.num_devices == 1 else [
        f"devices: {placement.describe()}, {each} stream{'s' * (each > 1)} each (data parallel)"]
    return [
        f"run directory: {workdir} ({start})",
        f"corpus: {config.data.corpus}, {corpus.vocab.level} level, V={len(corpus.vocab):,}; "
        f"tokens: {splits}",
        f"model: {model.num_layers} x {model.hidden_size} {model.cell}, {num_params:,} "
        f"parameters, {model.dtype} compute",
        f"engine: {engine}",
        f"training: batch {settings.batch_size} x {settings.seq_len} tokens"
        f"{' (random BPTT: lengths vary)' if settings.random_bptt else ''}, {steps_per_epoch:,} "
        f"steps per epoch, to step {total_steps:,} ({total_steps / steps_per_epoch:.2f} epochs); "
        f"{optimizer}",
        *devices,
    ]


def describe_engines(config, *, batch_size: int, seq_len: int) -> str:
    """One line: the engine each layer runs in training and why, e.g. ``"fused unroll=1 (auto:
    ...)"``, or ``"layer 0: ...; layer 1: ..."`` where the layers differ."""
    choices = [f"{c.engine} unroll={c.unroll} ({c.reason})"
               for c in resolve_engines(config, batch_size=batch_size, seq_len=seq_len)]
    if len(set(choices)) == 1:
        return choices[0]
    return "; ".join(f"layer {k}: {choice}" for k, choice in enumerate(choices))


def _last_checkpoint(checkpoints) -> str:
    last = checkpoints.latest_step()
    if last is None:
        return "no checkpoint was written yet"
    return f"the last good checkpoint is step {last} in {checkpoints.directory}"


def _flush(pending, first_step, step, start_time) -> tuple[dict, list]:
    """Bring the pending ``(step metrics, tokens)`` to the host: one log record (the mean loss of
    the steps since ``first_step``), and each step's ``(loss, grad_norm)`` for the divergence
    checks."""
    host = jax.device_get([metrics for metrics, _ in pending])
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
        "tokens_per_s": sum(tokens for _, tokens in pending) / elapsed,
    }
    for penalty in ("ar", "tar"):  # activation regularization, when on: its mean, like the loss
        if penalty in host[-1]:
            record[penalty] = float(np.mean([float(m[penalty]) for m in host]))
    return record, per_step
