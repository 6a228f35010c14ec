"""A trained run read back (``lstmjax eval``, ``sample``, ``export``): its parameters, evaluated on
a split, sampled from.

Readers restore the parameters of one checkpoint alone (``"latest"``, ``"best"`` or a step), with
:func:`lstmjax.build.setup`: no optimizer, no train state, and the optimizer state is not read.
Damaged steps are skipped for the newest (or best) intact one, as ``Checkpoints.restore`` does.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from lstmjax.config import Config
from lstmjax.data import Vocab, load_corpus
from lstmjax.model import RNNLanguageModel
from lstmjax.rundir import RunDirectory
from lstmjax.sample import generate
from lstmjax.build import Run, setup


def _restore(workdir: str | pathlib.Path, checkpoint: str | int) -> tuple[Run, Vocab]:
    directory = RunDirectory(workdir)
    config = directory.read_config()
    with directory.checkpoints(config) as checkpoints:
        run = setup(config, checkpoints=checkpoints, step=checkpoint)
    return run, directory.read_vocab()


def load_run(workdir: str | pathlib.Path, *, checkpoint: str | int = "latest"
             ) -> tuple[Config, Vocab, RNNLanguageModel, Any, int]:
    """``(config, vocab, model, params, step)`` of the ``"latest"`` or ``"best"`` checkpoint (or
    an int step) of the run in ``workdir``.

    Raises:
      FileNotFoundError: ``workdir`` is not a run directory, or holds no checkpoint.
      lstmjax.checkpoint.DamagedCheckpointError: no intact checkpoint to read.
    """
    run, vocab = _restore(workdir, checkpoint)
    return run.config, vocab, run.model, run.params, run.step


def evaluate_run(workdir: str | pathlib.Path, *, split: str = "valid", checkpoint: str = "latest",
                 batch_size: int | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Loss, perplexity and bits per token of a run's checkpoint on ``split`` of its corpus.

    ``batch_size`` replaces the run's ``train.eval_batch_size``, ``data_dir`` its
    ``data.data_dir`` (corpus files moved since training).
    """
    run, _ = _restore(workdir, checkpoint)
    data = run.config.data
    corpus = load_corpus(**{**dataclasses.asdict(data), "data_dir": data_dir or data.data_dir})
    ids = {"valid": corpus.valid, "test": corpus.test}[split]
    if ids is None:
        raise ValueError(f"corpus {data.corpus!r} with data.split={data.split!r} has no {split} "
                         "split")
    result = run.evaluate(run.params, ids, batch_size=batch_size)
    return {"workdir": str(workdir), "step": run.step, "split": split, **result}


def sample_run(workdir: str | pathlib.Path, *, prime: str | None, length: int,
               temperature: float = 1.0, top_k: int = 0, seed: int = 0,
               checkpoint: str = "latest") -> str:
    """The priming text (None: the vocabulary's first token) followed by ``length`` tokens
    sampled from a run's checkpoint."""
    run, vocab = _restore(workdir, checkpoint)
    prime = prime if prime is not None else vocab.tokens[0]
    return generate(run.model, {"params": run.params}, vocab, prime, length=length,
                    temperature=temperature, top_k=top_k, seed=seed)
