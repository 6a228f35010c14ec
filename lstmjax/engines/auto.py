"""``engine="auto"``: the engine and unroll for a layer, from measurements committed here.

:data:`MEASURED` holds, per backend, the engine and unroll that trained fastest for each range of
hidden sizes in ``benchmarks/results/<backend>/throughput.json`` (``python -m
benchmarks.throughput``; the numbers and the command are in ``benchmarks/results/README.md``),
measured with LSTM layers and applied to every cell. On a backend with no measurement yet,
"auto" takes the CPU's choice and says so in its reason, which the training log prints: the
choice is never silent. The table is the whole of the rule, so the choice is deterministic.
``engine="scan"`` (or any named engine) turns the choice off.
"""

from __future__ import annotations

from typing import Any

# backend -> [(largest hidden size, engine, unroll), ...] from that backend's throughput runs.
# CPU (benchmarks/results/cpu/throughput.json, LSTM, best of two rounds): fused over scan 1.17x
# at H=256 (long-seq), 1.05-1.15x at 512 (anna-char), 1.37x at 650 (ptb-medium), 2.03x at 1500
# (ptb-large); at H=128 (text8-char) and 200 (ptb-small) fused did not beat scan (0.98x, 0.87x)
# and unroll=4 did not help either.
MEASURED: dict[str, list[tuple[int, str, int]]] = {
    "cpu": [(200, "scan", 1), (10**9, "fused", 1)],
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
    _, engine, unroll = next(row for row in MEASURED[source] if cell.hidden_size <= row[0])
    note = f"measured on {source}" if source == backend else (
        f"no measurement on {backend} yet; the {source} table's choice")
    note = f"{note}, H={cell.hidden_size}"
    if engine not in candidates:
        return fallback, 1, f"{engine} ({note}) cannot run {cell!r}: {fallback}"
    unroll = max(1, min(unroll, num_steps))
    return engine, unroll, f"{engine} unroll={unroll} ({note})"
