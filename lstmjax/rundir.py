"""The run directory: its files, the checkpoint payload, and the rules for resuming a run.

Layout of a run directory (``workdir``)::

    config.json     the resolved Config (``Config.to_dict``), written when a run starts
    engines.json    what engine="auto" chose for each layer shape the run resolved (a train
                    step's layers, evaluation's), as ``lstmjax.engines.auto.pinned`` yields it:
                    ``{"<cell> I=.. B=.. T=..": {"engine", "unroll", "reason"}}``
    vocab.json      the vocabulary (``Vocab.to_json``)
    metrics.jsonl   one JSON record per log line, validation and test pass (lstmjax.metrics)
    checkpoints/    lstmjax.checkpoint.Checkpoints; each step saves the payload below
    train.lock      the trainer lock (lstmjax.runlock): the pid of the trainer holding it

The checkpoint payload of each step: the arrays ``{"state": TrainState, "carry": carry}`` and the
JSON extra ``{"position", "config", "vocab", "valid_loss", "valid_losses"}`` (the data position to
continue from, the run's config and vocabulary, the validation loss that ranks the step, or null,
and every validation loss of the run so far, oldest first, which NT-ASGD's trigger reads).
With optimizer="nt_asgd" the state holds the iterate average, ``state/average/params`` and
``state/average/start`` (the step it started at, -1 before; ``lstmjax.optim.IterateAverage``),
and readers restore ``state/average/params`` as the run's parameters.

Resume rules: a run started in a directory that holds one must use the same config, except the
fields marked resumable on the config dataclasses (``lstmjax.config.resumable_fields``: how long
to run, how often to report, where files are, and how the same model is computed) and
``model.vocab_size``, which training sets from the corpus; and the same vocabulary. A run resumed
with engine="auto" reuses the choices in engines.json (the same programs: bit-exact resume); a
named engine replaces them.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax

from lstmjax.config import Config, resumable_fields
from lstmjax.data import Position, Vocab

if TYPE_CHECKING:  # orbax loads on first use: lstmjax report reads a run without it
    from lstmjax.checkpoint import Checkpoints

CONFIG_FILE = "config.json"
ENGINES_FILE = "engines.json"
VOCAB_FILE = "vocab.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = "train.lock"


class RunDirectory:
    """The files of the run directory ``workdir`` (module docstring): paths, reads and writes."""

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir)
        self.config_file = self.path / CONFIG_FILE
        self.engines_file = self.path / ENGINES_FILE
        self.vocab_file = self.path / VOCAB_FILE
        self.metrics_file = self.path / METRICS_FILE
        self.checkpoints_dir = self.path / CHECKPOINTS_DIR
        self.lock_file = self.path / LOCK_FILE

    def read_config(self) -> Config:
        """The run's config.

        Raises:
          FileNotFoundError: ``workdir`` holds no run (no config.json).
        """
        if not self.config_file.exists():
            raise FileNotFoundError(
                f"{self.config_file} not found: {self.path} is not a run directory; train one "
                f"with lstmjax train --workdir {self.path}")
        return Config.from_dict(json.loads(self.config_file.read_text()))

    def read_vocab(self) -> Vocab:
        return Vocab.from_json(self.vocab_file.read_text())

    def write(self, config: Config, vocab: Vocab) -> None:
        """Write config.json and vocab.json (the directory must exist)."""
        replace_text(self.vocab_file, vocab.to_json())
        replace_text(self.config_file, json.dumps(config.to_dict(), indent=2))

    def read_engines(self) -> dict[str, dict[str, Any]] | None:
        """The engine choices saved by :meth:`write_engines`; None if there are none.

        Raises:
          ValueError: engines.json is not such a file.
        """
        if not self.engines_file.exists():
            return None
        try:
            choices = json.loads(self.engines_file.read_text())
            valid = isinstance(choices, dict) and all(
                isinstance(c, dict) and {"engine", "unroll", "reason"} <= set(c)
                for c in choices.values())
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"{self.engines_file} is not a file of engine choices; delete it to "
                             'let engine="auto" choose again')
        return choices

    def write_engines(self, choices: dict[str, dict[str, Any]]) -> None:
        """Write engines.json: what engine="auto" chose, by layer shape."""
        replace_text(self.engines_file, json.dumps(choices, indent=2, sort_keys=True))

    def checkpoints(self, config: Config) -> Checkpoints:
        """The run's checkpoints, keeping ``train.keep_checkpoints`` steps besides the best."""
        from lstmjax.checkpoint import Checkpoints

        return Checkpoints(self.checkpoints_dir, keep=config.train.keep_checkpoints)

    def check_request(self, config: Config, vocab: Vocab, checkpoints: Checkpoints) -> None:
        """Check a request to train ``config`` on ``vocab`` here against what the directory
        holds (config.json, vocab.json, the newest checkpoint's config), reading no array.

        Raises:
          ValueError: a field that may not change on resume differs (each one named, with both
            values), or the vocabulary differs.
        """
        if self.config_file.exists():
            check_resume(config, json.loads(self.config_file.read_text()), self.path)
        if self.vocab_file.exists() and self.read_vocab() != vocab:
            raise ValueError(f"{self.vocab_file} differs from the vocabulary of corpus "
                             f"{config.data.corpus!r}; start a new run in another workdir")
        latest = checkpoints.latest_step()
        if latest is not None:
            # the config stored with the checkpoint, checked before its arrays are: a config.json
            # deleted by hand does not turn another model into a layout mismatch
            check_resume(config, (checkpoints.extra(latest) or {}).get("config"), self.path)


def replace_text(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never a
    partial one: into a temporary file beside it, which then replaces it in one rename. The other
    processes of a multi-process run read config.json, vocab.json and engines.json while process
    0 writes them."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def check_resume(config: Config, saved: dict | None, workdir: pathlib.Path) -> None:
    """Raise a ValueError unless ``config`` may resume the run saved with config dict ``saved``
    (None: nothing saved). The message names every field that differs, with both values."""
    if saved is None:
        return
    saved = _flatten(Config.from_dict(saved).to_dict())  # fields added since: their defaults
    requested = _flatten(config.to_dict())
    free = resumable_fields() | {"model.vocab_size"}
    changed = sorted(k for k in requested if saved.get(k) != requested[k] and k not in free)
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {requested[k]!r}" for k in changed)
        raise ValueError(
            f"{workdir} holds a run with another config ({details}); resume it with the same "
            "settings, or start a new run in another workdir")


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def payload(state: Any, carry: Any) -> dict[str, Any]:
    """The arrays of a checkpoint: the train state and the carry to continue with."""
    return {"state": state, "carry": carry}


def extra(position: Position, config: Config, vocab: Vocab, valid_loss: float | None = None,
          valid_losses: Sequence[float] = ()) -> dict[str, Any]:
    """The JSON saved with a checkpoint's arrays."""
    return {"position": position.to_dict(), "config": config.to_dict(),
            "vocab": json.loads(vocab.to_json()), "valid_loss": valid_loss,
            "valid_losses": list(valid_losses)}


def save(checkpoints: Checkpoints, step: int, state: Any, carry: Any, position: Position,
         config: Config, vocab: Vocab, *, valid_loss: float | None = None,
         valid_losses: Sequence[float] = (), force: bool = False) -> None:
    """Save the payload of ``step``, ranked by ``valid_loss`` (None: unranked), with the run's
    validation losses so far."""
    checkpoints.save(step, payload(state, carry),
                     extra(position, config, vocab, valid_loss, valid_losses),
                     metric=valid_loss, force=force)


def restore_training(checkpoints: Checkpoints, state: Any, carry: Any, **options: Any
                     ) -> tuple[Any, Any, Position, dict[str, Any]]:
    """``(state, carry, position, extra)`` of the newest intact step, restored into the
    structure of ``state`` and ``carry`` (arrays or ``jax.ShapeDtypeStruct``); ``options`` go to
    ``Checkpoints.restore`` (``on_warning``, ``quarantine``)."""
    restored, saved = checkpoints.restore(payload(state, carry), **options)
    return (restored["state"], restored["carry"], Position.from_dict(saved["position"]), saved)


def restore_params(checkpoints: Checkpoints, params: Any, *, step: int | str = "latest",
                   averaged: bool = False, **options: Any) -> tuple[Any, int, dict[str, Any]]:
    """``(params, step, extra)`` of a checkpoint (an int step, "latest" or "best"), restored into
    the structure of ``params``, reading neither the optimizer state nor the carry; falls back
    past damaged steps as ``Checkpoints.restore`` does (``options``: ``on_warning``). With
    ``averaged`` (NT-ASGD), the iterate average is read instead of the parameters."""
    state = {"step": jax.ShapeDtypeStruct((), "int32")}
    if averaged:
        state["average"] = {"params": params}
    else:
        state["params"] = params
    restored, saved = checkpoints.restore({"state": state}, step=step, partial=True, **options)
    state = restored["state"]
    return (state["average"] if averaged else state)["params"], int(state["step"]), saved
