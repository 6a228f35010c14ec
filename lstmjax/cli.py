"""``lstmjax train | eval | sample | ...``: argument parsing only; the work is in the library.

Configuration overrides are parsed by tyro from the typed dataclasses of :mod:`lstmjax.config`,
so an unknown key or a bad value stops the command before anything runs, listing the choices.
A user mistake ends in one ``lstmjax CMD: error: ...`` line on stderr and exit code 1, with the
config fields that library errors name (``train.max_steps``) written as the flags that set them
(``--train.max-steps``); a real bug keeps its traceback. A run stopped by SIGINT or SIGTERM exits
with 130 or 143 after one line saying where it stopped. One process of a multi-process run
(``lstmjax train --coordinator-address ...``) ends the same way, its lines prefixed with its
process number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import sys
import traceback

from lstmjax.presets import PRESETS

_USAGE = """usage: lstmjax {train,eval,sample,report,plot,import,export} ...

  lstmjax train  [--preset NAME] [--workdir DIR] [--model.hidden-size 512 ...]
                 [--coordinator-address HOST:PORT --num-processes N --process-id I]
                 train, or resume the run in DIR (default runs/<preset>), in one process or
                 as process I of N
  lstmjax eval   [--preset NAME | --workdir DIR] [--split valid|test] [--checkpoint latest|best]
                 [--data.data-dir DIR]
  lstmjax sample [--preset NAME | --workdir DIR] [--prime TEXT] [--length N] [--temperature T]
                 [--top-k K] [--seed S]
  lstmjax report RUN_DIR [RUN_DIR ...] [--plot FILE.png] [--json FILE]
                 a table of runs: steps, last and best valid, test, tokens/s, time
  lstmjax plot   RUN_DIR [RUN_DIR ...] [--output FILE.png]   their learning curves
  lstmjax import WEIGHTS --workdir DIR (--corpus NAME | --vocab FILE) [--forget-bias F]
                 a TF1 (.npz, checkpoint) or torch (.pt) language model as a run directory
  lstmjax export --workdir DIR OUT.npz|OUT.pt [--names ptb|r2rt]

presets: """ + ", ".join(PRESETS) + """
Each command's --help lists its options."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lstmjax`` console script and of ``python -m lstmjax``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and not argv[0].startswith("-") else None
    if command is None and argv and argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0
    command = command or "train"
    commands = {"train": _train, "eval": _eval, "sample": _sample, "report": _report,
                "plot": _plot, "import": _import, "export": _export}
    if command not in commands:
        print(f"lstmjax: unknown command {command!r}; choose one of {sorted(commands)}\n\n{_USAGE}",
              file=sys.stderr)
        return 2
    from lstmjax.preemption import Interrupted

    try:
        return commands[command](argv)
    except Interrupted as stop:
        print(f"lstmjax {command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # eval, sample: nothing to save
        print(f"lstmjax {command}: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as error:
        print(f"lstmjax {command}: error: {as_flags(str(error))}", file=sys.stderr)
        return 1


_USER_ERRORS = (ValueError, OSError, FloatingPointError, ModuleNotFoundError)
"""What a user's mistake raises (a bad flag, a missing file, a diverged run): one line, no
traceback."""


def as_flags(message: str) -> str:
    """``message`` with each config field it names (``train.max_steps``) written as its flag
    (``--train.max-steps``); words that only look like one (``ptb.train.txt``) are left alone."""
    from lstmjax.config import Config

    sections = {field.name: {f.name for f in dataclasses.fields(type(field.default))}
                for field in dataclasses.fields(Config)}

    def flag(match: re.Match) -> str:
        section, name = match.group(1), match.group(2)
        if name not in sections.get(section, ()):
            return match.group(0)
        return f"--{section}.{name.replace('_', '-')}"

    return re.sub(r"(?<![\w./-])(model|data|optim|train)\.([a-z][a-z0-9_]*)(?![\w.(])", flag,
                  message)


def _train(argv: list[str]) -> int:
    import tyro

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    known, _ = parser.parse_known_args(argv)
    args = tyro.cli(
        _train_arguments(), args=argv,
        default=_train_arguments()(config=PRESETS[known.preset], preset=known.preset),
        prog="lstmjax train",
        description=f"Train, or resume, a run of preset {known.preset!r}, with overrides of its "
        "fields. A run directory that holds a run is resumed from its newest intact checkpoint; "
        "SIGINT or SIGTERM saves a checkpoint and stops (exit 130 / 143).",
    )
    workdir = args.workdir or pathlib.Path("runs") / args.preset
    from lstmjax.parallel import initialize

    if initialize(args.coordinator_address, args.num_processes, args.process_id):
        _exit_as_one_of_several(lambda: _train_and_report(args.config, workdir), workdir)
    return _train_and_report(args.config, workdir)


def _train_and_report(config, workdir: pathlib.Path) -> int:
    from lstmjax.parallel import is_primary
    from lstmjax.train import train

    summary = train(config, workdir)
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


def _train_arguments() -> type:
    """The dataclass that tyro turns into ``lstmjax train``'s flags: ``--preset``, ``--workdir``
    and every config field without a prefix (``--model.hidden-size``)."""
    from typing import Annotated, Literal

    import tyro

    from lstmjax.config import Config

    return dataclasses.make_dataclass("TrainArguments", [
        ("config", Annotated[Config, tyro.conf.arg(name="")]),
        ("preset", Annotated[Literal[tuple(PRESETS)], tyro.conf.arg(
            help="named configuration that the other flags override (lstmjax/presets.py)")],
         dataclasses.field(default="default")),
        ("workdir", Annotated[pathlib.Path | None, tyro.conf.arg(
            metavar="DIR", help="run directory to write, or to resume",
            help_behavior_hint="(default: runs/PRESET)")],
         dataclasses.field(default=None)),
        ("coordinator_address", Annotated[str | None, tyro.conf.arg(
            metavar="HOST:PORT", help="a run of several processes: where process 0 serves the "
            "coordinator, reachable from every process",
            help_behavior_hint="(default: $LSTMJAX_COORDINATOR_ADDRESS; with none of these three "
            "flags and variables set: one process)")],
         dataclasses.field(default=None)),
        ("num_processes", Annotated[int | None, tyro.conf.arg(
            metavar="N", help="processes of the run, each started with the same flags",
            help_behavior_hint="(default: $LSTMJAX_NUM_PROCESSES, else what JAX detects on SLURM, Open "
            "MPI or Kubernetes)")],
         dataclasses.field(default=None)),
        ("process_id", Annotated[int | None, tyro.conf.arg(
            metavar="I", help="this process's number, 0 to N - 1; process 0 logs and prints",
            help_behavior_hint="(default: $LSTMJAX_PROCESS_ID, else what JAX detects on SLURM, Open "
            "MPI or Kubernetes)")],
         dataclasses.field(default=None)),
    ], frozen=True)


def _exit_as_one_of_several(run, workdir: pathlib.Path):
    """Run ``run()`` as one process of a multi-process run and exit.

    A process that fails or is stopped prints its one line (prefixed with its number) and leaves
    at once with ``os._exit``: the orderly shutdown of ``jax.distributed`` waits for every
    process and would abort with a C++ stack trace when another one is gone. A process that
    finishes shuts down with the others."""
    import jax

    from lstmjax.preemption import Interrupted

    who = f"lstmjax train (process {jax.process_index()} of {jax.process_count()})"
    try:
        code = run()
    except Interrupted as stop:
        message, code = str(stop), stop.exit_code
    except BaseException as error:
        # A collective fails with a JaxRuntimeError when another process died: no traceback
        if not isinstance(error, (*_USER_ERRORS, jax.errors.JaxRuntimeError)):
            traceback.print_exc()
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        message, code = (f"error: {as_flags(first)}. Every process of a run must reach its end: "
                         "when one stops, the others fail; start them all again with the same "
                         f"commands to resume from the newest checkpoint in {workdir}"), 1
    else:
        jax.distributed.shutdown()
        sys.exit(code)
    print(f"{who}: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def _run_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="the preset trained, for the default --workdir (default: default)")
    parser.add_argument("--workdir", type=pathlib.Path, default=None,
                        help="run directory written by lstmjax train (default: runs/PRESET)")
    parser.add_argument("--checkpoint", default="latest", choices=["latest", "best"],
                        help="which checkpoint to load: the newest intact one, or the intact one "
                        "with the lowest validation loss (default: latest)")
    return parser


def _workdir(args: argparse.Namespace) -> pathlib.Path:
    return args.workdir or pathlib.Path("runs") / args.preset


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _eval(argv: list[str]) -> int:
    from lstmjax.trained import evaluate_run

    parser = _run_parser("lstmjax eval", "Evaluate a trained run on a split of its corpus.")
    parser.add_argument("--split", default="valid", choices=["valid", "test"],
                        help="split to evaluate (default: valid)")
    parser.add_argument("--batch-size", type=_at_least(1), default=None,
                        help="evaluation streams (default: the run's train.eval_batch_size)")
    parser.add_argument("--data.data-dir", dest="data_dir", default=None, metavar="DIR",
                        help="where the corpus files are now, if they moved since training "
                        "(default: the run's data.data_dir, else $LSTMJAX_DATA_DIR, else the "
                        "download cache)")
    args = parser.parse_args(argv)
    result = evaluate_run(_workdir(args), split=args.split, checkpoint=args.checkpoint,
                          batch_size=args.batch_size, data_dir=args.data_dir)
    print(json.dumps(result, indent=2))
    return 0


def _sample(argv: list[str]) -> int:
    from lstmjax.trained import sample_run

    parser = _run_parser("lstmjax sample", "Generate text from a trained run.")
    parser.add_argument("--prime", default=None,
                        help="priming text (default: the vocabulary's first token: the most "
                        "frequent word of a word corpus, 'the' on PTB; the lowest character, "
                        "usually a newline, of a character corpus)")
    parser.add_argument("--length", type=_at_least(1), default=300,
                        help="tokens to generate after the prime (default 300)")
    parser.add_argument("--temperature", type=_positive_float, default=1.0,
                        help="> 0; lower is more conservative, and tends to always picking the "
                        "most likely token (default 1.0)")
    parser.add_argument("--top-k", type=_at_least(0), default=0,
                        help="sample among the k most likely tokens; 0 for all (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    args = parser.parse_args(argv)
    print(sample_run(_workdir(args), prime=args.prime, length=args.length,
                     temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                     checkpoint=args.checkpoint))
    return 0


def _report(argv: list[str]) -> int:
    from lstmjax.results import report

    parser = argparse.ArgumentParser(
        prog="lstmjax report",
        description="Summarize run directories written by lstmjax train in one Markdown table "
        "(from their config.json and metrics.jsonl), and optionally plot their learning curves.")
    parser.add_argument("runs", nargs="+", type=pathlib.Path, metavar="RUN_DIR",
                        help="run directories (lstmjax train --workdir), of any corpora")
    parser.add_argument("--plot", type=pathlib.Path, metavar="FILE.png",
                        help="draw train and valid perplexity against step, one colour per run "
                        "(needs matplotlib: pip install \"lstmjax[plot]\")")
    parser.add_argument("--json", type=pathlib.Path, metavar="FILE",
                        help="write the summaries as JSON (losses in nats per token)")
    args = parser.parse_args(argv)
    print(report(args.runs, plot=args.plot, json_path=args.json))
    return 0


def _plot(argv: list[str]) -> int:
    from lstmjax.results import plot_curves, read_run, step_curves

    parser = argparse.ArgumentParser(
        prog="lstmjax plot",
        description="Draw the learning curves of run directories written by lstmjax train: "
        "training (lines) and validation (markers) perplexity against the step, one colour per "
        "run. Needs matplotlib: pip install \"lstmjax[plot]\".")
    parser.add_argument("runs", nargs="+", type=pathlib.Path, metavar="RUN_DIR",
                        help="run directories (lstmjax train --workdir)")
    parser.add_argument("--output", "-o", type=pathlib.Path, default=pathlib.Path("curves.png"),
                        metavar="FILE.png", help="the image to write (default: curves.png)")
    args = parser.parse_args(argv)
    plot_curves([step_curves(read_run(run)) for run in args.runs], args.output)
    print(f"wrote {args.output}")
    return 0


def _import(argv: list[str]) -> int:
    from lstmjax import interop

    parser = argparse.ArgumentParser(
        prog="lstmjax import",
        description="Import a language model trained with TensorFlow 1 or PyTorch into a run "
        "directory that lstmjax eval, sample and train read. TF1: the PTB tutorial's names "
        "(Model/embedding, Model/RNN/multi_rnn_cell/cell_k/..., Model/softmax_w, softmax_b) or "
        "r2rt's (embedding_matrix, softmax/W, softmax/b). torch: an nn.Embedding + nn.LSTM/GRU/RNN "
        "+ nn.Linear state dict. The vocabulary is not in the weights: give the corpus the model "
        "was trained on (--corpus) or its vocabulary file (--vocab).")
    parser.add_argument("weights", type=pathlib.Path,
                        help="a .npz of TF variables, a TF checkpoint prefix (needs TensorFlow), "
                        "or a torch .pt/.pth state dict")
    parser.add_argument("--workdir", type=pathlib.Path, required=True,
                        help="the new run directory to write")
    parser.add_argument("--corpus", default=None,
                        help="the corpus the model was trained on: its vocabulary gives the ids, "
                        "and lstmjax eval scores it")
    parser.add_argument("--data-dir", default=None, help="where the corpus files are")
    parser.add_argument("--vocab", type=pathlib.Path, default=None,
                        help="the vocabulary: a vocab.json of lstmjax, or a text file with one "
                        "word per line (line k is id k). With --corpus it must be that corpus's")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="the preset whose training and evaluation settings the run gets "
                        "(default: default); the model's shape comes from the weights")
    parser.add_argument("--forget-bias", type=float, default=None,
                        help="TF LSTMs: the forget_bias the cell was built with (not stored in the "
                        "weights: BasicLSTMCell's default is 1.0, the PTB tutorial's 0.0)")
    parser.add_argument("--scope", default=None,
                        help="TF: path components of the cell stack to read, where there are "
                        "several")
    args = parser.parse_args(argv)
    config = interop.import_run(args.weights, args.workdir, corpus=args.corpus,
                                vocab_file=args.vocab, data_dir=args.data_dir,
                                base=PRESETS[args.preset], forget_bias=args.forget_bias,
                                scope=args.scope)
    print(f"imported {args.weights} into {args.workdir}: {config.model.num_layers} x "
          f"{config.model.cell} (hidden {config.model.hidden_size}), vocabulary "
          f"{config.model.vocab_size}")
    return 0


def _export(argv: list[str]) -> int:
    from lstmjax import interop

    parser = _run_parser("lstmjax export", "Write a run's model as TF1 variables (.npz) or a "
                         "torch state dict (.pt: encoder, rnn, decoder modules).")
    parser.add_argument("out", type=pathlib.Path, help="OUT.npz (TF1 names) or OUT.pt (torch)")
    parser.add_argument("--names", default="ptb", choices=["ptb", "r2rt"],
                        help="TF1 naming convention (default: ptb, the PTB tutorial's)")
    args = parser.parse_args(argv)
    step, count = interop.export_run(_workdir(args), args.out, checkpoint=args.checkpoint,
                                     names=args.names)
    print(f"wrote step {step} of {_workdir(args)} to {args.out} ({count} arrays)")
    return 0
