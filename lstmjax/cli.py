"""``lstmjax train | eval | sample | report | plot | import | export``: parse the command line
into a command of :mod:`lstmjax.commands` and call it.

tyro builds one parser from the commands' dataclasses, a subcommand each, so the help, the
choices and the errors of every flag come from their types and docstrings: an unknown flag or a
bad value stops the command before anything runs (tyro's message, exit code 2). No command
(``lstmjax --preset tiny``) means ``train``. A mistake that the library finds ends in one
``lstmjax CMD: error: ...`` line on stderr and exit code 1, the field it names written as the
flag that sets it (``--train.max-steps``); a real bug keeps its traceback. A run stopped by SIGINT
or SIGTERM exits with 130 or 143 after one line saying where it stopped. One process of a
multi-process run (``lstmjax train --coordinator-address ...``) ends the same way, its lines
prefixed with its process number.
"""

from __future__ import annotations

import itertools
import sys
from typing import Annotated, Union

import tyro

from lstmjax.commands import COMMANDS, USER_ERRORS, Train
from lstmjax.presets import PRESETS

DESCRIPTION = ("Train, evaluate and sample recurrent language models; read, import and export "
               "their runs. Presets: " + ", ".join(PRESETS) + ". lstmjax CMD --help lists the "
               "flags of a command; no command means train.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lstmjax`` console script and of ``python -m lstmjax``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "train")
    name, args = argv[0], argv[1:]
    if name in COMMANDS:
        kind = COMMANDS[name]
        defaults = {"default": _train_defaults(args)} if kind is Train else {}
        command = tyro.cli(kind, args=args, prog=f"lstmjax {name}", **defaults)
    else:  # --help, or no such command: tyro lists the commands
        command = tyro.cli(_commands(), args=argv, prog="lstmjax", description=DESCRIPTION)
    from lstmjax.preemption import Interrupted

    try:
        return command()
    except Interrupted as stop:
        print(f"lstmjax {name}: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # eval, sample: nothing to save
        print(f"lstmjax {name}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(f"lstmjax {name}: error: {command.describe(error)}", file=sys.stderr)
        return 1


def _commands() -> object:
    """The type of ``lstmjax --help``: a union with a subcommand per command."""
    return Union[tuple(Annotated[kind, tyro.conf.subcommand(name)]  # noqa: UP007 (of a tuple)
                       for name, kind in COMMANDS.items())]


def _train_defaults(args: list[str]) -> Train:
    """Train's defaults: the configuration of the ``--preset`` in ``args`` ("default" when there
    is none or it is not a preset, which tyro then reports with the choices)."""
    given = [value for flag, value in itertools.pairwise(args) if flag == "--preset"]
    given += [arg.partition("=")[2] for arg in args if arg.startswith("--preset=")]
    preset = given[-1] if given and given[-1] in PRESETS else "default"
    return Train(config=PRESETS[preset], preset=preset)
