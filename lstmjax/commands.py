"""The commands of ``lstmjax``, one frozen dataclass each.

A command's fields are its flags: tyro reads their types and docstrings for the parser and for
``lstmjax CMD --help`` (:mod:`lstmjax.cli`), so the docstrings are plain text. Each dataclass
mirrors the library function it calls (:class:`Eval`'s fields are
:func:`lstmjax.trained.evaluate_run`'s arguments); calling it runs that function, prints the
result and returns the exit code. The library checks the values, and a
:class:`lstmjax._checks.FieldError` that names one of the command's fields reads with its flag
(:meth:`Command.describe`). Only the command line imports this module (and tyro).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import sys
import traceback
import typing
from typing import Annotated, Literal

import tyro

from lstmjax._checks import FieldError
from lstmjax.config import Config
from lstmjax.presets import PRESETS
from lstmjax.trained import CheckpointChoice

Preset = Literal[tuple(PRESETS)]

USER_ERRORS = (ValueError, OSError, FloatingPointError, ModuleNotFoundError)
"""What a user's mistake raises (a bad value, a missing file, a diverged run): one line, no
traceback."""


_ARG_CONFIG = type(tyro.conf.arg())  # what tyro.conf.arg(...) returns, read for its name


class Command:
    """What every command has beside its fields: its flags, and its errors worded with them."""

    @classmethod
    def flags(cls) -> dict[str, str]:
        """The command's flags by the name the library gives their field:
        ``{"top_k": "--top-k", "train.max_steps": "--train.max-steps", ...}``."""
        return _flags(cls)

    @classmethod
    def describe(cls, error: BaseException) -> str:
        """``error``'s message, with the field that a FieldError names written as its flag where
        it is one of this command's (``--train.max-steps=0 must be ...``)."""
        message = str(error)
        flag = cls.flags().get(error.field) if isinstance(error, FieldError) else None
        if flag is None:
            return message
        # the field's name where it stands alone: not inside a longer name or a file name
        return re.sub(rf"(?<![\w.-]){re.escape(error.field)}(?![\w-])", flag, message)


def _flags(cls: type, prefix: str = "") -> dict[str, str]:
    """``{field: flag}`` of dataclass ``cls``, as tyro names them: a ``tyro.conf.arg(name=...)``
    replaces the field's name, a nested dataclass prefixes its fields with its name (none for
    the name ``""``), and the flag spells ``_`` as ``-``. Positional arguments have no flag."""
    flags = {}
    for field in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls, include_extras=True)[field.name]
        metadata = getattr(hint, "__metadata__", ())
        names = [meta.name for meta in metadata
                 if isinstance(meta, _ARG_CONFIG) and meta.name is not None]
        name = (names[-1] if names else field.name).replace("-", "_")
        kind = typing.get_args(hint)[0] if metadata else hint
        if dataclasses.is_dataclass(kind):
            flags |= _flags(kind, f"{prefix}{name}." if name else prefix)
        elif tyro.conf.Positional not in metadata:
            flags[prefix + name] = "--" + (prefix + name).replace("_", "-")
    return flags


def default_workdir(preset: str) -> pathlib.Path:
    """The run directory of a preset when ``--workdir`` is not given: ``runs/PRESET``."""
    return pathlib.Path("runs") / preset


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train(Command):
    """Train a preset with the flags' fields overridden, or resume its run.

    Attributes:
      preset: named configuration that the other flags override (lstmjax/presets.py).
      workdir: run directory to write, or to resume from its newest intact checkpoint. SIGINT
        or SIGTERM saves a checkpoint there and stops (exit 130 / 143).
      coordinator_address: a run of several processes: where process 0 serves the coordinator,
        reachable from every process.
      num_processes: processes of the run, each started with the same flags.
      process_id: this process's number, 0 to N - 1; process 0 logs and prints.
    """

    config: Annotated[Config, tyro.conf.arg(name="")]
    preset: Preset = "default"
    workdir: Annotated[pathlib.Path | None, tyro.conf.arg(
        metavar="DIR", help_behavior_hint="(default: runs/PRESET)")] = None
    coordinator_address: Annotated[str | None, tyro.conf.arg(
        metavar="HOST:PORT", help_behavior_hint="(default: $LSTMJAX_COORDINATOR_ADDRESS; with "
        "none of these three flags and variables set: one process)")] = None
    num_processes: Annotated[int | None, tyro.conf.arg(
        metavar="N", help_behavior_hint="(default: $LSTMJAX_NUM_PROCESSES, else what JAX detects "
        "on SLURM, Open MPI or Kubernetes)")] = None
    process_id: Annotated[int | None, tyro.conf.arg(
        metavar="I", help_behavior_hint="(default: $LSTMJAX_PROCESS_ID, else what JAX detects on "
        "SLURM, Open MPI or Kubernetes)")] = None

    def __call__(self) -> int:
        from lstmjax.parallel import initialize

        workdir = self.workdir or default_workdir(self.preset)
        if initialize(self.coordinator_address, self.num_processes, self.process_id):
            self._exit_as_one_of_several(workdir)
        return self._train(workdir)

    def _train(self, workdir: pathlib.Path) -> int:
        from lstmjax.parallel import is_primary
        from lstmjax.train import train

        summary = train(self.config, workdir)
        if not is_primary():
            return 0
        valid = summary["valid"]
        print(f"\nrun directory: {workdir}")
        print(f"step {summary['step']}: valid loss {valid['loss']:.4f}, perplexity "
              f"{valid['perplexity']:.3f}, {valid['bits_per_token']:.3f} bits per token")
        if "test" in summary:
            print(f"test perplexity {summary['test']['perplexity']:.3f}")
        if "sample" in summary:
            print(f"\nsample:\n{summary['sample']}")
        return 0

    def _exit_as_one_of_several(self, workdir: pathlib.Path) -> typing.NoReturn:
        """Train as one process of a multi-process run and exit.

        A process that fails or is stopped prints its one line (prefixed with its number) and
        leaves at once with ``os._exit``: the orderly shutdown of ``jax.distributed`` waits for
        every process and would abort with a C++ stack trace when another one is gone. A process
        that finishes shuts down with the others."""
        import jax

        from lstmjax.preemption import Interrupted

        who = f"lstmjax train (process {jax.process_index()} of {jax.process_count()})"
        try:
            code = self._train(workdir)
        except Interrupted as stop:
            message, code = str(stop), stop.exit_code
        except BaseException as error:
            # A collective fails with a JaxRuntimeError when another process died: no traceback
            if not isinstance(error, (*USER_ERRORS, jax.errors.JaxRuntimeError)):
                traceback.print_exc()
            first = (self.describe(error).strip().splitlines() or [type(error).__name__])[0]
            message, code = (f"error: {first}. Every process of a run must reach its end: when "
                             "one stops, the others fail; start them all again with the same "
                             f"commands to resume from the newest checkpoint in {workdir}"), 1
        else:
            jax.distributed.shutdown()
            sys.exit(code)
        print(f"{who}: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(code)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ReadsRun(Command):
    """The fields of a command that reads a trained run.

    Attributes:
      preset: the preset trained, for the default --workdir.
      workdir: run directory written by lstmjax train.
      checkpoint: which checkpoint to load: "latest", the newest intact one; "best", the intact
        one with the lowest validation loss; or a step number.
    """

    preset: Preset = "default"
    workdir: Annotated[pathlib.Path | None, tyro.conf.arg(
        metavar="DIR", help_behavior_hint="(default: runs/PRESET)")] = None
    checkpoint: Annotated[CheckpointChoice, tyro.conf.arg(metavar="latest|best|STEP")] = "latest"

    @property
    def run_dir(self) -> pathlib.Path:
        return self.workdir or default_workdir(self.preset)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Eval(_ReadsRun):
    """Evaluate a trained run on a split of its corpus: loss, perplexity, bits per token (JSON).

    Attributes:
      split: split to evaluate.
      batch_size: evaluation streams.
      data_dir: where the corpus files are now, if they moved since training.
    """

    split: Literal["valid", "test"] = "valid"
    batch_size: Annotated[int | None, tyro.conf.arg(
        metavar="B", help_behavior_hint="(default: the run's train.eval_batch_size)")] = None
    data_dir: Annotated[str | None, tyro.conf.arg(
        name="data.data-dir", metavar="DIR", help_behavior_hint="(default: the run's "
        "data.data_dir, else $LSTMJAX_DATA_DIR, else the download cache)")] = None

    def __call__(self) -> int:
        from lstmjax.trained import evaluate_run

        result = evaluate_run(self.run_dir, split=self.split, checkpoint=self.checkpoint,
                              batch_size=self.batch_size, data_dir=self.data_dir)
        print(json.dumps(result, indent=2))
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample(_ReadsRun):
    """Generate text from a trained run.

    Attributes:
      prime: priming text.
      length: tokens to generate after the prime.
      temperature: greater than 0; lower is more conservative, and tends to always picking the
        most likely token.
      top_k: sample among the k most likely tokens; 0 for all.
      seed: sampling seed.
    """

    prime: Annotated[str | None, tyro.conf.DisallowNone, tyro.conf.arg(  # "None" is text too
        metavar="TEXT", help_behavior_hint="(default: the vocabulary's first token: the most "
        "frequent word of a word corpus, 'the' on PTB; the lowest character, usually a newline, "
        "of a character corpus)")] = None
    length: int = 300
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __call__(self) -> int:
        from lstmjax.trained import sample_run

        print(sample_run(self.run_dir, prime=self.prime, length=self.length,
                         temperature=self.temperature, top_k=self.top_k, seed=self.seed,
                         checkpoint=self.checkpoint))
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Export(_ReadsRun):
    """Write a run's model as TF1 variables (.npz) or a torch state dict (.pt).

    Attributes:
      out: OUT.npz (TF1 names) or OUT.pt (torch: the modules encoder, rnn and decoder).
      names: TF1 naming convention: the PTB tutorial's, or r2rt's.
    """

    out: Annotated[pathlib.Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    names: Literal["ptb", "r2rt"] = "ptb"

    def __call__(self) -> int:
        from lstmjax.interop import export_run

        step, count = export_run(self.run_dir, self.out, checkpoint=self.checkpoint,
                                 names=self.names)
        print(f"wrote step {step} of {self.run_dir} to {self.out} ({count} arrays)")
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Import(Command):
    """Import a TensorFlow 1 or PyTorch language model as a run directory for lstmjax.

    Attributes:
      weights: a .npz of TF variables, a TF checkpoint prefix (needs TensorFlow), or a torch
        state dict in a .pt or .pth file. TF1: the PTB tutorial's names (Model/embedding,
        Model/RNN/multi_rnn_cell/cell_k/..., Model/softmax_w, softmax_b) or r2rt's names
        embedding_matrix, softmax/W and softmax/b. torch: an nn.Embedding, an nn.LSTM, GRU or
        RNN, and an nn.Linear.
      workdir: the new run directory to write.
      corpus: the corpus the model was trained on: its vocabulary gives the ids (the weights
        hold none: give --corpus or --vocab), and lstmjax eval scores it.
      data_dir: where the corpus files are.
      vocab: the vocabulary: a vocab.json of lstmjax, or a text file with one word per line,
        line k being id k. With --corpus it must be that corpus's.
      preset: the preset whose training and evaluation settings the run gets; the model's shape
        comes from the weights.
      forget_bias: TF LSTMs: the forget_bias the cell was built with (not stored in the weights:
        BasicLSTMCell's default is 1.0, the PTB tutorial's 0.0).
      scope: TF: path components of the cell stack to read, where there are several.
    """

    weights: Annotated[pathlib.Path, tyro.conf.Positional, tyro.conf.arg(metavar="WEIGHTS")]
    workdir: Annotated[pathlib.Path, tyro.conf.arg(metavar="DIR")]
    corpus: Annotated[str | None, tyro.conf.arg(metavar="NAME")] = None
    data_dir: Annotated[str | None, tyro.conf.arg(metavar="DIR")] = None
    vocab: Annotated[pathlib.Path | None, tyro.conf.arg(metavar="FILE")] = None
    preset: Preset = "default"
    forget_bias: Annotated[float | None, tyro.conf.arg(metavar="F")] = None
    scope: Annotated[str | None, tyro.conf.arg(metavar="SCOPE")] = None

    def __call__(self) -> int:
        from lstmjax.interop import import_run

        config = import_run(self.weights, self.workdir, corpus=self.corpus,
                            vocab_file=self.vocab, data_dir=self.data_dir,
                            base=PRESETS[self.preset], forget_bias=self.forget_bias,
                            scope=self.scope)
        print(f"imported {self.weights} into {self.workdir}: {config.model.num_layers} x "
              f"{config.model.cell} (hidden {config.model.hidden_size}), vocabulary "
              f"{config.model.vocab_size}")
        return 0


RunDirs = Annotated[tuple[pathlib.Path, ...], tyro.conf.Positional,
                    tyro.conf.arg(metavar="RUN_DIR...", help_behavior_hint="(one or more)")]
"""One or more run directories (lstmjax train --workdir), as positional arguments."""


def _require_runs(runs: tuple[pathlib.Path, ...]) -> None:
    """tyro reads a positional tuple as zero or more values: one at least is the parser's rule
    here, as argparse's nargs="+"."""
    if not runs:
        raise ValueError("give at least one RUN_DIR (a directory written by lstmjax train)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report(Command):
    """Summarize runs in a Markdown table, and optionally plot their learning curves.

    Attributes:
      runs: run directories written by lstmjax train, of any corpora (their config.json and
        metrics.jsonl are read).
      plot: draw train and valid perplexity against step, one colour per run (needs
        matplotlib: pip install "lstmjax[plot]").
      json: write the summaries as JSON (losses in nats per token).
    """

    runs: RunDirs
    plot: Annotated[pathlib.Path | None, tyro.conf.arg(metavar="FILE.png")] = None
    json: Annotated[pathlib.Path | None, tyro.conf.arg(metavar="FILE")] = None

    def __post_init__(self):
        _require_runs(self.runs)

    def __call__(self) -> int:
        from lstmjax.results import report

        print(report(self.runs, plot=self.plot, json_path=self.json))
        return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plot(Command):
    """Draw the learning curves of runs: perplexity against the step (needs matplotlib).

    Attributes:
      runs: run directories written by lstmjax train.
      output: the image to write: training as lines, validation as markers, one colour per run
        (needs matplotlib: pip install "lstmjax[plot]").
    """

    runs: RunDirs
    output: Annotated[pathlib.Path, tyro.conf.arg(aliases=("-o",), metavar="FILE.png")] = (
        pathlib.Path("curves.png"))

    def __post_init__(self):
        _require_runs(self.runs)

    def __call__(self) -> int:
        from lstmjax.results import plot_curves, read_run, step_curves

        plot_curves([step_curves(read_run(run)) for run in self.runs], self.output)
        print(f"wrote {self.output}")
        return 0


COMMANDS: dict[str, type[Command]] = {"train": Train, "eval": Eval, "sample": Sample,
                                      "report": Report, "plot": Plot, "import": Import,
                                      "export": Export}
"""The commands by name, in the order ``lstmjax --help`` lists them."""
