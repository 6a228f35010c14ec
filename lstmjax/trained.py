"""A trained run read back (``lstmjax eval``, ``sample``, ``export``): its parameters, evaluated on
a split, sampled from.

Readers restore the parameters of one checkpoint alone, with :func:`lstmjax.build.load_params`:
no optimizer, no train state, and the optimizer state is not read. ``checkpoint`` is
``"latest"``, ``"best"`` (the lowest validation loss) or a step number; damaged steps are skipped
for the newest (or best) intact one, as ``Checkpoints.restore`` does.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Literal

from lstmjax._checks import FieldError, require_choice, require_int, require_positive_int
from lstmjax.build import TrainedModel, load_params
from lstmjax.config import Config
from lstmjax.data import Vocab, load_corpus
from lstmjax.model import RNNLanguageModel
from lstmjax.rundir import RunDirectory
from lstmjax.sample import generate

CheckpointChoice = int | Literal["latest", "best"]
"""Which checkpoint of a run to read: its newest, its best (lowest validation loss) or the step
number of one."""


def _restore(workdir: str | pathlib.Path, checkpoint: CheckpointChoice
             ) -> tuple[TrainedModel, Vocab]:
    check_checkpoint(checkpoint)
    directory = RunDirectory(workdir)
    config = directory.read_config()
    with directory.checkpoints(config) as checkpoints:
        trained = load_params(config, checkpoints=checkpoints, step=checkpoint)
    return trained, directory.read_vocab()


def check_checkpoint(checkpoint: object) -> None:
    """Raise a :class:`~lstmjax._checks.FieldError` (field ``checkpoint``) unless
    ``checkpoint`` is "latest", "best" or a step number (an int >= 0, not a bool)."""
    if isinstance(checkpoint, str) and checkpoint in ("latest", "best"):
        return
    try:
        require_int("checkpoint", checkpoint)
    except FieldError:
        raise FieldError("checkpoint", f"checkpoint must be 'latest', 'best' or a step number "
                         f"(an int >= 0), got {checkpoint!r}") from None


def load_run(workdir: str | pathlib.Path, *, checkpoint: CheckpointChoice = "latest"
             ) -> tuple[Config, Vocab, RNNLanguageModel, Any, int]:
    """``(config, vocab, model, params, step)`` of a checkpoint (:data:`CheckpointChoice`) of the run
    in ``workdir``.

    Raises:
      FieldError: ``checkpoint`` is none of :data:`CheckpointChoice`.
      FileNotFoundError: ``workdir`` is not a run directory, holds no checkpoint, or none of the
        step number ``checkpoint`` (the message lists the steps it holds).
      lstmjax.checkpoint.DamagedCheckpointError: no intact checkpoint to read.
    """
    trained, vocab = _restore(workdir, checkpoint)
    return trained.config, vocab, trained.model, trained.params, trained.step


def evaluate_run(workdir: str | pathlib.Path, *, split: str = "valid",
                 checkpoint: CheckpointChoice = "latest", batch_size: int | None = None,
                 data_dir: str | None = None) -> dict[str, Any]:
    """Loss, perplexity and bits per token of a run's checkpoint (:data:`CheckpointChoice`) on
    ``split`` of its corpus.

    ``batch_size`` replaces the run's ``train.eval_batch_size``, ``data_dir`` its
    ``data.data_dir`` (corpus files moved since training). Raises as :func:`load_run`, and a
    FieldError for a ``split`` other than "valid" and "test", or a ``batch_size`` below 1.
    """
    require_choice("split", split, ("valid", "test"))
    if batch_size is not None:
        require_positive_int("batch_size", batch_size)
    trained, _ = _restore(workdir, checkpoint)
    data = trained.config.data
    corpus = load_corpus(**{**dataclasses.asdict(data), "data_dir": data_dir or data.data_dir})
    ids = {"valid": corpus.valid, "test": corpus.test}[split]
    if ids is None:
        raise ValueError(f"corpus {data.corpus!r} with data.split={data.split!r} has no {split} "
                         "split")
    result = trained.evaluate(ids, batch_size=batch_size)
    return {"workdir": str(workdir), "step": trained.step, "split": split, **result}


def sample_run(workdir: str | pathlib.Path, *, prime: str | None, length: int,
               temperature: float = 1.0, top_k: int = 0, seed: int = 0,
               checkpoint: CheckpointChoice = "latest") -> str:
    """The priming text (None: the vocabulary's first token) followed by ``length`` tokens
    sampled from a run's checkpoint (:data:`CheckpointChoice`). Raises as :func:`load_run`."""
    trained, vocab = _restore(workdir, checkpoint)
    prime = prime if prime is not None else vocab.tokens[0]
    return generate(trained.model, {"params": trained.params}, vocab, prime, length=length,
                    temperature=temperature, top_k=top_k, seed=seed)
