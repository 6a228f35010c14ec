"""``lstmjax train | eval | sample``: argument parsing only; the work is in the library.

Configuration overrides are parsed by tyro from the typed dataclasses of :mod:`lstmjax.config`,
so an unknown key or a bad value stops the command before anything runs, listing the choices.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from lstmjax.presets import PRESETS

_USAGE = """usage: lstmjax {train,eval,sample} ...

  lstmjax train  [--preset NAME] [--workdir DIR] [--model.hidden-size 512 ...]
                 train, or resume the run in DIR (default runs/<preset>)
  lstmjax eval   [--workdir DIR] [--split valid|test] [--checkpoint latest|best]
  lstmjax sample [--workdir DIR] [--prime TEXT] [--length N] [--temperature T] [--top-k K]
                 [--seed S]

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
    commands = {"train": _train, "eval": _eval, "sample": _sample}
    if command not in commands:
        print(f"lstmjax: unknown command {command!r}; choose one of {sorted(commands)}\n\n{_USAGE}",
              file=sys.stderr)
        return 2
    try:
        return commands[command](argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"lstmjax {command}: error: {error}", file=sys.stderr)
        return 1


def _train(argv: list[str]) -> int:
    import tyro

    from lstmjax.config import Config
    from lstmjax.train import train

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--workdir", type=pathlib.Path)
    known, overrides = parser.parse_known_args(argv)
    config = tyro.cli(
        Config, args=overrides, default=PRESETS[known.preset],
        prog="lstmjax train [--preset NAME] [--workdir DIR]",
        description=f"Train preset {known.preset!r} (presets: {', '.join(PRESETS)}), with "
        "overrides. The run directory defaults to runs/<preset>; a directory that holds a run is "
        "resumed from its latest checkpoint.",
    )
    workdir = known.workdir or pathlib.Path("runs") / known.preset
    summary = train(config, workdir)
    valid = summary["valid"]
    print(f"\nrun directory: {workdir}")
    print(f"step {summary['step']}: valid loss {valid['loss']:.4f}, perplexity "
          f"{valid['perplexity']:.3f}, {valid['bits_per_token']:.3f} bits per token")
    if "test" in summary:
        print(f"test perplexity {summary['test']['perplexity']:.3f}")
    if "sample" in summary:
        print(f"\nsample:\n{summary['sample']}")
    return 0


def _run_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("runs/default"),
                        help="run directory written by lstmjax train (default: runs/default)")
    parser.add_argument("--checkpoint", default="latest", choices=["latest", "best"],
                        help="which checkpoint to load (default: latest)")
    return parser


def _eval(argv: list[str]) -> int:
    from lstmjax.rundir import evaluate_run

    parser = _run_parser("lstmjax eval", "Evaluate a trained run on a split of its corpus.")
    parser.add_argument("--split", default="valid", choices=["valid", "test"],
                        help="split to evaluate (default: valid)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="evaluation streams (default: the run's eval_batch_size)")
    args = parser.parse_args(argv)
    result = evaluate_run(args.workdir, split=args.split, checkpoint=args.checkpoint,
                          batch_size=args.batch_size)
    print(json.dumps(result, indent=2))
    return 0


def _sample(argv: list[str]) -> int:
    from lstmjax.rundir import sample_run

    parser = _run_parser("lstmjax sample", "Generate text from a trained run.")
    parser.add_argument("--prime", default=None,
                        help="priming text (default: the first token of the validation split)")
    parser.add_argument("--length", type=int, default=300, help="tokens to generate (default 300)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="> 0; lower is more conservative (default 1.0)")
    parser.add_argument("--top-k", type=int, default=0,
                        help="sample among the k most likely tokens; 0 for all (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    args = parser.parse_args(argv)
    print(sample_run(args.workdir, prime=args.prime, length=args.length,
                     temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                     checkpoint=args.checkpoint))
    return 0
