"""The stacked language model: every engine of the registry (and scan with unroll) equals scan on
logits, final carries and gradients, for every cell of the registry, in a covering design over
layers in {1, 3} and T in {1, 7, 35}; carried state; dropout semantics; input modes; the AWD-LSTM
options (embedding dropout, weight tying, AR and TAR in the training loss); config errors."""

import dataclasses
import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, randomize

import lstmjax
from lstmjax import (
    ENGINE_NAMES,
    ENGINES,
    LSTMState,
    ModelConfig,
    RNNLanguageModel,
    steps,
    zero_carry,
)
from lstmjax.model import drop_rows, resolve_engines

VOCAB, BATCH = 7, 2
REFERENCE = "scan"
CELL_CONFIGS = {
    **{name: dict(cell=name) for name in lstmjax.CELLS},  # the registry, then configured variants
    "lstm-peephole-proj": dict(cell="lstm", use_peepholes=True, proj_size=3),
    "gru-reset-after": dict(cell="gru", reset_after=True),
}
SHAPES = [(1, 35), (3, 7), (3, 1), (3, 35), (1, 7)]
"""(layers, T): each config of CELL_CONFIGS takes the next in turn, with every engine."""


def _config(name, **overrides):
    """The model of CELL_CONFIGS[name] on the reference engine, "scan", unless overridden."""
    overrides = {"engine": "scan", **overrides}
    return ModelConfig(vocab_size=VOCAB, hidden_size=4, embed_size=3, **CELL_CONFIGS[name], **overrides)


@functools.cache
def _loss_and_grads(config, jit=True):
    """``(loss, (logits, carry)), grads`` of a fixed random projection of logits and carry."""
    model = RNNLanguageModel(config)

    def loss(variables, carry, tokens, logit_weights):
        logits, final = model.apply(variables, tokens, carry)
        carry_term = sum(jnp.sum(leaf * jnp.sin(jnp.arange(leaf.size, dtype=leaf.dtype)).reshape(leaf.shape))
                         for leaf in jax.tree.leaves(final))
        return jnp.sum(logits * logit_weights) + carry_term, (logits, final)

    grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    return jax.jit(grads) if jit else grads


def _random_problem(config, steps, rng):
    model = RNNLanguageModel(config)
    tokens = jnp.asarray(rng.integers(0, VOCAB, (BATCH, steps)), jnp.int32)
    carry = zero_carry(config, BATCH)
    variables = randomize(model.init(jax.random.key(0), tokens, carry), rng)
    weights = jnp.asarray(rng.normal(size=(BATCH, steps, VOCAB)), jnp.float32)
    return variables, randomize(carry, rng), tokens, weights


def _assert_engines_agree(name, layers, steps, variants, rng, *, jit_static=True):
    """Every (engine, unroll) variant gives scan's loss, logits, final carry and gradients with
    respect to parameters and initial carry, from a random and from a zero initial carry."""
    base = _config(name, num_layers=layers)
    variables, random_carry, tokens, weights = _random_problem(base, steps, rng)
    for carry in (random_carry, zero_carry(base, BATCH)):
        expected = _loss_and_grads(base)(variables, carry, tokens, weights)
        for engine, unroll in variants:
            config = dataclasses.replace(base, engine=engine, unroll=unroll)
            jit = jit_static or engine != "static"
            actual = _loss_and_grads(config, jit)(variables, carry, tokens, weights)
            assert_trees_close(actual, expected, rtol=1e-5, atol=5e-6,
                               err_msg=f"{name} L={layers} T={steps} {engine} unroll={unroll}")


def _variants(steps):
    """``(engine, unroll)`` pairs checked on a T-step model: every engine of the registry with
    unroll 1; the reference with unroll 4 and (up to 7 steps) T; past 7 steps, "fused" with
    unroll 4 too (the scan-based layer engine)."""
    variants = [(engine, 1) for engine in ENGINES if engine != REFERENCE]
    if steps > 1:
        variants.append((REFERENCE, 4))
    if 1 < steps <= 7:
        variants.append((REFERENCE, steps))  # fully unrolled
    if steps > 7:
        variants.append(("fused", 4))
    return list(dict.fromkeys(variants))


def model_cases():
    """The covering design: config i of CELL_CONFIGS on SHAPES[i % 5], against every variant.
    A variant that falls back to another engine for that model is skipped with the registry's
    reason; an engine that "auto" never times (its compile grows with T: "static") is checked up
    to 7 steps (at 35: op by op, below)."""
    cases = []
    for i, name in enumerate(CELL_CONFIGS):
        layers, steps = SHAPES[i % len(SHAPES)]
        for engine, unroll in _variants(steps):
            config = _config(name, num_layers=layers, engine=engine, unroll=unroll)
            reasons = [choice.reason for choice in resolve_engines(config, batch_size=BATCH,
                                                                   seq_len=steps)
                       if choice.engine != engine]
            if ENGINES[engine].untimed is not None and steps > 7:
                reasons.append(f"{engine} at T={steps}: {ENGINES[engine].untimed}")
            marks = [pytest.mark.skip(reason=reasons[0])] if reasons else []
            suffix = "" if unroll == 1 else f"-unroll{unroll}"
            cases.append(pytest.param(name, layers, steps, engine, unroll, marks=marks,
                                      id=f"{name}-L{layers}-T{steps}-{engine}{suffix}"))
    return cases


MODEL_CASES = model_cases()


@pytest.mark.parametrize(("name", "layers", "steps", "engine", "unroll"), MODEL_CASES)
def test_engine_agrees_with_scan_on_the_model(name, layers, steps, engine, unroll, rng):
    _assert_engines_agree(name, layers, steps, [(engine, unroll)], rng)


def test_static_agrees_op_by_op_at_thirty_five_steps(rng):
    """At T=35 the static engine runs eagerly: XLA's CPU compile of 35 unrolled steps and their
    backward pass takes tens of seconds (the cost benchmarks/ measures), and the op-by-op result
    is the same program's. Its jitted form is checked up to T=7 on every cell; a Python loop does
    not depend on the cell, so at T=35 it runs one (op by op, LN-LSTM's 35 steps took 40 s)."""
    _assert_engines_agree("lstm", 1, 35, [("static", 1)], rng, jit_static=False)


def test_the_model_design_covers_every_cell_engine_layer_count_and_length():
    cases = [case.values for case in MODEL_CASES]
    assert {name for name, *_ in cases} == set(CELL_CONFIGS) >= set(lstmjax.CELLS)
    assert {engine for *_, engine, _ in cases} == set(ENGINES)
    assert {(layers, steps) for _, layers, steps, *_ in cases} == set(SHAPES)
    assert {unroll for *_, unroll in cases} >= {1, 4, 7}
    for engine in set(ENGINES) - {REFERENCE}:  # each engine meets every shape
        assert {(layers, steps) for _, layers, steps, e, _ in cases if e == engine} == set(SHAPES)


def test_carried_state_continues_the_sequence(rng):
    """Two windows with the carry passed on give the logits of one long window (truncated BPTT)."""
    config = _config("lstm", num_layers=2)
    variables, carry, tokens, _ = _random_problem(config, 8, rng)
    model = RNNLanguageModel(config)
    logits, final = model.apply(variables, tokens, carry)
    first, middle = model.apply(variables, tokens[:, :5], carry)
    second, end = model.apply(variables, tokens[:, 5:], middle)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), logits, rtol=1e-5, atol=1e-6)
    assert_trees_close(end, final, rtol=1e-5, atol=1e-6)


def test_parameter_tree_layout():
    config = _config("lstm-peephole-proj", num_layers=2)
    variables = RNNLanguageModel(config).init(
        jax.random.key(0), jnp.zeros((1, 2), jnp.int32), zero_carry(config, 1))
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["embedding"] == {"embedding": (VOCAB, 3)}
    assert shapes["layer_0"]["kernel"] == (3 + 3, 16) and shapes["layer_1"]["kernel"] == (3 + 3, 16)
    assert shapes["layer_1"]["proj_kernel"] == (4, 3)
    assert shapes["head"] == {"kernel": (3, VOCAB), "bias": (VOCAB,)}


def test_one_hot_input_equals_identity_embedding(rng):
    one_hot = ModelConfig(vocab_size=VOCAB, hidden_size=4, input_mode="one_hot")
    embedded = dataclasses.replace(one_hot, input_mode="embedding", embed_size=VOCAB)
    tokens = jnp.asarray(rng.integers(0, VOCAB, (BATCH, 5)), jnp.int32)
    carry = zero_carry(one_hot, BATCH)
    variables = randomize(RNNLanguageModel(one_hot).init(jax.random.key(0), tokens, carry), rng)
    with_table = {"params": {**variables["params"], "embedding": {"embedding": jnp.eye(VOCAB)}}}
    np.testing.assert_allclose(
        RNNLanguageModel(one_hot).apply(variables, tokens, carry)[0],
        RNNLanguageModel(embedded).apply(with_table, tokens, carry)[0], rtol=1e-6, atol=1e-7)


def test_init_scale_draws_every_matrix_uniformly_and_keeps_cell_biases():
    config = ModelConfig(vocab_size=50, hidden_size=30, num_layers=2, init_scale=0.05, cell="gru")
    params = RNNLanguageModel(config).init(
        jax.random.key(0), jnp.zeros((1, 2), jnp.int32), zero_carry(config, 1))["params"]
    for leaf in [params["embedding"]["embedding"], params["layer_1"]["gate_kernel"],
                 params["head"]["kernel"], params["head"]["bias"]]:
        assert np.abs(leaf).max() <= 0.05 and np.abs(leaf).max() > 0.04
    np.testing.assert_array_equal(params["layer_0"]["gate_bias"], 1.0)


def _dropout_outputs(config, tokens, carry, variables, key):
    """The outputs of each Dropout module (time-major ``[T, B, F]``), in call order."""
    _, state = RNNLanguageModel(config).apply(
        variables, tokens, carry, train=True, rngs={"dropout": key},
        capture_intermediates=lambda module, _: isinstance(module, nn.Dropout),
        mutable=["intermediates"])
    found = {name: value for name, value in state["intermediates"].items()
             if name.startswith("Dropout_")}  # not the sown outputs
    return [found[name]["__call__"][0] for name in sorted(found, key=lambda n: int(n.split("_")[1]))]


@pytest.mark.parametrize("variational", [False, True])
def test_dropout_on_input_and_every_layer_output(variational, rng):
    config = ModelConfig(vocab_size=VOCAB, hidden_size=64, embed_size=64, num_layers=2,
                         dropout=0.5, variational=variational)
    tokens = jnp.asarray(rng.integers(0, VOCAB, (8, 6)), jnp.int32)
    carry = zero_carry(config, 8)
    variables = RNNLanguageModel(config).init(jax.random.key(0), tokens, carry)
    outputs = _dropout_outputs(config, tokens, carry, variables, jax.random.key(1))
    assert len(outputs) == 3  # embedding, layer 0 output, layer 1 output (the last one included)
    for dropped in outputs:
        zeros = np.asarray(dropped) == 0.0  # [T, B, F]
        assert 0.35 < zeros.mean() < 0.65
        same_mask_every_step = np.all(zeros == zeros[:1])
        assert same_mask_every_step == variational
    embedded = variables["params"]["embedding"]["embedding"][tokens].swapaxes(0, 1)
    kept = np.asarray(outputs[0]) != 0
    np.testing.assert_allclose(np.asarray(outputs[0])[kept], np.asarray(embedded)[kept] * 2.0, rtol=1e-6)


def test_dropout_is_off_in_eval_and_recurrent_dropout_acts_in_training(rng):
    plain = _config("lstm", num_layers=2)
    dropped = dataclasses.replace(plain, dropout=0.3, recurrent_dropout=0.3, variational=True)
    variables, carry, tokens, _ = _random_problem(plain, 5, rng)
    eval_logits, _ = RNNLanguageModel(dropped).apply(variables, tokens, carry)
    np.testing.assert_array_equal(eval_logits, RNNLanguageModel(plain).apply(variables, tokens, carry)[0])
    only_recurrent = dataclasses.replace(plain, recurrent_dropout=0.5)
    train_logits, _ = RNNLanguageModel(only_recurrent).apply(
        variables, tokens, carry, train=True, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(train_logits, eval_logits)


@pytest.mark.parametrize("input_mode", ["one_hot", "embedding"])
def test_recurrent_dropout_masks_h_entering_each_step_with_one_mask(input_mode, rng):
    """Recurrent dropout == running the cell with h multiplied by one fixed mask at every step.
    With an embedding and embed_dropout=0, the layer's key is still the first draw."""
    config = ModelConfig(vocab_size=VOCAB, hidden_size=4, input_mode=input_mode,
                         recurrent_dropout=0.5)
    variables, carry, tokens, _ = _random_problem(config, 5, rng)
    key = jax.random.key(7)
    logits, _ = RNNLanguageModel(config).apply(variables, tokens, carry, train=True, rngs={"dropout": key})
    cell = lstmjax.make_cells(config)[0]
    params = variables["params"]
    expected = []
    # the model's first and only draw from the dropout stream is the key of this mask
    layer_key = RNNLanguageModel(config).apply(
        variables, method=lambda module: module.make_rng("dropout"), rngs={"dropout": key})
    mask = cell.noise(layer_key, tokens.shape[1], tokens.shape[0]).window[0]
    cell = cell.cell  # the LSTM inside RecurrentDropout
    h, c = carry[0].h, carry[0].c
    features = (params["embedding"]["embedding"][tokens] if input_mode == "embedding"
                else jax.nn.one_hot(tokens, VOCAB))
    for x in features.swapaxes(0, 1):
        state, y = cell.step(params["layer_0"], LSTMState(c, h * mask), x)
        c, h = state.c, state.h
        expected.append(y @ params["head"]["kernel"] + params["head"]["bias"][None])
    np.testing.assert_allclose(logits, jnp.stack(expected, axis=1), rtol=1e-5, atol=1e-6)
    assert 0 < np.mean(np.asarray(mask) == 0) < 1


def test_forget_bias_is_ignored_by_cells_without_a_forget_gate():
    """A recipe's LSTM forget_bias does not stop it from running with cell="gru"."""
    config = ModelConfig(vocab_size=VOCAB, hidden_size=4, cell="gru", forget_bias=0.0)
    assert lstmjax.make_cells(config)[0] == lstmjax.GRU(4)


def test_remat_applies_to_training_only_and_changes_nothing(rng):
    """remat_chunk=3 on a 5-token window (a shorter last chunk) gives the same logits and
    gradients; evaluation and sampling windows of any length ignore it."""
    base = _config("lstm", num_layers=2)
    variables, carry, tokens, weights = _random_problem(base, 5, rng)
    remat = dataclasses.replace(base, remat_chunk=3)
    expected, _ = RNNLanguageModel(base).apply(variables, tokens, carry)
    for train in (False, True):
        logits, _ = RNNLanguageModel(remat).apply(variables, tokens, carry, train=train)
        np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-7)

    def gradient(config):
        model = RNNLanguageModel(config)
        return jax.grad(lambda v: jnp.sum(model.apply(v, tokens, carry, train=True)[0] * weights))(
            variables)

    assert_trees_close(gradient(remat), gradient(base), rtol=1e-5, atol=1e-6)


def _first_dropout_key(config, variables, key):
    """The model's first draw from the ``"dropout"`` stream of ``key``."""
    return RNNLanguageModel(config).apply(
        variables, method=lambda module: module.make_rng("dropout"), rngs={"dropout": key})


def test_embedding_dropout_drops_whole_word_types_with_one_mask_per_batch(rng):
    """embed_dropout == the model without it whose table has drop_rows(its first key) applied, the
    input dropout's mask unchanged; a dropped token's features are zero at every position of
    every sequence; evaluation ignores it."""
    base = ModelConfig(vocab_size=VOCAB, hidden_size=8, dropout=0.3, engine="scan")
    config = dataclasses.replace(base, embed_dropout=0.5)
    tokens = jnp.asarray(rng.permuted(np.tile(np.arange(VOCAB), (4, 2)), axis=1), jnp.int32)
    carry = zero_carry(base, 4)
    variables = randomize(RNNLanguageModel(base).init(jax.random.key(0), tokens, carry), rng)
    key = jax.random.key(11)
    rows = drop_rows(_first_dropout_key(config, variables, key), 0.5, VOCAB, jnp.float32)
    assert rows.shape == (VOCAB, 1) and set(np.unique(rows)) == {0.0, 2.0}

    def logits(config, variables, train):
        return RNNLanguageModel(config).apply(variables, tokens, carry, train=train,
                                              rngs={"dropout": key})[0]

    table = variables["params"]["embedding"]["embedding"]
    masked = {"params": {**variables["params"], "embedding": {"embedding": table * rows}}}
    np.testing.assert_allclose(logits(config, variables, True), logits(base, masked, True),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(logits(config, variables, False), logits(base, variables, False))
    no_input_dropout = dataclasses.replace(config, dropout=0.0)
    features = _dropout_outputs(no_input_dropout, tokens, carry, variables, key)[0]  # [T, B, E]
    zero = np.all(np.asarray(features) == 0, axis=-1)  # [T, B]
    np.testing.assert_array_equal(zero, np.asarray(rows[:, 0] == 0)[tokens.T])


def test_tied_head_is_the_embedding_transposed_and_trains_it_from_both_ends(rng):
    untied = _config("lstm-peephole-proj", num_layers=2)  # proj_size 3 == embed_size 3
    tied = dataclasses.replace(untied, tie_weights=True)
    variables, carry, tokens, weights = _random_problem(tied, 5, rng)
    params = variables["params"]
    table, bias = params["embedding"]["embedding"], params["head"]["bias"]
    assert set(params["head"]) == {"bias"}
    untied_params = RNNLanguageModel(untied).init(jax.random.key(0), tokens, carry)["params"]
    assert len(jax.tree.leaves(untied_params)) == len(jax.tree.leaves(params)) + 1

    (logits, _), state = RNNLanguageModel(tied).apply(variables, tokens, carry,
                                                      mutable=["intermediates"])
    features = state["intermediates"]["dropped_outputs"][0].swapaxes(0, 1)  # [B, T, 3]
    np.testing.assert_allclose(logits, features @ table.T + bias[None, None], rtol=1e-5, atol=1e-6)

    def gradient(config, params):
        model = RNNLanguageModel(config)
        return jax.grad(lambda p: jnp.sum(model.apply({"params": p}, tokens, carry)[0] * weights))(
            params)

    as_untied = gradient(untied, {**params, "head": {"kernel": table.T, "bias": bias}})
    from_input, from_head = as_untied["embedding"]["embedding"], as_untied["head"]["kernel"].T
    assert np.abs(from_input).max() > 0 and np.abs(from_head).max() > 0
    np.testing.assert_allclose(gradient(tied, params)["embedding"]["embedding"],
                               from_input + from_head, rtol=1e-5, atol=1e-6)


def test_ar_and_tar_join_the_training_loss_and_nothing_else(rng):
    """The train step's ar and tar metrics equal a hand computation from the sown outputs, its
    loss metric is the cross-entropy alone, its update is SGD on their sum, and evaluation is
    that of the model without them."""
    plain = ModelConfig(vocab_size=VOCAB, hidden_size=4, num_layers=2, dropout=0.5,
                        engine="scan")
    config = dataclasses.replace(plain, ar=2.0, tar=3.0)
    model = RNNLanguageModel(config)
    tokens = jnp.asarray(rng.integers(0, VOCAB, (BATCH, 7)), jnp.int32)
    inputs, targets, carry = tokens[:, :-1], tokens[:, 1:], zero_carry(config, BATCH)
    optimizer = optax.sgd(1.0)
    state = steps.init_state(model, optimizer, seed=0)
    params, key = jax.tree.map(jnp.copy, state.params), jax.random.fold_in(state.rng, 0)
    train_step = steps.make_train_step(model, optimizer, optax.constant_schedule(1.0), "mean")
    new_state, _, metrics = train_step(state, zero_carry(config, BATCH), inputs, targets)  # donated

    def objective(params):
        (logits, _), sown = model.apply({"params": params}, inputs, carry, train=True,
                                        rngs={"dropout": key}, mutable=["intermediates"])
        outputs = sown["intermediates"]["outputs"][0]  # [T, B, H], the last layer's
        dropped = sown["intermediates"]["dropped_outputs"][0]
        cross_entropy = jnp.mean(steps.token_losses(logits, targets))
        ar = 2.0 * jnp.mean(dropped ** 2)
        tar = 3.0 * jnp.mean((outputs[1:] - outputs[:-1]) ** 2)
        return cross_entropy + ar + tar, (cross_entropy, ar, tar, logits, outputs, dropped)

    grads, (cross_entropy, ar, tar, logits, outputs, dropped) = jax.grad(
        objective, has_aux=True)(params)
    kept = np.asarray(dropped) != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(np.asarray(dropped)[kept], 2.0 * np.asarray(outputs)[kept],
                               rtol=1e-6)
    head = params["head"]
    np.testing.assert_allclose(logits, dropped.swapaxes(0, 1) @ head["kernel"]
                               + head["bias"][None, None], rtol=1e-5, atol=1e-6)
    hand_ar = 2.0 * np.mean(np.square(np.asarray(dropped, np.float64)))
    hand_tar = 3.0 * np.mean(np.square(np.diff(np.asarray(outputs, np.float64), axis=0)))
    np.testing.assert_allclose([metrics["ar"], metrics["tar"]], [hand_ar, hand_tar], rtol=1e-5)
    np.testing.assert_allclose([ar, tar], [hand_ar, hand_tar], rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], cross_entropy, rtol=1e-6)
    assert_trees_close(new_state.params, jax.tree.map(lambda p, g: p - g, params, grads),
                       rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        steps.eval_step(model, params, carry, inputs, targets)[1],
        steps.eval_step(RNNLanguageModel(plain), params, carry, inputs, targets)[1])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(cell="lstmish"), re.escape(f"cell must be one of {tuple(lstmjax.CELLS)}, got 'lstmish'")),
        (dict(engine="dynamic_rnn"), re.escape(f"engine must be one of {ENGINE_NAMES}")),
        (dict(hidden_size=0), "hidden_size must be a positive int, got 0"),
        (dict(num_layers=0), "num_layers must be a positive int"),
        (dict(dropout=1.0), r"dropout is a drop probability in \[0, 1\), got 1.0"),
        (dict(recurrent_dropout=-0.1), "recurrent_dropout is a drop probability"),
        (dict(cell="gru", use_peepholes=True), "use_peepholes is an option of cell='lstm'"),
        (dict(cell="lstm", reset_after=True), "reset_after is an option of cell='gru'"),
        (dict(remat_chunk=0), "remat_chunk must be a positive int"),
        (dict(input_mode="one_hot", embed_size=5), "embed_size applies to input_mode='embedding'"),
        (dict(unroll=0), "unroll must be a positive int"),
        (dict(dtype="float64"), r"dtype must be one of \('float32', 'bfloat16', 'float16'\)"),
        (dict(embed_dropout=1.0), r"embed_dropout is a drop probability in \[0, 1\)"),
        (dict(input_mode="one_hot", embed_dropout=0.1),
         "embed_dropout drops rows of the embedding table: it needs input_mode='embedding'"),
        (dict(input_mode="one_hot", tie_weights=True),
         "tie_weights shares the embedding table with the head: it needs input_mode='embedding'"),
        (dict(tie_weights=True, embed_size=3),
         r"output size \(4: .*\) to equal the embedding size \(3: .*\); set embed_size=4"),
        (dict(tie_weights=True, num_layers=2, layer_sizes=(4, 5)),
         r"output size \(5: .*\) to equal the embedding size \(4: .*\); set embed_size=5"),
        (dict(ar=-0.5), r"ar is a loss weight >= 0 \(0 disables it\), got -0.5"),
        (dict(tar=float("nan")), "tar is a loss weight >= 0"),
    ],
)
def test_bad_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{"vocab_size": VOCAB, "hidden_size": 4, **overrides})


def test_bad_tokens_and_carry_raise():
    config = _config("lstm", num_layers=2)
    model = RNNLanguageModel(config)
    carry = zero_carry(config, 2)
    with pytest.raises(ValueError, match=r"tokens must be int\[batch, time\], got float32\[2, 3\]"):
        model.init(jax.random.key(0), jnp.zeros((2, 3)), carry)
    with pytest.raises(ValueError, match="tokens must be int"):
        model.init(jax.random.key(0), jnp.zeros((2, 3, 1), jnp.int32), carry)
    with pytest.raises(ValueError, match="carry must be a tuple of num_layers=2 per-layer carries"):
        model.init(jax.random.key(0), jnp.zeros((2, 3), jnp.int32), carry[:1])
    with pytest.raises(ValueError, match=r"carry for LSTM.*zero_carry\(2\)"):
        model.init(jax.random.key(0), jnp.zeros((2, 3), jnp.int32), zero_carry(config, 3))
