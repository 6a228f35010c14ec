"""``engine="auto"``: the engine and unroll for a layer, measured on the machine that runs it.

On first use of a key, :func:`choose` times every candidate (each engine that supports the
cell and options, but those whose registry entry, :class:`lstmjax.engines.EngineSpec`, says
``untimed``; with each unroll of its ``probe_unrolls``) on one layer's forward and backward pass
(``jax.value_and_grad`` of the sum of its outputs) with random inputs of the layer's shape, and
takes the fastest per step. The choice and every candidate's
time are cached in a JSON file, so the same key never measures again:

* where: ``$LSTMJAX_CACHE_DIR/auto.json``, else ``$XDG_CACHE_HOME/lstmjax/auto.json``, else
  ``~/.cache/lstmjax/auto.json`` (:func:`cache_file`). A corrupt file counts as empty and is
  rewritten by the next measurement.
* the key: the backend and device (the CPU's model and core count on a CPU), the cell (its class
  and every field but ``kernel_init``, dtypes included), the input size I, the batch B and the
  window T rounded to a power of two, at most :data:`PROBE_STEPS` (:func:`steps_bucket`).
* an entry: the engine and unroll chosen, ``ms_per_step`` of each candidate, the probe's window
  and the seconds the measurement took, the jax and jaxlib versions.

``LSTMJAX_AUTO=table`` turns measuring off: the choice then comes from :data:`MEASURED`, a table
committed with the package, as it does when measuring fails (the reason says why). So do a
one-step window (T=1: no loop over time to run differently) and a run of several processes
(each would time its own host, and all must run the same program).

The reason returned says what was chosen and why (measured, cached or the table), and the
training log prints it. Within :func:`pinned` (a training run), the first choice for each layer
shape sticks, and the choices a run saved earlier are reused, so a resumed run computes as before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import functools
import json
import math
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib.version
import numpy as np

from lstmjax.regularizers import innermost

MODE_VARIABLE = "LSTMJAX_AUTO"
MODES = ("measure", "table")
"""Values of ``$LSTMJAX_AUTO``: ``measure`` (the default: time the candidates once per key,
then use the cache) or ``table`` (the committed :data:`MEASURED` table, nothing timed)."""
CACHE_FILE = "auto.json"
CACHE_FORMAT = 1

PROBE_STEPS = 16
"""Longest window timed. Per-step time barely depends on T beyond a few steps (the work of each
step is the same), while a probe's cost grows with it, so longer windows are timed over 16 steps
and compared per step."""
TIMED_CALLS = 3
"""Timed calls per candidate after one warm-up call; the minimum counts."""
BUDGET_S = 1.0
"""Seconds of timed calls per key, shared by the candidates: a candidate whose warm-up call
outlasts its share is not called again, that call's time counts (compiling, once per candidate,
comes on top)."""

# backend -> cell class -> [(largest hidden size, engine, unroll), ...]: what measuring chose on
# that backend at the recipe shapes (python -m benchmarks.auto_table, whose JSON has the
# per-engine times: benchmarks/results/<backend>/auto_table.json; command in
# benchmarks/results/README.md), the choices by hidden size. CPU: 2-core AMD EPYC (AVX-512),
# jax 0.10.2, every cell; GPU: one NVIDIA H200, jax 0.11.2, LSTM and GRU only.
MEASURED: dict[str, dict[str, list[tuple[int, str, int]]]] = {
    "cpu": {
        "LSTM": [(650, "native", 1), (10**9, "fused", 1)],
        "GRU": [(200, "fused", 1), (10**9, "native", 1)],
        "SimpleRNN": [(512, "native", 1), (650, "fused", 1), (10**9, "native", 1)],
        "LayerNormLSTM": [(128, "scan", 4), (10**9, "fused", 1)],
    },
    "gpu": {
        "LSTM": [(128, "scan", 4), (200, "fused", 1), (256, "scan", 4), (650, "fused", 1),
                 (10**9, "cudnn", 1)],
        "GRU": [(200, "scan", 4), (10**9, "fused", 1)],
    },
}

_MEMO: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}  # (file, key) -> (entry, status)


@dataclasses.dataclass
class _Scope:
    """A :func:`pinned` scope: the choices by layer shape, which of them were ``saved`` before
    it (those say "reused"), and where they were saved."""

    choices: dict[str, dict[str, Any]]
    saved: set[str]
    source: str


_SCOPES: list[_Scope] = []  # pinned()'s, innermost last


def choose(cell: Any, *, backend: str, num_steps: int, batch_size: int, candidates: list[str],
           input_size: int | None = None) -> tuple[str, int, str]:
    """``(engine, unroll, reason)`` for ``cell`` on ``[num_steps, batch_size, input_size]``
    inputs (``input_size`` defaults to ``cell.output_size``: a stacked layer's).

    ``candidates`` are the engines that support the cell and options (``"scan"`` always does).
    Safe to call while jax traces a function: the measurement runs in a thread of its own.

    Raises:
      ValueError: ``$LSTMJAX_AUTO`` is neither ``measure`` nor ``table``.
    """
    input_size = input_size or cell.output_size
    shape = f"{describe_cell(cell)} I={input_size} B={batch_size} T={num_steps}"
    scope = _SCOPES[-1] if _SCOPES else None
    if scope is not None and shape in scope.choices:
        choice = scope.choices[shape]
        if choice["engine"] in candidates:
            if shape not in scope.saved:
                return choice["engine"], choice["unroll"], choice["reason"]
            unroll = max(1, min(int(choice["unroll"]), num_steps))
            return choice["engine"], unroll, (f"{choice['engine']} unroll={unroll} (reused "
                                              f"from {scope.source})")
    mode = os.environ.get(MODE_VARIABLE) or "measure"
    if mode not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={mode!r} is not one of {MODES}: unset it to measure "
                         "once per layer shape, or set it to 'table'")
    if mode == "table":
        choice = table_choice(cell, backend, num_steps, candidates, f"{MODE_VARIABLE}=table")
    elif num_steps == 1:
        choice = table_choice(cell, backend, num_steps, candidates, "one step: no loop to time")
    elif jax.process_count() > 1:
        why = f"{jax.process_count()} processes, which must agree: nothing timed"
        choice = table_choice(cell, backend, num_steps, candidates, why)
    else:
        try:
            choice = _measured_choice(cell, backend, input_size, batch_size, num_steps,
                                      candidates)
        except Exception as error:  # whatever failed (no such backend, a compile), say so
            message = (str(error).splitlines() or [""])[0][:200]
            why = f"measuring failed: {type(error).__name__}: {message}"
            choice = table_choice(cell, backend, num_steps, candidates, why)
    if scope is not None:
        scope.choices[shape] = dict(zip(("engine", "unroll", "reason"), choice))
        scope.saved.discard(shape)
    return choice


@contextlib.contextmanager
def pinned(saved: Mapping[str, Mapping[str, Any]] | None = None, *,
           source: str = "a saved run") -> Iterator[dict[str, dict[str, Any]]]:
    """Within: the first choice for each layer shape sticks (the cache file may change during a
    long run), and the choices in ``saved`` (what an earlier scope yielded, read back from
    ``source``) are reused where their engine supports the layer; their reason says so.

    Yields the scope's choices, ``{layer shape: {"engine", "unroll", "reason"}}``, filled in as
    layers are resolved: save it to reuse it. A layer shape is ``describe_cell(cell)`` with
    ``I=``, ``B=`` and ``T=`` (exact): the machine is not part of it.
    """
    saved = {shape: dict(choice) for shape, choice in (saved or {}).items()}
    scope = _Scope(saved, set(saved), source)
    _SCOPES.append(scope)
    try:
        yield scope.choices
    finally:
        _SCOPES.remove(scope)


def table_choice(cell: Any, backend: str, num_steps: int, candidates: list[str],
                 why: str) -> tuple[str, int, str]:
    """``(engine, unroll, reason)`` from :data:`MEASURED`; ``why`` the table is used."""
    kind = type(innermost(cell)).__name__  # a regularizer runs where its cell runs best
    rows = MEASURED.get(backend, {}).get(kind)
    if rows is None:
        return "scan", 1, f"scan unroll=1 (table, {why}: no row for {kind} on {backend})"
    _, engine, unroll = next(row for row in rows if cell.hidden_size <= row[0])
    note = f"table, {why}: {backend} {kind} H={cell.hidden_size}"
    if engine not in candidates:
        return "scan", 1, f"scan unroll=1 ({note}; {engine} cannot run {cell!r})"
    unroll = max(1, min(unroll, num_steps))
    return engine, unroll, f"{engine} unroll={unroll} ({note})"


def describe_cell(cell: Any) -> str:
    """A stable description of ``cell``: class and fields, dtypes by name, without
    ``kernel_init`` (it sets values, not speed); ``repr(cell)`` for a cell that is not a
    dataclass."""
    if not dataclasses.is_dataclass(cell):
        return repr(cell)
    fields = ", ".join(f"{field.name}={_plain(getattr(cell, field.name))}"
                       for field in dataclasses.fields(cell) if field.name != "kernel_init")
    return f"{type(cell).__name__}({fields})"


def _plain(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return describe_cell(value)  # a wrapped cell, described without its kernel_init
    if isinstance(value, type | np.dtype):
        with contextlib.suppress(TypeError):
            return jnp.dtype(value).name
    return repr(value)


def cache_file() -> pathlib.Path:
    """``$LSTMJAX_CACHE_DIR/auto.json``, else ``$XDG_CACHE_HOME/lstmjax/auto.json``, else
    ``~/.cache/lstmjax/auto.json``."""
    if os.environ.get("LSTMJAX_CACHE_DIR"):
        return pathlib.Path(os.environ["LSTMJAX_CACHE_DIR"]) / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "lstmjax" / CACHE_FILE


def steps_bucket(num_steps: int) -> int:
    """The window a key stands for and the probe times: ``num_steps`` rounded to the nearest
    power of two (a window within 1.4x of it), at most :data:`PROBE_STEPS`. Per-window costs
    (setting up a loop, the fused engine's one input matmul) weigh against per-step costs
    differently as T grows, so short windows get their own key, and few keys exist (1, 2, 4, 8,
    16)."""
    return min(2 ** round(math.log2(num_steps)), PROBE_STEPS)


@functools.cache
def describe_device(backend: str) -> str:
    """The device that runs ``backend``'s programs: its kind, and on a CPU the processor's
    model and the cores this process may use (``"AMD EPYC x2"``)."""
    kind = jax.devices(backend)[0].device_kind
    if backend != "cpu":
        return kind
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):  # Linux names the model there
        model = next((line.split(":", 1)[1].strip() for line in
                      pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} x{cores}"


def _measured_choice(cell, backend, input_size, batch_size, num_steps, candidates):
    """The fastest candidate per step from the cache, timing those it lacks (and saving)."""
    steps = steps_bucket(num_steps)
    device = describe_device(backend)
    key = f"{backend} | {device} | {describe_cell(cell)} | I={input_size} B={batch_size} T~{steps}"
    path = cache_file()
    from lstmjax.engines import ENGINES  # the registry imports this module

    options = list(dict.fromkeys((engine, min(unroll, steps)) for engine in candidates
                                 if ENGINES[engine].untimed is None
                                 for unroll in ENGINES[engine].probe_unrolls))
    cached = f"cached in {_home(path)}"
    entry, status = _MEMO.get((str(path), key)) or (
        read_cache(path).get(key) or {"ms_per_step": {}}, cached)
    missing = [option for option in options if _label(*option) not in entry["ms_per_step"]]
    if missing:
        start = time.perf_counter()
        measured = _measure(cell, backend, input_size, batch_size, steps, missing)
        times = {**entry["ms_per_step"], **measured}
        engine, unroll = _fastest(options, times)
        entry = {"engine": engine, "unroll": unroll, "ms_per_step": times,
                 "probe_steps": steps, "measure_s": round(time.perf_counter() - start, 3),
                 "jax": jax.__version__, "jaxlib": jaxlib.version.__version__,
                 "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        status = cached
        try:
            _write_cache(path, key, entry)
        except OSError as error:
            status = f"not cached: {type(error).__name__}: {error}"
    _MEMO[(str(path), key)] = entry, status
    times = entry["ms_per_step"]
    engine, unroll = _fastest(options, times)
    unroll = max(1, min(unroll, num_steps))
    ranked = ", ".join(f"{_label(*option)} {times[_label(*option)]:.3g} ms" for option in
                       sorted(options, key=lambda option: times[_label(*option)]))
    where = (f"measured on {backend} {device}, {type(cell).__name__} H={cell.hidden_size} "
             f"I={input_size} B={batch_size} T~{steps}, per step: {ranked}")
    note = f"{where}; {status}" if missing else f"{status}, {where}"
    return engine, unroll, f"{engine} unroll={unroll} ({note})"


def _fastest(options: list[tuple[str, int]], times: Mapping[str, float]) -> tuple[str, int]:
    """The option with the least time per step; ties go to the earlier option."""
    return min(options, key=lambda option: times[_label(*option)])


def _label(engine: str, unroll: int) -> str:
    return engine if unroll == 1 else f"{engine} unroll={unroll}"


def _measure(cell, backend, input_size, batch_size, steps, options) -> dict[str, float]:
    """Milliseconds per step of each ``(engine, unroll)`` in ``options``: one layer's forward
    and backward pass over ``[steps, batch_size, input_size]`` random inputs, each compiled once,
    called once to warm up, then timed (:data:`TIMED_CALLS`, :data:`BUDGET_S`; the minimum).

    Runs in a thread of its own: jax's tracing state belongs to a thread, so when :func:`choose`
    is called while a function is being traced (the train step under ``jax.jit``), the probe's
    compiles and calls still run now instead of being staged into that trace. Thread-local jax
    settings (``with jax.default_matmul_precision(...)`` and the like) do not reach it; global
    ones (``jax.config.update``) do."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lstmjax-auto") as pool:
        return pool.submit(_time_options, cell, backend, input_size, batch_size, steps,
                           options).result()


def _time_options(cell, backend, input_size, batch_size, steps, options) -> dict[str, float]:
    from lstmjax.engines import run_layer  # the registry imports this module

    rng = np.random.default_rng(0)
    device = jax.devices(backend)[0]

    def random(shape, dtype):
        return jax.device_put(rng.normal(0.0, 0.5, shape).astype(np.float32), device).astype(dtype)

    params = jax.device_put(cell.init(jax.random.key(0), input_size), device)
    carry = jax.tree.map(lambda a: random(a.shape, a.dtype), cell.zero_carry(batch_size))
    xs = random((steps, batch_size, input_size), cell.dtype)
    share = BUDGET_S / len(options)
    times = {}
    for engine, unroll in options:
        def loss(params, xs, engine=engine, unroll=unroll):
            _, ys = run_layer(cell, params, carry, xs, engine=engine, unroll=unroll)
            return jnp.sum(ys.astype(jnp.float32))

        compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(params, xs).compile()

        def seconds(compiled=compiled):
            start = time.perf_counter()
            jax.block_until_ready(compiled(params, xs))
            return time.perf_counter() - start

        first = seconds()  # warms up; a call longer than the share is all work: it counts
        calls = min(TIMED_CALLS, int(share / first))
        best = min(seconds() for _ in range(calls)) if calls else first
        times[_label(engine, unroll)] = round(best / steps * 1e3, 6)
    return times


def read_cache(path: pathlib.Path) -> dict[str, dict[str, Any]]:
    """The entries of the cache file; empty if it is missing, unreadable or not this format.
    Entries without a number per candidate are left out."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(
            data.get("entries"), dict):
        return {}
    return {key: entry for key, entry in data["entries"].items()
            if isinstance(entry, dict) and isinstance(entry.get("ms_per_step"), dict)
            and all(isinstance(t, int | float) for t in entry["ms_per_step"].values())}


def _write_cache(path: pathlib.Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key`` to the cache file (read again first, so that entries other
    processes wrote survive), written to a temporary file and renamed over it."""
    entries = {**read_cache(path), key: entry}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as tmp:
        try:
            json.dump({"format": CACHE_FORMAT, "entries": entries}, tmp, indent=1,
                      sort_keys=True)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


def _home(path: pathlib.Path) -> str:
    """``path`` with the home directory written ``~``."""
    with contextlib.suppress(ValueError, RuntimeError):
        return f"~/{path.relative_to(pathlib.Path.home())}"
    return str(path)
