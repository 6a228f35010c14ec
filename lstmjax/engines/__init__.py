"""Engines: how a recurrent layer runs over time. :data:`ENGINES` is the one place an engine is named.

Two entry points:

* :func:`run` (``lstmjax.engines.loop``): any pure ``step(params, carry, x) -> (carry, y)`` over
  the time axis, with the generic engines ``"scan"`` (``lax.scan``) and ``"static"`` (a Python
  loop). Sampling and user code use it.
* :func:`run_layer`: one recurrent layer, given its cell. The model calls it once per layer.
  Generic engines run the cell's step through :func:`run`; layer engines see the cell's weight
  split and gate math (:class:`lstmjax.cells.LayerCell`) and may compute the layer as a
  whole: ``"fused"`` hoists the input projection out of the loop and has a hand-written backward
  pass; ``"native"`` runs the same algorithm's loops as one C++ FFI call each on the CPU
  (:mod:`lstmjax.engines.native`); ``"cudnn"`` calls cuDNN's LSTM on an NVIDIA GPU
  (:mod:`lstmjax.engines.cudnn`). ``"auto"`` picks an engine and unroll
  (:mod:`lstmjax.engines.auto`). A layer engine that does not support a cell, an option or the
  backend hands the layer to its own fallback ("native" and "cudnn" to "fused", "fused" to
  "scan"); :func:`resolve` says which engine runs and why, and the training log prints it.

A new engine is one module with ``run_layer`` and ``supports`` plus one :data:`ENGINES` entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.interpreters.ad import JVPTracer

from lstmjax._checks import require_choice, require_positive_int
from lstmjax.cells import LayerCell, check_layer_arguments, step_noise
from lstmjax.engines import auto, cudnn, fused, native
from lstmjax.engines.loop import (
    GENERIC_ENGINES,
    checked_lengths,
    checked_resets,
    reverse_resets,
    run,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """An engine of :func:`run_layer`.

    Attributes:
      run_layer: ``run_layer(cell, params, carry, xs, *, lengths, reverse, resets, noise,
        unroll) -> (carry, ys)`` on time-major, checked arguments.
      supports: ``supports(cell, *, backend, lengths, reverse, resets) -> None`` if
        the engine runs that cell with those options (each a bool: given or not) on that JAX
        backend (``"cpu"``, ``"gpu"``, ...), else the reason why not.
      fallback: the engine that runs what this one cannot (None: this one runs everything).
      forward_mode: whether ``jax.jvp`` and ``jax.jacfwd`` differentiate it. An engine with a
        hand-written backward pass (a ``jax.custom_vjp``) has reverse mode only; under forward
        mode :func:`run_layer` hands its layer to the fallback chain.
      probe_unrolls: the unrolls ``"auto"`` times it with (:mod:`lstmjax.engines.auto`); ``(1,)``
        for an engine whose loop has no unroll.
      untimed: why ``"auto"`` never times it, so never chooses it (a user may still name it); None
        if it does.
    """

    run_layer: Callable[..., tuple[Any, Array]]
    supports: Callable[..., str | None]
    fallback: str | None
    forward_mode: bool
    probe_unrolls: tuple[int, ...] = (1,)
    untimed: str | None = None


def _generic(engine: str) -> Callable[..., tuple[Any, Array]]:
    """A layer engine that runs the cell's step through :func:`run`."""

    def run_layer(cell, params, carry, xs, *, lengths, reverse, resets, noise, unroll):
        if not isinstance(cell, LayerCell):
            return run(cell.step, params, carry, xs, engine=engine, unroll=unroll,
                       lengths=lengths, reverse=reverse, resets=resets, checked=True)
        weights = cell.cast_weights(cell.layer_weights(params, noise))  # split once, outside

        def step(weights, carry, inputs):
            x, steps = inputs
            return cell.step_with_weights(weights, carry, x, step_noise(noise, steps))

        steps = None if noise is None else noise.steps
        return run(step, weights, carry, (xs, steps), engine=engine, unroll=unroll,
                   lengths=lengths, reverse=reverse, resets=resets, checked=True)

    return run_layer


def _supports_all(cell: Any, **options: Any) -> None:
    del cell, options


ENGINES: dict[str, EngineSpec] = {
    # unroll 1, the smallest program, and 4, which spreads the loop's per-iteration cost (a loop
    # condition, a kernel launch on an accelerator) over 4 steps; 8 would spread it further, but
    # compiles in about three times as long as 4 on a CPU (5 s against 1.4 s for an LSTM of
    # H=650), more than the whole probe should take
    "scan": EngineSpec(_generic("scan"), _supports_all, None, forward_mode=True,
                       probe_unrolls=(1, 4)),
    "static": EngineSpec(_generic("static"), _supports_all, None, forward_mode=True,
                         untimed="its program holds every step of the window, so it compiles in "
                                 "time growing with T (seconds at 16 steps), a cost that a "
                                 "per-step probe does not see"),
    "fused": EngineSpec(fused.run_layer, fused.supports, "scan", forward_mode=False),
    "native": EngineSpec(native.run_layer, native.supports, "fused", forward_mode=False),
    "cudnn": EngineSpec(cudnn.run_layer, cudnn.supports, "fused", forward_mode=False),
}
"""The engine registry: name -> :class:`EngineSpec`. ``"auto"`` is not an engine but a choice
among these (:func:`resolve`)."""

ENGINE_NAMES: tuple[str, ...] = ("auto", *ENGINES)


class EngineChoice(NamedTuple):
    """What :func:`run_layer` runs: ``engine`` (a key of :data:`ENGINES`), its ``unroll``, and the
    ``reason`` (``"requested"``, the auto-tuning table's entry, or why a fallback happened)."""

    engine: str
    unroll: int
    reason: str


def resolve(cell: Any, engine: str = "auto", *, unroll: int = 1, num_steps: int,
            batch_size: int, input_size: int | None = None, backend: str | None = None,
            lengths: bool = False, reverse: bool = False, resets: bool = False,
            forward_mode: bool = False) -> EngineChoice:
    """The engine and unroll that :func:`run_layer` uses for ``cell`` on ``[T, B]`` inputs.

    ``"auto"`` consults :func:`lstmjax.engines.auto.choose` among the engines that support the
    cell and options (``lengths``, ``reverse``, ``resets``: whether given; ``forward_mode``:
    whether the layer is traced under ``jax.jvp`` or ``jax.jacfwd``). A named engine that does
    not support them hands the layer to its :attr:`EngineSpec.fallback`, and so on down the
    chain ("native" -> "fused" -> "scan"), with each reason in the returned ``reason``.
    ``input_size`` (I, for "auto"'s measurement) defaults to the cell's output size (a stacked
    layer's); ``backend`` defaults to ``jax.default_backend()``.
    """
    require_choice("engine", engine, ENGINE_NAMES)
    require_positive_int("unroll", unroll)
    options = {"backend": backend or jax.default_backend(), "lengths": lengths,
               "reverse": reverse, "resets": resets}

    def why_not(engine: str) -> str | None:
        if forward_mode and not ENGINES[engine].forward_mode:
            return ("forward-mode differentiation: its backward pass is a jax.custom_vjp, which "
                    "jax.jvp cannot differentiate")
        return ENGINES[engine].supports(cell, **options)

    if engine == "auto":
        candidates = [name for name in ENGINES if why_not(name) is None]
        engine, unroll, reason = auto.choose(cell, backend=options["backend"],
                                             num_steps=num_steps, batch_size=batch_size,
                                             candidates=candidates, input_size=input_size)
        return EngineChoice(engine, unroll, f"auto: {reason}")
    reasons = []
    while (reason := why_not(engine)) is not None:
        fallback = ENGINES[engine].fallback
        reasons.append(f"{engine} cannot run {cell!r} ({reason}): {fallback} instead")
        engine = fallback
    return EngineChoice(engine, unroll, "; ".join(reasons) or "requested")


def run_layer(
    cell: Any,
    params: Any,
    carry: Any,
    xs: Array,
    *,
    engine: str = "auto",
    unroll: int = 1,
    lengths: Array | None = None,
    reverse: bool = False,
    resets: Array | None = None,
    key: Array | None = None,
    remat_chunk: int | None = None,
    time_major: bool = True,
) -> tuple[Any, Array]:
    """Run one recurrent layer of ``cell`` over the time axis of ``xs``.

    Semantics are :func:`run`'s (``lengths``, ``reverse``, ``resets``), whatever the engine; all
    engines give the same outputs, final carries and gradients (to float rounding).

    Forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) is seen when the layer is traced
    under it, and then only engines with :attr:`EngineSpec.forward_mode` run it ("auto" chooses
    among them; a named engine falls back). A ``jax.jvp`` applied to an already traced program
    (``jax.jvp(jax.jit(f), ...)``) or ``jax.linearize`` cannot be seen from inside: there a layer
    on "fused", "native" or "cudnn" raises JAX's "can't apply forward-mode autodiff (jvp) to a
    custom_vjp function"; the fix is ``engine="scan"`` (or the jvp inside the jit).

    Args:
      cell: a :class:`lstmjax.cells.RecurrentCell`.
      params: the cell's parameters, ``cell.param_shapes(I)``.
      carry: initial carry shaped like ``cell.zero_carry(B)``; None is zeros, a plain tuple is
        read in the carry's field order (an LSTM's ``(c, h)``), and floating leaves of any dtype
        are cast to the cell's state dtype (float32 for a 16-bit carry), as ``cell.step`` does.
      xs: ``float[T, B, I]`` (``[B, T, I]`` if not ``time_major``).
      engine: a key of :data:`ENGINES` or ``"auto"`` (see :func:`resolve`).
      unroll: steps per loop iteration of a scan-based engine (``"auto"`` picks its own).
      lengths: optional ``int[B]`` valid steps per sequence.
      reverse: run from the last step to the first; outputs keep the input's time order.
      resets: optional ``bool[T, B]``: zero the carry of sequence b before step t, in the order
        the steps run. Forward, mark each document's first step; with ``reverse=True``, each
        document's last step (:func:`reverse_resets` turns the one into the other, as
        :func:`lstmjax.run_bidirectional` does for its backward direction).
      key: the randomness of a regularizer cell (:mod:`lstmjax.regularizers`, training): its
        masks are drawn from it once, outside the loop (``cell.noise(key, T, B)``), and every
        engine gives the same numbers for the same key; no gradient flows into them. None
        (evaluation) runs the regularizers' evaluation form. A cell without randomness ignores
        it.
      remat_chunk: if set, the window is cut into chunks of this many steps (the last one shorter
        if it does not divide T), each recomputed in the backward pass (``jax.checkpoint``):
        memory for the per-step residuals of one chunk instead of all T, at the price of a second
        forward pass.
      time_major: layout of ``xs``, ``resets`` and the returned ``ys``.

    Returns:
      ``(final_carry, ys)`` with ``ys: [T, B, P]`` (``[B, T, P]`` if not ``time_major``); the
      final carry in the structure and dtypes of ``cell.zero_carry(B)``.
    """
    if jnp.ndim(xs) != 3:
        layout = "[T, B, I]" if time_major else "[B, T, I]"
        raise ValueError(f"xs must be {layout}, got shape {jnp.shape(xs)}")
    if not time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    num_steps, batch_size = xs.shape[:2]
    carry = check_layer_arguments(cell, params, carry, xs[0])
    lengths = checked_lengths(lengths, batch_size, num_steps)
    resets = checked_resets(resets, num_steps, batch_size, time_major)
    noise = None
    if key is not None and isinstance(cell, LayerCell):
        noise = jax.lax.stop_gradient(cell.noise(key, num_steps, batch_size))
    choice = resolve(cell, engine, unroll=unroll, num_steps=num_steps, batch_size=batch_size,
                     input_size=xs.shape[-1], lengths=lengths is not None, reverse=reverse,
                     resets=resets is not None,
                     forward_mode=under_forward_mode((params, carry, xs)))
    layer = ENGINES[choice.engine].run_layer
    options = {"reverse": reverse, "unroll": choice.unroll}
    if remat_chunk is None:
        carry, ys = layer(cell, params, carry, xs, lengths=lengths, resets=resets, noise=noise,
                          **options)
    else:
        carry, ys = _in_chunks(layer, remat_chunk, cell, params, carry, xs, lengths, resets,
                               noise, options)
    return carry, ys if time_major else jnp.swapaxes(ys, 0, 1)


def _in_chunks(layer, chunk, cell, params, carry, xs, lengths, resets, noise, options):
    """``layer`` over ``xs`` in chunks of ``chunk`` steps, each rematerialized in the backward pass.

    A loop over the whole chunks (``lax.scan``) whose body, one chunk's ``layer`` call, is under
    ``jax.checkpoint``, then (or, reversed, first) the remaining ``T % chunk`` steps, also
    checkpointed: only the carries between chunks are saved.
    """
    require_positive_int("remat_chunk", chunk)
    num_steps, batch_size = xs.shape[:2]
    num_chunks, tail = divmod(num_steps, chunk)
    head = num_chunks * chunk

    noise_steps = None if noise is None else noise.steps

    @jax.checkpoint
    def one_chunk(carry, inputs):
        xs_chunk, resets_chunk, steps_chunk, start = inputs
        steps = xs_chunk.shape[0]
        chunk_lengths = None if lengths is None else jnp.clip(lengths - start, 0, steps)
        return layer(cell, params, carry, xs_chunk, lengths=chunk_lengths, resets=resets_chunk,
                     noise=step_noise(noise, steps_chunk), **options)

    def chunks(carry):
        if not num_chunks:
            return carry, None

        def split(tree):  # leaves [head, ...] -> [head / chunk, chunk, ...]
            return jax.tree.map(lambda a: a[:head].reshape(num_chunks, chunk, *a.shape[1:]),
                                tree)

        starts = jnp.arange(num_chunks, dtype=jnp.int32) * chunk
        carry, ys = jax.lax.scan(one_chunk, carry,
                                 (split(xs), split(resets), split(noise_steps), starts),
                                 reverse=options["reverse"])
        return carry, ys.reshape(head, batch_size, *ys.shape[3:])

    def rest(carry):
        if not tail:
            return carry, None
        return one_chunk(carry, (*jax.tree.map(lambda a: a[head:], (xs, resets, noise_steps)),
                                 jnp.int32(head)))

    first, second = (rest, chunks) if options["reverse"] else (chunks, rest)
    carry, ys_first = first(carry)
    carry, ys_second = second(carry)
    parts = [ys_second, ys_first] if options["reverse"] else [ys_first, ys_second]
    return carry, jnp.concatenate([ys for ys in parts if ys is not None])


def under_forward_mode(tree: Any) -> bool:
    """Whether a leaf of ``tree`` is being traced by forward-mode differentiation (``jax.jvp``,
    ``jax.jacfwd``, the outer half of ``jax.hessian``), here or below another transformation's
    tracer (``jax.vmap``, reverse mode)."""
    def forward(value: Any) -> bool:
        while isinstance(value, jax.core.Tracer):
            if isinstance(value, JVPTracer):
                return True
            value = getattr(value, "primal", getattr(value, "val", None))
        return False

    return any(forward(leaf) for leaf in jax.tree.leaves(tree))


__all__ = ["ENGINES", "ENGINE_NAMES", "GENERIC_ENGINES", "EngineChoice", "EngineSpec",
           "resolve", "reverse_resets", "run", "run_layer", "under_forward_mode"]
