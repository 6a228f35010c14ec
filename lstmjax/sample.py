"""Text generation: prime the model on a text, then sample tokens one at a time.

The generation loop is :func:`lstmjax.engines.run` over pre-drawn uniform numbers, one compiled
``lax.scan``: each step feeds the previous token, turns the logits into probabilities (divided by
the temperature, restricted to the top k as the tutorials' ``pick_top_chars``) and picks the token
whose cumulative probability first exceeds the step's uniform number (inverse-CDF sampling).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from lstmjax import engines
from lstmjax._checks import FieldError, require_int
from lstmjax.model import RNNLanguageModel, zero_carry


def next_token_distribution(logits: jax.Array, *, temperature: float, top_k: int) -> jax.Array:
    """Probabilities ``float32[B, V]`` from ``logits: [B, V]``: softmax(logits / temperature) over
    the ``top_k`` most likely tokens (all if ``top_k`` is 0), renormalized.

    The logits are shifted by their maximum before the division, so a tiny temperature gives
    the most likely token (ties shared) rather than overflowing to NaN."""
    logits = logits.astype(jnp.float32)
    logits = (logits - jnp.max(logits, axis=-1, keepdims=True)) / temperature
    if top_k:
        kth_largest = jax.lax.top_k(logits, top_k)[0][:, -1:]  # [B, 1]
        logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1)


def _pick(probabilities: jax.Array, uniform: jax.Array) -> jax.Array:
    """Inverse-CDF sampling: ``int32[B]`` from ``probabilities [B, V]`` and ``uniform [B]``."""
    cumulative = jnp.cumsum(probabilities, axis=-1)
    index = jnp.sum(cumulative < uniform[:, None] * cumulative[:, -1:], axis=-1)
    return jnp.minimum(index, probabilities.shape[-1] - 1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("model", "length", "temperature", "top_k"))
def generate_ids(
    model: RNNLanguageModel,
    variables: Any,
    prime: jax.Array,
    key: jax.Array,
    *,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
) -> jax.Array:
    """Sample ``length`` token ids after ``prime``.

    Args:
      model: the language model.
      variables: its variables (``{"params": ...}``).
      prime: ``int32[B, P]`` priming ids, P >= 1; the last one is the first input of generation.
      key: PRNG key; the same key gives the same sample.
      length: tokens to generate.
      temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
      top_k: sample among the k most likely tokens only; 0 for all.

    Returns:
      ``int32[B, length]``.
    """
    batch = prime.shape[0]
    carry = zero_carry(model.config, batch)
    if prime.shape[1] > 1:
        _, carry = model.apply(variables, prime[:, :-1], carry)
    uniforms = jax.random.uniform(key, (length, batch))  # [N, B]

    def step(variables, state, uniform):
        carry, token = state
        logits, carry = model.apply(variables, token[:, None], carry)  # [B, 1, V]
        probabilities = next_token_distribution(logits[:, 0], temperature=temperature, top_k=top_k)
        token = _pick(probabilities, uniform)
        return (carry, token), token

    _, ids = engines.run(step, variables, (carry, prime[:, -1]), uniforms)  # ids: [N, B]
    return ids.T


def generate(
    model: RNNLanguageModel,
    variables: Any,
    vocab: Any,
    prime_text: str,
    *,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> str:
    """``prime_text`` and the ``length`` tokens sampled after it, decoded together with ``vocab``
    (so a word-level continuation is separated from its prime by a space, as its words are).

    Raises:
      lstmjax._checks.FieldError: naming ``length`` (not an int >= 1), ``temperature`` (not a
        number > 0), ``top_k`` (not an int in [0, V]) or ``prime`` (no tokens: empty, or only
        spaces at word level).
      ValueError: a prime with tokens outside the vocabulary.
    """
    require_int("length", length, minimum=1, meaning="tokens to generate")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
            temperature > 0):
        raise FieldError("temperature", f"temperature must be a number > 0, got {temperature!r}")
    require_int("top_k", top_k, maximum=len(vocab), meaning=f"0: all tokens; V={len(vocab)}")
    ids = vocab.encode(prime_text)
    if len(ids) == 0:
        example = "'the'" if vocab.level == "word" else "'The '"
        raise FieldError("prime", f"the prime {prime_text!r} holds no {vocab.level} token; give "
                         f"one, e.g. {example}")
    prime = jnp.asarray(ids, jnp.int32)[None, :]
    ids = generate_ids(model, variables, prime, jax.random.key(seed), length=length,
                       temperature=float(temperature), top_k=int(top_k))
    return vocab.decode(jax.device_get(jnp.concatenate([prime, ids], axis=1)[0]))
