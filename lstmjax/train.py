"""The training loop, :func:`train`, and its pieces: what it checks before writing anything
(:func:`check_fits`), what it shows (:class:`Progress`, the header), what it logs
(:class:`StepLog`), how it validates (:class:`Validation`, with NT-ASGD's trigger), saves
(:class:`Saver`) and stops (:class:`DivergenceCheck`, :func:`interruption`).

What it runs (model, optimizer, the jitted train step, the fresh or restored state) comes from
:func:`lstmjax.build.build_trainer`; the run directory's files and resume rules from
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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from lstmjax import rundir
from lstmjax._checks import FieldError
from lstmjax.build import Trainer, build_trainer
from lstmjax.config import Config, TrainConfig
from lstmjax.data import Position, Vocab, load_corpus, require_windows, stream
from lstmjax.data.batching import Window, bptt_length
from lstmjax.engines import auto
from lstmjax.metrics import MetricsLog, bits_per_token, duration, perplexity
from lstmjax.model import resolve_engines
from lstmjax.optim import should_start_averaging, start_averaging
from lstmjax.parallel import Placement, is_primary, max_over_processes
from lstmjax.preemption import Interrupted, StopRequests
from lstmjax.runlock import RunLock, check_writable_directory
from lstmjax.sample import generate
from lstmjax.steps import TrainState, evaluation_params

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
      lstmjax._checks.FieldError: a request that does not fit the data or the run in
        ``workdir``, naming the config field (``train.max_steps``) and the fix.
      ValueError: a config that may not resume the run in ``workdir`` (each field named).
      FloatingPointError: the loss is not finite or diverged (:data:`DIVERGENCE_NATS`).
      Interrupted: stopped by a signal, after saving.
    """
    primary = is_primary()
    if not primary:
        progress, print_fn = False, lambda line: None
    print_fn = print_fn or functools.partial(print, flush=True)
    workdir = pathlib.Path(workdir)
    directory = rundir.RunDirectory(workdir)
    check_writable_directory(workdir)
    corpus = load_corpus(**dataclasses.asdict(config.data))
    settings = config.train
    steps_per_epoch = check_fits(config, corpus)
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, vocab_size=len(corpus.vocab)))
    total_steps = int(min(settings.max_steps or math.inf,
                          (settings.num_epochs or math.inf) * steps_per_epoch))

    stop = StopRequests(lambda signum: (
        f"{signal.Signals(signum).name} again: exiting now; the checkpoints already in "
        f"{directory.checkpoints_dir} are intact (a save in progress is discarded)"))
    lock = RunLock(workdir) if primary else contextlib.nullcontext()
    with stop, lock, directory.checkpoints(config) as checkpoints, contextlib.ExitStack() as scope:
        directory.check_request(config, corpus.vocab, checkpoints)
        resuming = checkpoints.latest_step() is not None
        trainer = build_trainer(config, steps_per_epoch,
                                checkpoints=checkpoints if resuming else None,
                                on_warning=print_fn, quarantine=True)
        if resuming:  # the step restored may be older than the newest (damaged) one checked
            rundir.check_resume(config, trainer.extra.get("config"), workdir)
        state, carry, position, step = trainer.state, trainer.carry, trainer.position, trainer.step
        if step > total_steps:
            raise past_the_end(workdir, step, total_steps, settings, steps_per_epoch)
        # The request is checked: from here on the run directory is written.
        if primary:
            directory.write(config, corpus.vocab)
        log = MetricsLog(directory.metrics_file if primary else None)
        choosing = config.model.engine == "auto"
        # engine="auto": each layer shape keeps its first choice for the run, and a resumed run
        # the choices it saved (the same programs as before: bit-exact); a named engine wins
        chosen = scope.enter_context(auto.pinned(
            directory.read_engines() if choosing and resuming else None,
            source=str(directory.engines_file)))
        engine = describe_engines(config.model, batch_size=settings.batch_size,
                                  seq_len=settings.seq_len)
        saver = Saver(checkpoints, directory, config, corpus.vocab, trainer.placement,
                      engines=chosen if primary and choosing else None)
        saver.write_engines()
        for line in _header(config, corpus, workdir, state, position, steps_per_epoch,
                            total_steps, engine, trainer.placement):
            print_fn(line)
        divergence = DivergenceCheck(config, len(corpus.vocab), checkpoints)
        stop_now = functools.partial(stop.agreed, num_processes=jax.process_count(),
                                     agree=max_over_processes)
        if stop_now(True):
            raise interruption(stop, checkpoints, step, saved_in=None)
        shown = Progress(step, total_steps, enabled=progress, print_fn=print_fn)
        validation = Validation(trainer, corpus.valid, log, divergence, write=shown.write,
                                steps_per_epoch=steps_per_epoch,
                                losses=trainer.extra.get("valid_losses", []))
        step_log = StepLog(log, step, steps_per_epoch=steps_per_epoch, engine=engine)
        valid = None
        for window in training_windows(corpus.train, settings, position, step, total_steps):
            if window.position.window == 0:  # a new epoch starts from a zero state
                carry = trainer.zero_carry()
            state, carry, step_metrics = trainer.train_step(
                state, carry, trainer.placement.shard_batch(window.inputs),
                trainer.placement.shard_batch(window.targets))
            step += 1
            position = window.next
            step_log.add(step_metrics, window.inputs.size)
            shown.update()
            at_end = step >= total_steps
            validate = step % settings.eval_every == 0 or at_end or position.window == 0
            log_step = step % settings.log_every == 0 or validate
            stopping = stop_now(log_step)
            if log_step or stopping:
                record, per_step = step_log.flush(step)
                for k, loss, grad_norm in per_step:
                    divergence.check("training loss", loss, k, grad_norm)
                shown.logged(record, step)
            if validate:
                valid, state = validation(step, state)
                saver.save(step, position, carry, state, validation.losses,
                           valid_loss=valid["loss"], force=at_end)
                shown.write(f"step {step}: valid loss {valid['loss']:.4f}, "
                            f"perplexity {valid['perplexity']:.3f}")
            if stopping:
                shown.close()
                saver.save(step, position, carry, state, validation.losses, force=True)
                raise interruption(stop, checkpoints, step,
                                   saved_in=directory.checkpoints_dir)
        shown.close()
        if valid is None:
            print_fn(f"{workdir} is already at step {step} of {total_steps}; raise "
                     "--train.max-steps or --train.num-epochs to train further")
            valid = trainer.evaluate(evaluation_params(state), corpus.valid)
        summary = {"step": step, "valid": valid}
        if corpus.test is not None:
            summary["test"] = trainer.evaluate(evaluation_params(state), corpus.test)
            log.write({"step": step, "epoch": step / steps_per_epoch, "split": "test",
                       **summary["test"]})
        if settings.sample_length and primary:
            summary["sample"] = _sample(trainer, state, corpus)
        if stop.requested:
            raise interruption(stop, checkpoints, step, saved_in=None)
    return summary


def training_windows(ids: np.ndarray, settings: TrainConfig, position: Position, step: int,
                     total_steps: int) -> Iterator[Window]:
    """The training windows of steps ``step + 1 .. total_steps``, from ``position`` of the
    token ids ``ids``: ``train.batch_size`` streams of ``train.seq_len`` tokens, or with
    ``train.random_bptt`` of step k's drawn length (a function of ``(train.seed, k)``)."""
    lengths = None
    if settings.random_bptt:
        lengths = (bptt_length(settings.seed, k, settings.seq_len) for k in itertools.count(step))
    batches = stream(ids, settings.batch_size, settings.seq_len, position, lengths=lengths)
    return itertools.islice(batches, total_steps - step)


class DivergenceCheck:
    """Stops the run at a loss that is not finite or exceeds ``log V +``
    :data:`DIVERGENCE_NATS`, or a gradient norm that is not finite, with a
    ``FloatingPointError`` naming the step, the last good checkpoint (read from ``checkpoints``
    when it stops) and the fix for ``config``."""

    def __init__(self, config: Config, vocab_size: int, checkpoints: Any):
        self.bound = math.log(vocab_size) + DIVERGENCE_NATS
        self.advice = _divergence_advice(config)
        self.checkpoints = checkpoints

    def problem(self, loss: float, grad_norm: float = 0.0) -> str | None:
        """What is wrong with a loss (nats per token) and its gradient norm; None when nothing
        is."""
        if not math.isfinite(loss):
            return "is not finite"
        if loss > self.bound:
            return (f"exceeds the divergence bound log(V) + {DIVERGENCE_NATS:g} = "
                    f"{self.bound:.1f} nats")
        if not math.isfinite(grad_norm):
            return f"has a gradient norm of {grad_norm}"
        return None

    def check(self, what: str, loss: float, step: int, grad_norm: float = 0.0) -> None:
        """Raise the ``FloatingPointError`` if :meth:`problem` finds one in ``what`` (``"training
        loss"``) at ``step``."""
        problem = self.problem(loss, grad_norm)
        if problem:
            raise FloatingPointError(f"the {what} {loss:.6g} at step {step} {problem}; "
                                     f"{_last_checkpoint(self.checkpoints)}. {self.advice}")


class StepLog:
    """The train records of the metric log: each step's metrics stay on the device until a log
    step brings those since the last record to the host (one transfer) and writes them as one
    record."""

    def __init__(self, log: MetricsLog, step: int, *, steps_per_epoch: int, engine: str):
        self.log, self.steps_per_epoch, self.engine = log, steps_per_epoch, engine
        self._restart(step)

    def _restart(self, step: int) -> None:
        self.pending: list[tuple[Any, int]] = []
        self.since_step, self.since_time = step, time.perf_counter()

    def add(self, metrics: Any, tokens: int) -> None:
        """A step's metrics (``train_step``'s, on the device) and how many tokens it read."""
        self.pending.append((metrics, tokens))

    def flush(self, step: int) -> tuple[dict[str, Any], list[tuple[int, float, float]]]:
        """Write the record of the steps since the last one (:func:`train_record`), which ends
        at ``step``; return it and each step's ``(step, loss, grad_norm)`` for the divergence
        checks."""
        host = jax.device_get([metrics for metrics, _ in self.pending])
        tokens = sum(tokens for _, tokens in self.pending)
        record = train_record(host, tokens, step, step - self.since_step,
                              time.perf_counter() - self.since_time)
        record.update(epoch=step / self.steps_per_epoch, engine=self.engine)
        self.log.write(record)
        per_step = [(k, float(m["loss"]), float(m["grad_norm"]))
                    for k, m in enumerate(host, start=self.since_step + 1)]
        self._restart(step)
        return record, per_step


def train_record(metrics: Sequence[dict[str, Any]], tokens: int, step: int, num_steps: int,
                 elapsed_s: float) -> dict[str, Any]:
    """The train record of ``num_steps`` steps ending at ``step`` that read ``tokens`` tokens in
    ``elapsed_s`` seconds, from their metrics on the host (``train_step``'s, oldest first): the
    mean loss (nats per token) with its perplexity and bits, the last step's gradient norm and
    learning rate, the time per step, tokens per second, and the means of AR and TAR when on."""
    losses = [float(m["loss"]) for m in metrics]
    loss = float(np.mean(losses))
    record = {
        "step": step, "split": "train", "loss": loss,
        "perplexity": perplexity(loss),
        "bits_per_token": bits_per_token(loss),
        "grad_norm": float(metrics[-1]["grad_norm"]),
        "learning_rate": float(metrics[-1]["learning_rate"]),
        "step_time_s": elapsed_s / num_steps,
        "tokens_per_s": tokens / elapsed_s,
    }
    for penalty in ("ar", "tar"):  # activation regularization, when on: its mean, like the loss
        if penalty in metrics[-1]:
            record[penalty] = float(np.mean([float(m[penalty]) for m in metrics]))
    return record


class Progress:
    """What the run shows as it goes, from step ``step`` to ``total_steps``: a tqdm bar on a
    terminal; elsewhere, when ``enabled``, a plain line per log record to ``print_fn``.
    :meth:`write` prints a line above the bar, or to ``print_fn`` without one."""

    def __init__(self, step: int, total_steps: int, *, enabled: bool,
                 print_fn: Callable[[str], None]):
        from tqdm.auto import tqdm

        # disable=None: a bar on a terminal only; elsewhere plain progress lines
        self.bar = tqdm(total=total_steps, initial=step, disable=None if enabled else True,
                        unit="step", dynamic_ncols=True)
        self.plain = enabled and self.bar.disable
        self.write = self.bar.write if not self.bar.disable else print_fn
        self.print_fn, self.total_steps = print_fn, total_steps
        self.first_step, self.start_time = step, time.perf_counter()

    def update(self) -> None:
        """One more step done."""
        self.bar.update(1)

    def logged(self, record: dict[str, Any], step: int) -> None:
        """Show the train record that ends at ``step``: the bar's postfix, or a plain line with
        the time left at the pace since the start."""
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", ppl=f"{record['perplexity']:.2f}")
        if self.plain:
            eta = (time.perf_counter() - self.start_time) / (step - self.first_step) * (
                self.total_steps - step)
            self.print_fn(f"step {step}/{self.total_steps}: loss {record['loss']:.4f}, perplexity "
                          f"{record['perplexity']:.3f}, {record['tokens_per_s']:,.0f} tokens/s, "
                          f"ETA {duration(eta)}")

    def close(self) -> None:
        self.bar.close()


class Validation:
    """The validations of a run: ``validation(step, state) -> (metrics, state)`` evaluates the
    evaluation parameters (``lstmjax.steps.evaluation_params``) on the valid split ``ids``,
    writes the record to ``log``, stops a diverged run (``divergence``), and with NT-ASGD starts
    averaging when the validation triggers it (saying so through ``write``; the state returned
    holds the started average).

    ``losses`` holds every validation loss of the run, oldest first (a resumed run's start with
    those saved in its checkpoint): NT-ASGD's trigger reads them, and each checkpoint saves them.
    """

    def __init__(self, trainer: Trainer, ids: np.ndarray, log: MetricsLog,
                 divergence: DivergenceCheck, *, write: Callable[[str], None],
                 steps_per_epoch: int, losses: Sequence[float] = ()):
        self.trainer, self.ids, self.log, self.divergence = trainer, ids, log, divergence
        self.write, self.steps_per_epoch = write, steps_per_epoch
        self.losses = list(losses)

    def __call__(self, step: int, state: TrainState) -> tuple[dict[str, Any], TrainState]:
        result = self.trainer.evaluate(evaluation_params(state), self.ids)
        record = {"step": step, "epoch": step / self.steps_per_epoch, "split": "valid", **result}
        if state.average is not None:
            record["averaged"] = int(state.average.start) >= 0
        self.log.write(record)
        self.divergence.check("validation loss", result["loss"], step)
        nonmono = self.trainer.config.optim.nt_asgd_nonmono
        if (state.average is not None and not record["averaged"]
                and should_start_averaging(self.losses, result["loss"], nonmono)):
            placement = self.trainer.placement
            state = state.replace(average=placement.put(start_averaging(state.average, step),
                                                        placement.replicated))
            self.write(f"step {step}: NT-ASGD starts averaging (valid loss {result['loss']:.4f} "
                       f"above the best before the last {nonmono} validations); evaluation uses "
                       "the average from here on")
        self.losses.append(result["loss"])
        return result, state


class Saver:
    """Saves the run's checkpoints (:func:`lstmjax.rundir.save`: the payload and its JSON) and,
    before each, ``engines`` (the choices engine="auto" made so far, filled in as layers are
    resolved; None: nothing to write) to engines.json."""

    def __init__(self, checkpoints: Any, directory: rundir.RunDirectory, config: Config,
                 vocab: Vocab, placement: Placement, *, engines: dict[str, Any] | None):
        self.checkpoints, self.directory, self.config, self.vocab = (checkpoints, directory,
                                                                     config, vocab)
        self.placement, self.engines = placement, engines

    def write_engines(self) -> None:
        """Write engines.json (when there are engine choices to write)."""
        if self.engines is not None:
            self.directory.write_engines(self.engines)

    def save(self, step: int, position: Position, carry: Any, state: TrainState,
             valid_losses: Sequence[float], *, valid_loss: float | None = None,
             force: bool = False) -> None:
        """Save step ``step``, ranked by ``valid_loss`` (None: unranked), with the run's
        validation losses so far; the carry is saved whole (gathered from the mesh)."""
        self.write_engines()  # with the evaluation's choices, made since the run started
        whole_carry = self.placement.put(carry, self.placement.replicated)
        rundir.save(self.checkpoints, step, state, whole_carry, position, self.config, self.vocab,
                    valid_loss=valid_loss, valid_losses=valid_losses, force=force)


def interruption(stop: StopRequests, checkpoints: Any, step: int, *,
                 saved_in: pathlib.Path | None) -> Interrupted:
    """The :class:`~lstmjax.preemption.Interrupted` to raise for ``stop``'s request at
    ``step``, once ``checkpoints`` has finished writing: where the run is saved (``saved_in``:
    the directory where step ``step`` was just saved; None: nothing new, the last checkpoint) and
    how to resume."""
    checkpoints.wait_until_finished()
    where = (f"checkpoint {step} is saved in {saved_in}" if saved_in is not None else
             f"nothing new to save ({_last_checkpoint(checkpoints)})")
    return Interrupted(f"interrupted by {stop.name()} at step {step}: {where}; run the "
                       "same command again to resume", stop.signum)


def _sample(trainer: Trainer, state: TrainState, corpus) -> str:
    """``train.sample_length`` tokens sampled from the evaluation parameters (this process's own
    copy), primed with the first token of the valid split."""
    params = jax.tree.map(lambda array: array.addressable_data(0), evaluation_params(state))
    prime = corpus.vocab.decode(corpus.valid[:1])
    settings = trainer.config.train
    return generate(trainer.model, {"params": params}, corpus.vocab, prime,
                    length=settings.sample_length, seed=settings.seed)


def check_fits(config: Config, corpus) -> int:
    """Steps per epoch of ``config`` on ``corpus``.

    Raises:
      lstmjax._checks.FieldError: ``model.vocab_size`` is set and differs from the corpus's
        vocabulary, or the evaluation batch does not fit a split (``train.eval_batch_size``).
      ValueError: not one training window fits (naming ``train.batch_size`` and
        ``train.seq_len``).
    """
    settings, vocab_size = config.train, config.model.vocab_size
    if vocab_size is not None and vocab_size != len(corpus.vocab):
        raise FieldError("model.vocab_size", f"model.vocab_size={vocab_size} differs from the "
                         f"vocabulary of corpus {config.data.corpus!r} (V={len(corpus.vocab)}); "
                         "leave model.vocab_size unset: training sets it from the corpus")
    steps_per_epoch = require_windows(len(corpus.train), settings.batch_size, settings.seq_len,
                                      names=("train.batch_size", "train.seq_len"))
    for name in ("valid", "test"):
        ids = getattr(corpus, name)
        if ids is not None and len(ids) // settings.eval_batch_size < 2:
            raise FieldError(
                "train.eval_batch_size",
                f"train.eval_batch_size={settings.eval_batch_size} is too large for the {name} "
                f"split of {config.data.corpus!r} ({len(ids):,} tokens; each evaluation stream "
                f"needs at least 2): use at most {len(ids) // 2:,}")
    return steps_per_epoch


def past_the_end(workdir: pathlib.Path, step: int, total_steps: int, settings: TrainConfig,
                 steps_per_epoch: int) -> FieldError:
    """The error for a run in ``workdir`` at ``step``, past the ``total_steps`` that the request
    sets, naming the field that sets it (``train.max_steps`` or ``train.num_epochs``)."""
    if settings.max_steps is not None and settings.max_steps == total_steps:
        field, limit = "train.max_steps", f"train.max_steps={settings.max_steps}"
    else:
        field = "train.num_epochs"
        limit = (f"train.num_epochs={settings.num_epochs} ({steps_per_epoch:,} steps per "
                 "epoch)")
    return FieldError(field, f"{workdir} is at step {step}, past the end that {limit} sets (step "
                      f"{total_steps}); raise it above {step} to train further, or evaluate the "
                      "run with lstmjax eval")


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
