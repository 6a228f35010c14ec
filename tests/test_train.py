"""Training on the tiny preset: the loss falls, resume is bit-identical (also after SIGKILL),
evaluation is independent of windowing and matches a hand computation, sampling is seeded and
respects top-k, and a NaN loss stops the run with its checkpoint intact."""

import dataclasses
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import trainer_env

import lstmjax.optim
import lstmjax.rundir
import lstmjax.build
import lstmjax.train
import lstmjax.trained
from lstmjax import ModelConfig, RNNLanguageModel, zero_carry
from lstmjax.checkpoint import Checkpoints
from lstmjax.data import Vocab
from lstmjax.data.batching import bptt_length
from lstmjax.metrics import MetricsLog
from lstmjax.optim import should_start_averaging
from lstmjax.presets import PRESETS
from lstmjax.sample import generate, generate_ids, next_token_distribution
from lstmjax.steps import evaluate
from lstmjax.train import train
from lstmjax.trained import load_run

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
        with pytest.raises(ValueError, match=rf"length must be an int >= 1 .*got {length}"):
            generate(model, variables, words, "w1", length=length)
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
        return lstmjax.build.setup(config, steps_per_epoch=10)

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
