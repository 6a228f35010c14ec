"""What the worked examples (:mod:`experiments.adding_problem`, :mod:`experiments.memory_policy`)
do alike around their own training loop: the flags they share, settings from the flags and a
preset, and the ``results.json`` record that says how the run was made."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import jax


def parser(doc: str, out: pathlib.Path) -> argparse.ArgumentParser:
    """The flags every example takes: ``--quick`` (its small preset, for the tests), ``--seed``
    and ``--out`` (default ``out``); the description is ``doc``'s first paragraph. The example
    adds its own flags, those of its presets defaulting to None (:func:`preset_config`)."""
    flags = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    flags.add_argument("--quick", action="store_true", help="a tiny run for the test: seconds")
    flags.add_argument("--seed", type=int, default=0)
    flags.add_argument("--out", type=pathlib.Path, default=out,
                       help="folder for results.json (and the example's plot, if it draws one)")
    return flags


def preset_config(args: argparse.Namespace, *, quick: dict[str, Any], full: dict[str, Any]
                  ) -> dict[str, Any]:
    """The run's settings: every flag of ``args``, a flag left None taking its value from the
    preset (``quick`` with ``--quick``, else ``full``); without ``out``, which is where the
    results go, not how the run is made."""
    preset = quick if args.quick else full
    config = {**vars(args), **{k: v for k, v in preset.items() if getattr(args, k) is None}}
    del config["out"]
    return config


def save_record(out: pathlib.Path, module: str, argv: list[str] | None, config: dict[str, Any],
                wall_s: float, **results: Any) -> dict[str, Any]:
    """Write ``out/results.json`` and return its record: the command that reruns the run
    (``python -m module`` and ``argv``, the process's arguments if None), ``config``, the JAX
    backend, ``wall_s`` (seconds, to 0.1) and then ``results`` in their order."""
    argv = sys.argv[1:] if argv is None else argv
    record = {"command": " ".join([f"python -m {module}", *argv]), "config": config,
              "backend": jax.default_backend(), "wall_s": round(wall_s, 1), **results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
