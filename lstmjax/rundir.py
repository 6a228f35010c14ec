"""A run directory written by :func:`lstmjax.train.train`: load it, evaluate it, sample from it."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax

from lstmjax.checkpoint import Checkpoints
from lstmjax.config import Config
from lstmjax.data import Vocab, load_corpus
from lstmjax.model import RNNLanguageModel, zero_carry
from lstmjax.optim import make_optimizer
from lstmjax.sample import generate
from lstmjax.train import evaluate, init_state


def load_run(workdir: str | pathlib.Path, *, checkpoint: str = "latest"
             ) -> tuple[Config, Vocab, RNNLanguageModel, Any, int]:
    """``(config, vocab, model, params, step)`` of the ``"latest"`` or ``"best"`` checkpoint."""
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{config_path} not found: {workdir} is not a run directory; train one with "
            f"lstmjax train --workdir {workdir}"
        )
    config = Config.from_dict(json.loads(config_path.read_text()))
    vocab = Vocab.from_json((workdir / "vocab.json").read_text())
    model = RNNLanguageModel(config.model)
    optimizer, _ = make_optimizer(config.optim, steps_per_epoch=1)
    batch_size = config.train.batch_size
    target = jax.eval_shape(lambda: {
        "state": init_state(model, optimizer, seed=0, batch_size=batch_size),
        "carry": zero_carry(config.model, batch_size)})
    with Checkpoints(workdir / "checkpoints", keep=config.train.keep_checkpoints) as checkpoints:
        restored, _ = checkpoints.restore(target, step=checkpoint)
    state = restored["state"]
    return config, vocab, model, state.params, int(state.step)


def evaluate_run(workdir: str | pathlib.Path, *, split: str = "valid", checkpoint: str = "latest",
                 batch_size: int | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """Loss, perplexity and bits per token of a run's checkpoint on ``split`` of its corpus.

    ``data_dir`` replaces the run's ``data.data_dir`` (corpus files moved since training).
    """
    config, _, model, params, step = load_run(workdir, checkpoint=checkpoint)
    data = config.data
    corpus = load_corpus(**{**dataclasses.asdict(data), "data_dir": data_dir or data.data_dir})
    ids = {"valid": corpus.valid, "test": corpus.test}[split]
    if ids is None:
        raise ValueError(f"corpus {data.corpus!r} with split {data.split!r} has no {split} split")
    result = evaluate(model, params, ids, batch_size=batch_size or config.train.eval_batch_size,
                      seq_len=config.train.eval_seq_len)
    return {"workdir": str(workdir), "step": step, "split": split, **result}


def sample_run(workdir: str | pathlib.Path, *, prime: str | None, length: int,
               temperature: float = 1.0, top_k: int = 0, seed: int = 0,
               checkpoint: str = "latest") -> str:
    """The priming text followed by ``length`` tokens sampled from a run's checkpoint."""
    _, vocab, model, params, _ = load_run(workdir, checkpoint=checkpoint)
    prime = prime if prime is not None else vocab.tokens[0]
    return generate(model, {"params": params}, vocab, prime, length=length,
                    temperature=temperature, top_k=top_k, seed=seed)
