"""``engine="auto"``: the engine and unroll for a layer, from measurements committed here.

:data:`MEASURED` holds, per backend, the engine that trained fastest in
``benchmarks/results/<backend>/throughput.json`` (``python -m benchmarks.throughput``; the
numbers and the command are in ``benchmarks/results/README.md``) and the unroll that won for each
range of hidden sizes. On a backend with no measurement yet, "auto" takes the CPU's choice and
says so in its reason, which the training log prints: the choice is never silent. The table is
the whole of the rule, so the choice is deterministic.
"""

from __future__ import annotations

from typing import Any

# backend -> (engine, [(largest hidden size, unroll), ...]) from that backend's throughput runs.
# CPU (benchmarks/results/cpu/throughput.json): fused beat scan on the recipe shapes it did not
# tie; unroll=4 won at H=128 (text8-char, 1.2x) and lost at H=200 (ptb-small, 0.66x) and above.
MEASURED: dict[str, tuple[str, list[tuple[int, int]]]] = {
    "cpu": ("fused", [(128, 4), (10**9, 1)]),
}
FALLBACK_BACKEND = "cpu"


def choose(cell: Any, *, backend: str, num_steps: int, batch_size: int,
           candidates: list[str], fallback: str) -> tuple[str, int, str]:
    """``(engine, unroll, reason)`` for ``cell`` on ``[num_steps, batch_size]`` inputs.

    ``candidates`` are the engines that support the cell and options; if the measured engine is
    not among them, ``fallback`` runs.
    """
    del batch_size
    source = backend if backend in MEASURED else FALLBACK_BACKEND
    engine, unrolls = MEASURED[source]
    note = f"measured on {source}" if source == backend else (
        f"no measurement on {backend} yet; the {source} table's choice")
    if engine not in candidates:
        return fallback, 1, f"{engine} ({note}) cannot run {cell!r}: {fallback}"
    unroll = next(u for largest, u in unrolls if cell.hidden_size <= largest)
    unroll = max(1, min(unroll, num_steps))
    return engine, unroll, f"{engine} unroll={unroll} ({note})"
