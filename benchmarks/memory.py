"""Memory at long T: peak memory and step time of training one long window, with the ``fused`` and
``scan`` engines, each with and without remat (``ModelConfig.remat_chunk``).

The model is the ``long-seq`` shape's (V=128, H=256, one layer, B=32) on a window of ``--seq-len``
steps (default 10000), trained as in :mod:`benchmarks.throughput` (clip + Adam, full float32
matmuls). Without remat, the backward pass keeps every step's residuals (gates, cell states) of
all T steps; with ``remat_chunk=K`` (``--remat-chunk``, default 100) it keeps the T / K carries
between chunks and recomputes one chunk's residuals at a time, for a second forward pass. Each row
runs in a fresh process: the first call (compile included) is timed apart, then the median of
``--steps`` steps after ``--warmup``. A row that fails (out of memory: on a CPU the kernel may
kill the process) or runs past ``--timeout`` says so.

What the peak memory is (:func:`benchmarks.report.peak_memory_bytes`):

* on a GPU, the peak bytes in use of JAX's device allocator over the process: the arrays and
  XLA's temporary buffers of the training step, not the pool XLA preallocates;
* on a CPU, the peak resident set size of the whole process (``ru_maxrss``): the Python
  interpreter, the imported libraries (jax, XLA, flax, optax), XLA's compiler at work and the
  compiled programs, then the training step's buffers. The ``baseline`` column is the same peak
  taken before the model is built (once jax has started its backend): the part of the peak that
  is not the model. Compare rows of one table; a CPU's numbers are not a GPU's.

    python -m benchmarks.memory                  # T=10000, chunk 100, writes results/<backend>/
    python -m benchmarks.memory --quick          # a tiny model (H=8, B=2, T=40, chunk 10): seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from benchmarks import report
from benchmarks.shapes import SHAPES, Shape

MEMORY_ENGINES = ("fused", "scan")  # keys of lstmjax.engines.ENGINES
SEQ_LEN, REMAT_CHUNK = 10000, 100
QUICK_SHAPE = Shape("quick-memory", 16, 8, 1, 2, 40)
QUICK_REMAT_CHUNK = 10


def benchmark_shape(seq_len: int | None, *, quick: bool) -> Shape:
    """The long-seq shape (or the quick one) with ``seq_len`` steps (None: the default)."""
    shape = QUICK_SHAPE if quick else SHAPES["long-seq"]
    seq_len = seq_len or (shape.seq_len if quick else SEQ_LEN)
    return dataclasses.replace(shape, name=f"{shape.name} T={seq_len}", seq_len=seq_len)


def runner_labels(remat_chunk: int) -> list[str]:
    """The rows: each of :data:`MEMORY_ENGINES` without remat, then with ``remat_chunk``."""
    from benchmarks.peers import lstmjax_label

    return [lstmjax_label(engine, remat_chunk=chunk)
            for engine in MEMORY_ENGINES for chunk in (None, remat_chunk)]


def measure(label: str, shape: Shape, *, warmup: int, steps: int) -> dict:
    """Train lstmjax ``label`` (:func:`benchmarks.peers.lstmjax_label`) on ``shape`` in this
    process: timings, the peak memory, and the peak before the model was built (``baseline``)."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_default_matmul_precision", "highest")
    from benchmarks.peers import lstmjax_runner, parse_lstmjax_label

    options = parse_lstmjax_label(label)
    jax.devices()  # start the backend: its memory belongs to the baseline
    baseline = report.peak_memory_bytes()
    runner = lstmjax_runner(shape, **options)
    with jax.numpy_dtype_promotion("standard"):
        timing = report.time_steps(runner.step, warmup=warmup, steps=steps)
    return {"runner": label, **options, "seq_len": shape.seq_len, "notes": runner.notes,
            **timing, **report.peak_memory_bytes(), "baseline": baseline,
            "tokens_per_s": shape.tokens_per_step / timing["median_step_s"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model (H=8, B=2, T=40, chunk 10), few steps: seconds")
    parser.add_argument("--seq-len", type=int, default=None,
                        help=f"steps of the window (default {SEQ_LEN}; --quick: 40)")
    parser.add_argument("--remat-chunk", type=int, default=None,
                        help=f"steps per recomputed chunk of the remat rows; must divide "
                        f"--seq-len (default {REMAT_CHUNK}; --quick: {QUICK_REMAT_CHUNK})")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the median is kept)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds one row may take before it is marked unavailable")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    parser.add_argument("--one", metavar="RUNNER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 2
    shape = benchmark_shape(args.seq_len, quick=args.quick)
    if args.one:
        print(json.dumps(measure(args.one, shape, warmup=args.warmup, steps=args.steps)))
        return {}
    chunk = args.remat_chunk or (QUICK_REMAT_CHUNK if args.quick else REMAT_CHUNK)
    if chunk < 1 or shape.seq_len % chunk:
        parser.error(f"--remat-chunk {chunk} must be a positive divisor of T={shape.seq_len}")

    rows = []
    for label in runner_labels(chunk):
        rows.append(_measure_in_subprocess(args, label))
        print(_describe(rows[-1]), flush=True)
    fields = {"shape": vars(shape), "remat_chunk": chunk, "warmup": args.warmup,
              "steps": args.steps, "rows": rows}
    return report.save("memory", fields, quick=args.quick, out=args.out, table=table)


def _measure_in_subprocess(args, label: str) -> dict:
    arguments = ["--one", label, "--warmup", str(args.warmup), "--steps", str(args.steps)]
    arguments += ["--quick"] if args.quick else []
    arguments += ["--seq-len", str(args.seq_len)] if args.seq_len else []
    return report.measure_row({"runner": label}, "benchmarks.memory", arguments,
                              timeout=args.timeout)


def _describe(row: dict) -> str:
    if "median_step_s" not in row:
        return f"{row['runner']:20s} {row.get('unavailable') or 'failed: ' + row['failed']}"
    memory, kind = report.peak_of(row)
    return (f"{row['runner']:20s} peak {memory / 2**20:8.0f} MiB ({kind})  step "
            f"{row['median_step_s'] * 1e3:9.1f} ms  first call {row['first_call_s']:6.1f} s")


def table(record: dict) -> str:
    """Markdown: one row per runner: peak MiB, its ratio to the same engine's without remat, the
    baseline MiB, step ms and tokens/s, first call s."""
    plain = {row["runner"]: report.peak_of(row)[0] for row in record["rows"]
             if "median_step_s" in row}
    rows = []
    for row in record["rows"]:
        if "median_step_s" not in row:
            why = row.get("unavailable") or f"failed: {row.get('failed')}"
            rows.append([row["runner"], *[None] * 6, why])
            continue
        (memory, kind), (baseline, _) = report.peak_of(row), report.peak_of(row["baseline"])
        engine = row["runner"].split()[0]
        ratio = memory / plain[engine] if engine in plain else None
        rows.append([row["runner"], f"{memory / 2**20:.0f} ({kind})", ratio,
                     f"{baseline / 2**20:.0f}", row["median_step_s"] * 1e3,
                     round(row["tokens_per_s"]), row["first_call_s"], row["notes"]])
    return report.markdown_table(
        ["runner", "peak MiB", "x no remat", "baseline MiB", "step ms", "tokens/s",
         "first call s", "notes"], rows)


if __name__ == "__main__":
    main()
