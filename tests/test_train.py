"""Training on the tiny preset: the loss falls, resume is bit-identical (also after SIGKILL),
evaluation is independent of windowing and matches a hand computation, sampling is seeded and
respects top-k, and a NaN loss stops the run with its checkpoint intact."""

import dataclasses
import json
import math
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import trainer_env

import lstmjax.build
import lstmjax.optim
import lstmjax.rundir
import lstmjax.train
import lstmjax.trained
from lstmjax import ModelConfig, RNNLanguageModel, zero_carry
from lstmjax._checks import FieldError
from lstmjax.checkpoint import Checkpoints
from lstmjax.data import Position, Vocab
from lstmjax.data.batching import bptt_length
from lstmjax.metrics import MetricsLog
from lstmjax.optim import init_average, should_start_averaging
from lstmjax.parallel import make_placement
from lstmjax.preemption import StopRequests
from lstmjax.presets import PRESETS
from lstmjax.sample import generate, generate_ids, next_token_distribution
from lstmjax.steps import TrainState, evaluate
from lstmjax.train import (
    DivergenceCheck,
    Progress,
    Saver,
    StepLog,
    Validation,
    check_fits,
    interruption,
    past_the_end,
    train,
    training_windows,
)
from lstmjax.trained import check_checkpoint, load_run

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
    assert " (auto: " in records[0]["engine"]  # what "auto" chose, and why
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
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=trainer_env())
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


def test_sampling_arguments_are_checked_and_a_tiny_temperature_is_greedy():
    model, params = _model_and_params(13)
    variables = {"params": params}
    words = Vocab(tuple(f"w{i}" for i in range(13)), "word")
    with pytest.raises(ValueError, match=r"the prime ' ' holds no word token; give one, e.g. 'the'"):
        generate(model, variables, words, " ", length=5)
    for length in (0, -5):
        with pytest.raises(FieldError, match=rf"length must be a positive int \(tokens to "
                                             rf"generate\), got {length}") as error:
            generate(model, variables, words, "w1", length=length)
        assert error.value.field == "length"
    prime = jnp.array([[1, 2, 3]], jnp.int32)
    cold = generate_ids(model, variables, prime, jax.random.key(0), length=30, temperature=1e-30)
    greedy = generate_ids(model, variables, prime, jax.random.key(0), length=30, top_k=1)
    np.testing.assert_array_equal(cold, greedy)
    assert len(set(np.asarray(greedy)[0].tolist())) > 1  # not the all-zero output of a NaN


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    _quiet_train(_tiny(max_steps=4, eval_every=2), tmp_path)
    real_make_train_step = lstmjax.build.make_train_step

    def poisoned(*args, **kwargs):  # the real step, whose loss turns NaN from optimizer step 6 on
        step_fn = real_make_train_step(*args, **kwargs)

        def step(state, carry, inputs, targets):
            at = int(state.step)
            state, carry, metrics = step_fn(state, carry, inputs, targets)
            return state, carry, {**metrics, "loss": metrics["loss"] * (jnp.nan if at >= 5 else 1.0)}

        return step

    monkeypatch.setattr(lstmjax.build, "make_train_step", poisoned)
    with pytest.raises(FloatingPointError, match=r"training loss nan at step 6 is not finite; .*last "
                                                 r"good checkpoint is step 4"):
        _quiet_train(_tiny(max_steps=10, eval_every=2, log_every=1), tmp_path)
    *_, params, step = load_run(tmp_path)
    assert step == 4
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(params))
    assert load_run(tmp_path, checkpoint=2)[-1] == 2  # a step number, as lstmjax eval takes it
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 3 in .*; it holds steps "
                                                r"\[2, 4\] \(pass one of them, 'latest' or 'best'\)"):
        load_run(tmp_path, checkpoint=3)


def test_divergence_stops_the_run_and_the_log_stays_valid_json(tmp_path):
    """SGD with a huge learning rate diverges to finite but enormous losses: the run stops at the
    divergence bound as at a NaN, without checkpointing the diverged state, and every metrics
    line parses as standard JSON (non-finite values as null, named in "nonfinite")."""
    config = dataclasses.replace(
        _tiny(max_steps=40, log_every=1, eval_every=40),
        optim=dataclasses.replace(TINY.optim, optimizer="sgd", learning_rate=1e4, max_grad_norm=None))
    with pytest.raises(FloatingPointError, match=r"training loss .* at step \d+ (exceeds the "
                                                 r"divergence bound log\(V\) \+ 20 = \d+\.\d nats|"
                                                 r"is not finite); no checkpoint was written yet"):
        _quiet_train(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()

    def reject(constant):
        raise ValueError(f"{constant} is not standard JSON")

    records = [json.loads(line, parse_constant=reject) for line in lines]
    assert records[-1]["loss"] is None or records[-1]["loss"] > 20
    MetricsLog(tmp_path / "log.jsonl").write({"loss": 800.0, "perplexity": float("inf"), "step": 1})
    assert json.loads((tmp_path / "log.jsonl").read_text()) == {
        "loss": 800.0, "perplexity": None, "step": 1, "nonfinite": ["perplexity"]}


def test_float16_divergence_advice_names_adam_epsilon(tmp_path):
    config = dataclasses.replace(
        _tiny(max_steps=10, log_every=1, eval_every=10),
        model=dataclasses.replace(TINY.model, param_dtype="float16", dtype="float16"))
    with pytest.raises(FloatingPointError, match=r"optim.adam_eps 1e-08 rounds to 0 in float16 "
                                                 r"parameters. Use model.dtype bfloat16 with "
                                                 r"model.param_dtype float32 .* or raise "
                                                 r"optim.adam_eps to 1e-4"):
        _quiet_train(config, tmp_path)


def test_requests_that_do_not_fit_stop_before_writing_anything(tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"train.eval_batch_size=1000000 is too large for the "
                                         r"valid split .* use at most \d"):
        _quiet_train(_tiny(eval_batch_size=1_000_000), workdir)
    with pytest.raises(ValueError, match=r"model.vocab_size=5 differs from the vocabulary .*; "
                                         r"leave model.vocab_size unset"):
        _quiet_train(dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, vocab_size=5)),
                     workdir)
    assert not workdir.exists()
    _quiet_train(_tiny(max_steps=4, eval_every=2), workdir)
    before = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"is at step 4, past the end that train.max_steps=2 sets "
                                         r"\(step 2\); raise it above 4"):
        _quiet_train(_tiny(max_steps=2, eval_every=2), workdir)
    (workdir / "config.json").unlink()  # the checkpoint's own copy of the config still guards
    other = dataclasses.replace(_tiny(max_steps=6, eval_every=2),
                                model=dataclasses.replace(TINY.model, hidden_size=32))
    with pytest.raises(ValueError, match=r"another config \(model.hidden_size: 16 -> 32\)"):
        _quiet_train(other, workdir)
    assert not (workdir / "config.json").exists()
    after = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
    assert after == {k: v for k, v in before.items() if k != "config.json"}
    assert _quiet_train(_tiny(max_steps=6, eval_every=2), workdir)["step"] == 6


def test_a_damaged_latest_checkpoint_falls_back_and_is_kept_aside(tmp_path):
    _quiet_train(_tiny(max_steps=6, eval_every=3), tmp_path)  # checkpoints 3 and 6
    shutil.rmtree(tmp_path / "checkpoints" / "6" / "state")
    lines = []
    summary = train(_tiny(max_steps=6, eval_every=3), tmp_path, progress=False,
                    print_fn=lines.append)
    assert summary["step"] == 6
    warning = next(line for line in lines if "step 6" in line and "damaged" in line)
    assert "state" in warning and "_damaged" in warning
    assert (tmp_path / "checkpoints" / "_damaged" / "6").is_dir()
    assert any(line.startswith("run directory: ") and "resuming at step 3" in line for line in lines)


def test_header_and_plain_progress_lines_when_not_on_a_terminal(tmp_path):
    lines = []
    train(_tiny(max_steps=10, log_every=5, eval_every=10, sample_length=0), tmp_path,
          print_fn=lines.append)  # pytest's captured stdout is not a terminal
    assert lines[0] == f"run directory: {tmp_path} (new run)"
    assert lines[1].startswith("corpus: default, char level, V=") and "tokens: train " in lines[1]
    assert re.fullmatch(r"model: 1 x 16 lstm, [\d,]+ parameters, float32 compute", lines[2])
    assert lines[3].startswith("engine: ") and " (auto: " in lines[3]
    assert lines[4].startswith("training: batch 4 x 8 tokens, ")
    progress = [line for line in lines if line.startswith("step ")]
    assert re.fullmatch(r"step 5/10: loss \d+\.\d{4}, perplexity \d+\.\d{3}, [\d,]+ tokens/s, "
                        r"ETA \d+ (s|min)", progress[0])
    assert progress[-1].startswith("step 10: valid loss ")


def test_resuming_with_another_model_is_refused(tmp_path):
    _quiet_train(_tiny(max_steps=2, eval_every=2), tmp_path)
    other = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, hidden_size=32))
    with pytest.raises(ValueError, match=r"another config \(model.hidden_size: 16 -> 32\)"):
        _quiet_train(other, tmp_path)
    assert pathlib.Path(tmp_path / "checkpoints").exists()


def test_window_longer_than_the_corpus_stops_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match=r"window longer than the corpus: train.batch_size=4 "
                                         r"streams of train.seq_len=1000000 .* use a "
                                         r"smaller train.batch_size or train.seq_len"):
        _quiet_train(_tiny(seq_len=1_000_000), tmp_path)
    assert not any(tmp_path.iterdir())


def _awd(**train_overrides):
    """tiny with NT-ASGD (a learning rate at which validation stalls within 16 steps, nonmono 1)
    and random BPTT."""
    return dataclasses.replace(
        TINY, optim=dataclasses.replace(TINY.optim, optimizer="nt_asgd", learning_rate=5.0,
                                        nt_asgd_nonmono=1),
        train=dataclasses.replace(TINY.train, random_bptt=True, eval_every=2, log_every=1,
                                  **train_overrides))


def test_nt_asgd_with_random_bptt_resumes_across_the_switch_and_evaluates_the_average(
        tmp_path, monkeypatch):
    """On 400 training tokens (99 targets in each of the 4 streams) and 400 validation tokens:

    - stopped before NT-ASGD's switch and resumed past it and past an epoch's end, the run's
      parameters, average and logged losses equal the uninterrupted run's bit for bit;
    - each step's learning rate is lr * length / seq_len, the lengths drawn by hand from (seed,
      step) and cut at the epoch's end;
    - the switch comes at the first validation that the non-monotone rule names;
    - the final validation, the sample, lstmjax eval's and sample's parameters are the average,
      which differs from the last iterate."""
    real = lstmjax.train.load_corpus

    def small_corpus(*args, **kwargs):
        corpus = real(*args, **kwargs)
        return dataclasses.replace(corpus, train=corpus.train[:400], valid=corpus.valid[:400])

    monkeypatch.setattr(lstmjax.train, "load_corpus", small_corpus)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    steps, stop = 16, 6
    summary = _quiet_train(_awd(max_steps=steps), straight)
    _quiet_train(_awd(max_steps=stop, sample_length=0), stopped)
    _quiet_train(_awd(max_steps=steps, sample_length=0), stopped)
    kept = ("step", "split", "loss", "grad_norm", "learning_rate", "averaged")
    records = {path: [{k: r[k] for k in kept if k in r} for r in MetricsLog(path / "metrics.jsonl").read()
                      if r["split"] != "test"]  # the stopped run's first part ends with a test
               for path in (straight, stopped)}
    assert records[stopped] == records[straight]
    with Checkpoints(straight / "checkpoints") as a, Checkpoints(stopped / "checkpoints") as b:
        target = _params(straight)
        for averaged in (True, False):
            jax.tree.map(np.testing.assert_array_equal,
                         lstmjax.rundir.restore_params(a, target, averaged=averaged)[0],
                         lstmjax.rundir.restore_params(b, target, averaged=averaged)[0])
        last = lstmjax.rundir.restore_params(a, target)[0]

    valid = [r for r in records[straight] if r["split"] == "valid"]
    losses = [r["loss"] for r in valid]
    first = next(t for t in range(len(losses)) if should_start_averaging(losses[:t], losses[t], 1))
    assert stop < valid[first]["step"] < steps, losses  # the resumed part crosses the switch
    assert [r["averaged"] for r in valid] == [r["step"] > valid[first]["step"] for r in valid]

    lengths, offset, end = [], 0, 400 // 4 - 1
    for k in range(steps):
        length = min(bptt_length(TINY.train.seed, k, 8), end - offset)
        lengths.append(length)
        offset = 0 if offset + length == end else offset + length
    assert sum(lengths) > end  # an epoch ended within the run
    rates = [r["learning_rate"] for r in records[straight] if r["split"] == "train"]
    np.testing.assert_allclose(rates, [5.0 * n / 8 for n in lengths], rtol=1e-6)

    config, vocab, model, average, _ = load_run(straight)
    corpus = small_corpus(**dataclasses.asdict(config.data))
    settings = config.train

    def valid_loss(params):
        return evaluate(model, params, corpus.valid, batch_size=settings.eval_batch_size,
                        seq_len=settings.eval_seq_len)["loss"]

    def sample(params):
        return generate(model, {"params": params}, vocab, prime, length=settings.sample_length,
                        seed=settings.seed)

    assert summary["valid"]["loss"] == valid_loss(average) != valid_loss(last)
    prime = vocab.decode(corpus.valid[:1])
    assert summary["sample"] == sample(average) != sample(last)
    assert lstmjax.trained.sample_run(straight, prime=prime, length=settings.sample_length,
                                      seed=settings.seed) == summary["sample"]


def test_train_step_scales_the_learning_rate_by_the_window_and_averages_the_iterates():
    """With random BPTT, a 4-token window (seq_len 8) steps as SGD at half the learning rate; with
    NT-ASGD started at step 1, the average after step 3 is the mean of the iterates of steps 2, 3."""
    def trainer(lr, random_bptt):
        config = dataclasses.replace(
            _awd(), model=dataclasses.replace(TINY.model, vocab_size=13),
            optim=dataclasses.replace(_awd().optim, learning_rate=lr),
            train=dataclasses.replace(_awd().train, random_bptt=random_bptt))
        return lstmjax.build.build_trainer(config, steps_per_epoch=10)

    tokens = np.random.default_rng(0).integers(0, 13, (4, 5)).astype(np.int32)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    scaled, plain = trainer(2.0, True), trainer(1.0, False)
    results = [run.train_step(run.state, run.carry, inputs, targets) for run in (scaled, plain)]
    (state, carry, metrics), (reference, _, _) = results
    assert float(metrics["learning_rate"]) == 1.0
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 state.params, reference.params)

    state = state.replace(average=lstmjax.optim.start_averaging(state.average, 1))
    iterates = []
    for _ in range(2):
        state, carry, _ = scaled.train_step(state, carry, inputs, targets)
        iterates.append(jax.device_get(state.params))  # a copy: the next step donates the state
    assert int(state.step) == 3
    jax.tree.map(lambda a, p2, p3: np.testing.assert_allclose(a, (p2 + p3) / 2, rtol=1e-6, atol=1e-7),
                 state.average.params, *iterates)


def test_random_bptt_needs_the_mean_loss():
    with pytest.raises(ValueError, match=r"random_bptt scales each step's learning rate .* use "
                                         r"loss_scale='mean' with it"):
        _tiny(random_bptt=True, loss_scale="sum_over_time")


def test_activation_penalties_reach_the_run_log(tmp_path):
    """AR and TAR, when on, are logged beside the cross-entropy (which stays the logged loss)."""
    config = dataclasses.replace(_tiny(max_steps=4, log_every=2, eval_every=4),
                                 model=dataclasses.replace(TINY.model, ar=2.0, tar=1.0))
    _quiet_train(config, tmp_path)
    records = [r for r in MetricsLog(tmp_path / "metrics.jsonl").read() if r["split"] == "train"]
    assert records and all(r["ar"] > 0 and r["tar"] > 0 for r in records)


# -- the loop's pieces, on fake metrics and tiny arrays (no training, no compilation) ------------

VOCAB = Vocab(tuple("\n abcdefgh"), "char")


class _FakeCheckpoints:
    """What the loop's pieces use of lstmjax.checkpoint.Checkpoints, recording the saves."""

    def __init__(self, latest=None, directory="/runs/a/checkpoints"):
        self.latest, self.directory = latest, pathlib.Path(directory)
        self.saved, self.waited = [], False

    def latest_step(self):
        return self.latest

    def save(self, step, state, extra, *, metric=None, force=False):
        self.saved.append((step, state, extra, metric, force))

    def wait_until_finished(self):
        self.waited = True


def test_divergence_check_names_the_step_the_problem_and_the_last_checkpoint():
    check = DivergenceCheck(TINY, 10, _FakeCheckpoints(latest=4))
    bound = math.log(10) + 20
    check.check("training loss", bound - 0.01, 3, grad_norm=1e30)  # nothing wrong
    assert check.problem(bound + 0.1) == "exceeds the divergence bound log(V) + 20 = 22.3 nats"
    assert check.problem(1.0, math.inf) == "has a gradient norm of inf"
    assert check.problem(math.nan, math.inf) == "is not finite"
    with pytest.raises(FloatingPointError, match=r"^the validation loss nan at step 6 is not "
                                                 r"finite; the last good checkpoint is step 4 in "
                                                 r"/runs/a/checkpoints\. Lower optim\.learning_rate"):
        check.check("validation loss", math.nan, 6)


def test_step_log_writes_one_record_of_the_steps_since_the_last(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    steps = StepLog(log, 10, steps_per_epoch=20, engine="scan unroll=1 (named)")

    def metrics(loss):
        return {"loss": np.float32(loss), "grad_norm": np.float32(2 * loss),
                "learning_rate": np.float32(0.5), "ar": np.float32(loss / 4)}

    for loss in (1.0, 3.0):
        steps.add(metrics(loss), 32)
    record, per_step = steps.flush(12)
    assert per_step == [(11, 1.0, 2.0), (12, 3.0, 6.0)]
    assert log.read() == [record]
    assert {k: record[k] for k in ("step", "split", "epoch", "engine", "loss", "grad_norm",
                                   "learning_rate", "ar")} == {
        "step": 12, "split": "train", "epoch": 0.6, "engine": "scan unroll=1 (named)",
        "loss": 2.0, "grad_norm": 6.0, "learning_rate": 0.5, "ar": 0.5}
    assert "tar" not in record
    assert record["perplexity"] == pytest.approx(math.exp(2.0))
    assert record["bits_per_token"] == pytest.approx(2.0 / math.log(2))
    assert record["tokens_per_s"] == pytest.approx(64 / (2 * record["step_time_s"]))
    steps.add(metrics(5.0), 32)
    assert steps.flush(13)[1] == [(13, 5.0, 10.0)]  # the next record starts after the last


def test_progress_shows_plain_lines_with_the_time_left_when_not_on_a_terminal(capsys):
    lines = []
    shown = Progress(10, 50, enabled=True, print_fn=lines.append)  # stderr is captured: no tty
    record = {"loss": 2.0, "perplexity": 7.389, "tokens_per_s": 12345.6}
    for elapsed, eta in ((30, "90 s"), (100, "5 min")):  # 10 steps done, 30 to go
        shown.start_time = time.perf_counter() - elapsed
        shown.logged(record, 20)
        assert lines[-1] == f"step 20/50: loss 2.0000, perplexity 7.389, 12,346 tokens/s, ETA {eta}"
    shown.write("a line")
    assert lines[-1] == "a line"
    shown.close()
    quiet = Progress(10, 50, enabled=False, print_fn=lines.append)
    quiet.logged(record, 20)
    assert lines[-1] == "a line"


def _nt_asgd_state():
    params = {"w": jnp.zeros(2)}
    return TrainState(params=params, opt_state=(), step=jnp.zeros((), jnp.int32),
                      rng=jax.random.key(0), average=init_average(params))


def _validation(tmp_path, losses, earlier=(), lines=None):
    """A Validation whose trainer's evaluation returns ``losses`` in turn (NT-ASGD, nonmono 1)."""
    config = dataclasses.replace(TINY, optim=dataclasses.replace(
        TINY.optim, optimizer="nt_asgd", nt_asgd_nonmono=1))
    returned = iter(losses)
    trainer = SimpleNamespace(
        config=config, placement=make_placement(),
        evaluate=lambda params, ids: {"loss": (loss := next(returned)),
                                      "perplexity": math.exp(loss)})
    log = MetricsLog(tmp_path / "metrics.jsonl")
    validation = Validation(trainer, np.zeros(10, np.int32), log,
                            DivergenceCheck(config, 10, _FakeCheckpoints()),
                            write=(lines if lines is not None else []).append,
                            steps_per_epoch=10, losses=earlier)
    return validation, log


def test_validation_logs_each_result_and_starts_nt_asgd_at_its_trigger(tmp_path):
    """nonmono 1: a validation loss above the best of all but the last earlier one starts the
    average (the 4th here); a resumed run's trigger reads the losses saved before."""
    lines = []
    validation, log = _validation(tmp_path, [3.0, 2.0, 2.5, 2.4, 2.6], lines=lines)
    state = _nt_asgd_state()
    for step in (2, 4, 6, 8, 10):
        result, state = validation(step, state)
    assert result["loss"] == 2.6 and validation.losses == [3.0, 2.0, 2.5, 2.4, 2.6]
    assert int(state.average.start) == 8
    assert [(r["step"], r["epoch"], r["split"], r["averaged"]) for r in log.read()] == [
        (2, 0.2, "valid", False), (4, 0.4, "valid", False), (6, 0.6, "valid", False),
        (8, 0.8, "valid", False), (10, 1.0, "valid", True)]
    assert lines == ["step 8: NT-ASGD starts averaging (valid loss 2.4000 above the best before "
                     "the last 1 validations); evaluation uses the average from here on"]
    (tmp_path / "resumed").mkdir()
    resumed, _ = _validation(tmp_path / "resumed", [2.4], earlier=[3.0, 2.0, 2.5])
    assert int(resumed(8, _nt_asgd_state())[1].average.start) == 8


def test_validation_stops_a_diverged_run_after_logging_it(tmp_path):
    validation, log = _validation(tmp_path, [math.nan])
    with pytest.raises(FloatingPointError, match=r"the validation loss nan at step 2 is not finite"):
        validation(2, _nt_asgd_state())
    assert [r["step"] for r in log.read()] == [2]


def test_saver_writes_the_engine_choices_before_each_checkpoint(tmp_path):
    checkpoints, engines = _FakeCheckpoints(), {}
    config = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, vocab_size=10))
    directory = lstmjax.rundir.RunDirectory(tmp_path)
    saver = Saver(checkpoints, directory, config, VOCAB, make_placement(), engines=engines)
    saver.write_engines()
    assert json.loads(directory.engines_file.read_text()) == {}
    engines["lstm I=16 B=4 T=8"] = {"engine": "scan", "unroll": 1, "reason": "named"}
    carry = {"h": np.ones((4, 2), np.float32)}
    saver.save(4, Position(0, 4), carry, _nt_asgd_state(), [2.5, 2.0], valid_loss=2.0,
               force=True)
    assert json.loads(directory.engines_file.read_text()) == engines
    ((step, payload, extra, metric, force),) = checkpoints.saved
    assert (step, metric, force) == (4, 2.0, True)
    assert extra["valid_losses"] == [2.5, 2.0] and extra["valid_loss"] == 2.0
    assert extra["position"] == Position(0, 4).to_dict() and extra["config"] == config.to_dict()
    np.testing.assert_array_equal(payload["carry"]["h"], carry["h"])
    other = lstmjax.rundir.RunDirectory(tmp_path / "other")
    Saver(checkpoints, other, config, VOCAB, make_placement(), engines=None).write_engines()
    assert not other.engines_file.exists()


def test_interruption_says_where_the_run_is_saved_and_how_to_resume():
    stop = StopRequests()
    stop.signum = signal.SIGTERM
    checkpoints = _FakeCheckpoints(latest=4)
    error = interruption(stop, checkpoints, 6, saved_in=pathlib.Path("/runs/a/checkpoints"))
    assert checkpoints.waited and error.exit_code == 143
    assert str(error) == ("interrupted by SIGTERM at step 6: checkpoint 6 is saved in "
                          "/runs/a/checkpoints; run the same command again to resume")
    unsaved = interruption(stop, _FakeCheckpoints(), 6, saved_in=None)
    assert "at step 6: nothing new to save (no checkpoint was written yet); run" in str(unsaved)


def test_stop_requests_are_agreed_on_at_log_steps_across_processes():
    alone = StopRequests()
    assert not alone.agreed(True, 1, None)
    alone.signum = signal.SIGINT
    assert alone.agreed(False, 1, None)  # one process: at any step
    calls = []

    def agree(signum):  # another process received SIGTERM
        calls.append(signum)
        return int(signal.SIGTERM)

    other = StopRequests()
    assert not other.agreed(False, 2, agree) and calls == []  # between log steps: no collective
    assert other.agreed(True, 2, agree) and calls == [0]
    assert other.name() == "SIGTERM (received by another process of the run)"


def test_requests_that_do_not_fit_name_their_field():
    corpus = SimpleNamespace(vocab=VOCAB, train=np.zeros(400, np.int32),
                             valid=np.zeros(7, np.int32), test=None)
    assert check_fits(_tiny(eval_batch_size=3), corpus) == (400 // 4 - 1) // 8
    with pytest.raises(FieldError, match=r"use at most 3") as error:
        check_fits(_tiny(eval_batch_size=4), corpus)
    assert error.value.field == "train.eval_batch_size"
    with pytest.raises(FieldError) as error:
        check_fits(dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, vocab_size=5)),
                   corpus)
    assert error.value.field == "model.vocab_size"
    by_steps = past_the_end(pathlib.Path("run"), 4, 2, _tiny(max_steps=2).train, 12)
    assert by_steps.field == "train.max_steps"
    assert str(by_steps).startswith("run is at step 4, past the end that train.max_steps=2 sets "
                                    "(step 2); raise it above 4")
    by_epochs = past_the_end(pathlib.Path("run"), 30, 24,
                             _tiny(max_steps=None, num_epochs=2).train, 12)
    assert by_epochs.field == "train.num_epochs"
    assert "past the end that train.num_epochs=2 (12 steps per epoch) sets" in str(by_epochs)


def test_training_windows_continue_from_the_position_with_each_steps_length():
    ids = np.arange(400, dtype=np.int32) % 13
    plain = list(training_windows(ids, _tiny().train, Position(0, 2), 3, 7))
    assert len(plain) == 4 and all(w.inputs.shape == (4, 8) for w in plain)
    assert plain[0].position == Position(0, 2)
    drawn = list(training_windows(ids, _awd().train, Position(), 3, 7))
    assert [w.inputs.shape[1] for w in drawn] == [bptt_length(TINY.train.seed, k, 8)
                                                  for k in range(3, 7)]


def test_reader_arguments_are_checked_naming_the_argument(tmp_path):
    for good in ("latest", "best", 0, np.int64(1500)):
        check_checkpoint(good)
    for bad in ("newest", -1, True, 1.5, "1500"):
        with pytest.raises(FieldError, match=r"checkpoint must be 'latest', 'best' or a step "
                                             r"number \(an int >= 0\), got") as error:
            check_checkpoint(bad)
        assert error.value.field == "checkpoint"
    for arguments in ({"checkpoint": "newest"}, {"split": "train"}, {"batch_size": 0}):
        # before reading anything
        with pytest.raises(FieldError) as error:
            lstmjax.trained.evaluate_run(tmp_path, **arguments)
        assert error.value.field == next(iter(arguments))
