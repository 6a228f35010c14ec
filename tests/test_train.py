"""Training on the tiny preset: the loss falls, resume is bit-identical (also after SIGKILL),
evaluation is independent of windowing and matches a hand computation, sampling is seeded and
respects top-k, and a NaN loss stops the run with its checkpoint intact."""

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstmjax.train
from lstmjax import ModelConfig, RNNLanguageModel, zero_carry
from lstmjax.checkpoint import Checkpoints
from lstmjax.data import Vocab
from lstmjax.metrics import MetricsLog
from lstmjax.presets import PRESETS
from lstmjax.rundir import load_run
from lstmjax.sample import generate, generate_ids, next_token_distribution
from lstmjax.train import evaluate, train

TINY = PRESETS["tiny"]

pytestmark = pytest.mark.usefixtures("standard_promotion")



def _tiny(**train_overrides):
    return dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, **train_overrides))


def _quiet_train(config, workdir):
    return train(config, workdir, progress=False, print_fn=lambda *a: None)


def _params(workdir):
    return load_run(workdir)[3]


def test_loss_falls_and_run_directory_is_complete(tmp_path):
    summary = _quiet_train(_tiny(max_steps=40, log_every=5, eval_every=20), tmp_path)
    records = MetricsLog(tmp_path / "metrics.jsonl").read()
    train_losses = [r["loss"] for r in records if r["split"] == "train"]
    assert train_losses[-1] < train_losses[0] - 0.3
    assert {"grad_norm", "learning_rate", "tokens_per_s", "step_time_s", "perplexity"} <= set(records[0])
    assert records[0]["engine"].startswith("scan unroll=1 (auto: ")  # H=16: the small-H row  # what "auto" chose, and why
    assert summary["step"] == 40 and np.isfinite(summary["valid"]["loss"])
    assert summary["sample"] and (tmp_path / "config.json").exists() and (tmp_path / "vocab.json").exists()


def test_bfloat16_compute_tracks_float32_loss(tmp_path):
    """bfloat16 matmuls (float32 parameters, state, gate math and loss) follow the float32 run on
    the fused engine (its hand-written backward casts by hand): every logged training loss within
    0.03 nats of it over 30 steps, and it still falls."""
    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = dataclasses.replace(
            _tiny(max_steps=30, log_every=5, eval_every=30, sample_length=0),
            model=dataclasses.replace(TINY.model, dtype=dtype, engine="fused"))
        _quiet_train(config, tmp_path / dtype)
        records = MetricsLog(tmp_path / dtype / "metrics.jsonl").read()
        losses[dtype] = np.array([r["loss"] for r in records if r["split"] == "train"])
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0, atol=0.03)
    assert losses["bfloat16"][-1] < losses["bfloat16"][0] - 0.2


def test_resume_is_bit_identical(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    _quiet_train(_tiny(max_steps=12, eval_every=4), straight)
    _quiet_train(_tiny(max_steps=6, eval_every=4), stopped)  # checkpoints at 4 and 6 (the end)
    _quiet_train(_tiny(max_steps=12, eval_every=4), stopped)
    jax.tree.map(np.testing.assert_array_equal, _params(stopped), _params(straight))


def test_resume_across_epoch_boundaries_is_bit_identical(tmp_path, monkeypatch):
    """On a 500-token corpus an epoch is 15 windows: 40 steps cross two epoch boundaries, where
    the carry is reset; stopping at step 20 (mid-epoch) and resuming changes nothing. Each
    boundary is also validated and logged."""
    real = lstmjax.train.load_corpus

    def small_corpus(*args, **kwargs):
        corpus = real(*args, **kwargs)
        return dataclasses.replace(corpus, train=corpus.train[:500])

    monkeypatch.setattr(lstmjax.train, "load_corpus", small_corpus)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    _quiet_train(_tiny(max_steps=40, eval_every=20, log_every=7, sample_length=0), straight)
    _quiet_train(_tiny(max_steps=20, eval_every=20, log_every=7, sample_length=0), stopped)
    _quiet_train(_tiny(max_steps=40, eval_every=20, log_every=7, sample_length=0), stopped)
    jax.tree.map(np.testing.assert_array_equal, _params(stopped), _params(straight))
    # each epoch's end is validated and closes a train record, whatever eval_every and log_every
    records = MetricsLog(straight / "metrics.jsonl").read()
    assert [r["step"] for r in records if r["split"] == "valid"] == [15, 20, 30, 40]
    ends = {r["step"]: r["epoch"] for r in records if r["split"] == "train"}
    assert ends[15] == 1.0 and ends[30] == 2.0 and ends[40] == 40 / 15


def test_sigkill_mid_run_resumes_from_last_complete_checkpoint(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    steps = 200
    config = _tiny(max_steps=steps, eval_every=20, log_every=10, sample_length=0)
    _quiet_train(config, straight)
    command = [sys.executable, "-m", "lstmjax", "train", "--preset", "tiny", "--workdir", str(killed),
               "--train.max-steps", str(steps), "--train.eval-every", "20", "--train.log-every", "10",
               "--train.sample-length", "0"]
    # the subprocess compiles as this process does (conftest turns XLA optimizations down)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        steps_done = [p for p in (killed / "checkpoints").glob("*") if p.name.isdigit()]
        if len(steps_done) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed; raise max_steps"
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Checkpoints(killed / "checkpoints") as checkpoints:
        assert 0 < checkpoints.latest_step() < steps
    _quiet_train(config, killed)
    jax.tree.map(np.testing.assert_array_equal, _params(killed), _params(straight))


def _model_and_params(vocab_size, seed=0):
    config = ModelConfig(vocab_size=vocab_size, hidden_size=8, num_layers=2)
    model = RNNLanguageModel(config)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 1), jnp.int32), zero_carry(config, 1))["params"]
    return model, params


def test_evaluation_does_not_depend_on_windowing():
    model, params = _model_and_params(11)
    ids = np.random.default_rng(0).integers(0, 11, 203)
    one_step = evaluate(model, params, ids, batch_size=1, seq_len=1)
    long_window = evaluate(model, params, ids, batch_size=1, seq_len=50)
    assert one_step["tokens"] == long_window["tokens"] == 202
    np.testing.assert_allclose(one_step["loss"], long_window["loss"], rtol=1e-6)


def test_perplexity_matches_hand_computation():
    """With a zero head kernel the logits are the head bias: a unigram model computable by hand."""
    model, params = _model_and_params(5)
    bias = np.array([0.5, -1.0, 2.0, 0.0, 1.0], np.float32)
    params = {**params, "head": {"kernel": jnp.zeros_like(params["head"]["kernel"]),
                                 "bias": jnp.asarray(bias)}}
    ids = np.array([2, 0, 4, 2, 2, 1, 3, 0, 2])
    log_probs = bias - np.log(np.exp(bias).sum())
    expected = -log_probs[ids[1:]].mean()
    result = evaluate(model, params, ids, batch_size=1, seq_len=3)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-6)
    np.testing.assert_allclose(result["perplexity"], np.exp(expected), rtol=1e-6)
    np.testing.assert_allclose(result["bits_per_token"], expected / np.log(2), rtol=1e-6)


def test_sampling_is_seeded_and_respects_top_k():
    model, params = _model_and_params(13, seed=1)
    variables = {"params": params}
    prime = jnp.array([[1, 2, 3]], jnp.int32)

    def draw(seed, **kw):
        return np.asarray(generate_ids(model, variables, prime, jax.random.key(seed), length=40, **kw))

    np.testing.assert_array_equal(draw(0), draw(0))
    assert not np.array_equal(draw(0), draw(1))
    greedy = draw(0, top_k=1)
    np.testing.assert_array_equal(greedy, draw(5, top_k=1))  # top-1 is greedy, whatever the seed
    sampled = draw(3, top_k=3, temperature=2.0)
    # replay the sampled sequence and check each token was among the 3 most likely at its step
    context = jnp.concatenate([prime, jnp.asarray(sampled)], axis=1)
    logits, _ = model.apply(variables, context, zero_carry(model.config, 1))
    probabilities = next_token_distribution(logits[0, 2:-1], temperature=2.0, top_k=3)
    chosen = np.asarray(probabilities)[np.arange(40), sampled[0]]
    assert np.all(chosen > 0)
    assert np.all((np.asarray(probabilities) > 0).sum(-1) == 3)


def test_generated_text_starts_with_the_prime_and_words_stay_separated():
    model, params = _model_and_params(13)
    words = Vocab(tuple(f"w{i}" for i in range(13)), "word")
    text = generate(model, {"params": params}, words, "w1 w2", length=5, seed=0)
    assert text.split()[:2] == ["w1", "w2"] and len(text.split()) == 7
    chars = Vocab(tuple("abcdefghijklm"), "char")
    text = generate(model, {"params": params}, chars, "ab", length=5, seed=0)
    assert text.startswith("ab") and len(text) == 7


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    _quiet_train(_tiny(max_steps=4, eval_every=2), tmp_path)
    real_make_train_step = lstmjax.train.make_train_step

    def poisoned(*args):  # the real step, whose loss turns NaN from optimizer step 6 on
        step_fn = real_make_train_step(*args)

        def step(state, carry, inputs, targets):
            at = int(state.step)
            state, carry, metrics = step_fn(state, carry, inputs, targets)
            return state, carry, {**metrics, "loss": metrics["loss"] * (jnp.nan if at >= 5 else 1.0)}

        return step

    monkeypatch.setattr(lstmjax.train, "make_train_step", poisoned)
    with pytest.raises(FloatingPointError, match=r"not finite at step 6 .*last good checkpoint is step 4"):
        _quiet_train(_tiny(max_steps=10, eval_every=2, log_every=1), tmp_path)
    *_, params, step = load_run(tmp_path)
    assert step == 4
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))


def test_resuming_with_another_model_is_refused(tmp_path):
    _quiet_train(_tiny(max_steps=2, eval_every=2), tmp_path)
    other = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, hidden_size=32))
    with pytest.raises(ValueError, match=r"another config \(model.hidden_size: 16 -> 32\)"):
        _quiet_train(other, tmp_path)
    assert pathlib.Path(tmp_path / "checkpoints").exists()


def test_window_longer_than_the_corpus_stops_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match=r"window longer than the corpus: batch_size=4 streams of "
                                         r"seq_len=1000000 .* use a smaller batch_size or seq_len"):
        _quiet_train(_tiny(seq_len=1_000_000), tmp_path)
    assert not any(tmp_path.iterdir())
