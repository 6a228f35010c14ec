"""Graph-build scaling: seconds to trace, lower and compile lstmjax's training step, against T.

The training step (forward, backward, clip, Adam) of a 2-layer LSTM language model is built for
each T with every engine of lstmjax's registry (``lstmjax.engines.ENGINE_NAMES``: ``auto``, then
e.g. ``scan``, one step in a ``lax.scan``; ``static``, a Python loop whose program holds T steps;
``fused``) and ``scan`` with ``--unroll`` steps per iteration (``--engines`` picks others, e.g.
``"scan remat=10"``), and timed through JAX's ahead-of-time stages: ``jit(f).trace``,
``.lower()``, ``.compile()``. Each measurement runs in a fresh process with the persistent
compilation cache off, so no cache hides compile time. The size of the lowered program (StableHLO
ops) and of the compiled one (HLO instructions after XLA's passes) explains the times. Static is
capped (``--static-cap``) where it becomes impractical; the output says so.

    python -m benchmarks.compile_time                 # T in 10 .. 1000, writes results/<backend>/
    python -m benchmarks.compile_time --quick         # seconds
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time

from benchmarks import report

SEQ_LENS = (10, 25, 50, 100, 200, 400, 1000)


def measure(label: str, seq_len: int, *, hidden: int, layers: int, vocab: int, batch: int,
            precision: str) -> dict:
    """Trace, lower and compile one training step in this process; seconds and program sizes.

    ``label`` names the engine and its options (:func:`benchmarks.peers.lstmjax_label`).
    """
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_default_matmul_precision", precision)
    from benchmarks.peers import lstmjax_train_step, parse_lstmjax_label
    from benchmarks.shapes import Shape

    shape = Shape(f"T={seq_len}", vocab, hidden, layers, batch, seq_len)
    with jax.numpy_dtype_promotion("standard"):
        train_step, arguments = lstmjax_train_step(shape, **parse_lstmjax_label(label))
        start = time.perf_counter()
        traced = train_step.trace(*arguments)
        traced_at = time.perf_counter()
        lowered = traced.lower()
        lowered_at = time.perf_counter()
        compiled = lowered.compile()
        compiled_at = time.perf_counter()
    return {
        **_fields(label, seq_len),
        "trace_s": traced_at - start, "lower_s": lowered_at - traced_at,
        "compile_s": compiled_at - lowered_at,
        "stablehlo_ops": len(re.findall(r"\bstablehlo\.[a-z_]+", lowered.as_text())),
        "hlo_instructions": len(re.findall(r"(?m)^\s+%?[\w.\-]+ = ", compiled.as_text())),
    }


def _fields(label: str, seq_len: int) -> dict:
    """A row's keys: ``engine``, ``unroll``, ``seq_len``, and ``remat_chunk`` if ``label`` has
    one."""
    from benchmarks.peers import parse_lstmjax_label

    options = parse_lstmjax_label(label)
    row = {"engine": options["engine"], "unroll": options["unroll"], "seq_len": seq_len}
    return row if options["remat_chunk"] is None else {**row, "remat_chunk": options["remat_chunk"]}


def _measure_in_subprocess(args, label: str, seq_len: int) -> dict:
    arguments = ["--one", label, str(seq_len), "--hidden", str(args.hidden), "--layers",
                 str(args.layers), "--vocab", str(args.vocab), "--batch", str(args.batch),
                 "--precision", args.precision]
    try:
        return report.run_measurement("benchmarks.compile_time", arguments, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**_fields(label, seq_len), "skipped": f"did not finish in {args.timeout:g} s"}
    except report.MeasurementFailed as error:
        raise RuntimeError(f"measurement {label} T={seq_len} failed:\n{error.log}") from error


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, T in 2, 4: seconds")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=list(SEQ_LENS))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--unroll", type=int, default=8,
                        help="unroll of the 'scan unroll=K' row, scan with several steps per "
                        "iteration (default 8)")
    parser.add_argument("--engines", nargs="+", default=None,
                        help="rows of each T (default: every engine name of lstmjax's registry, "
                        "auto included, and 'scan unroll=K'): an engine name with optional "
                        "unroll=K and remat=K, e.g. 'fused remat=10'")
    parser.add_argument("--static-cap", type=int, default=100,
                        help="largest T built with the static engine (default 100: on a 2-core "
                        "CPU its compile takes minutes there and grows faster than linearly)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds one measurement may take before it is marked skipped")
    parser.add_argument("--precision", default="highest", choices=["highest", "tensorfloat32"],
                        help="JAX default matmul precision (highest: full float32)")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    parser.add_argument("--one", nargs=2, metavar=("LABEL", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seq_lens = [2, 4] if args.seq_lens == list(SEQ_LENS) else args.seq_lens
        args.hidden, args.layers, args.vocab, args.batch, args.unroll = 4, 1, 10, 2, 2
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), hidden=args.hidden,
                                 layers=args.layers, vocab=args.vocab, batch=args.batch,
                                 precision=args.precision)))
        return {}
    from benchmarks.peers import lstmjax_labels, parse_lstmjax_label

    labels = args.engines or lstmjax_labels(args.unroll)
    try:
        engines = {label: parse_lstmjax_label(label)["engine"] for label in labels}
    except ValueError as error:
        parser.error(str(error))

    import jax

    jax.config.update("jax_default_matmul_precision", args.precision)
    rows = []
    for seq_len in args.seq_lens:
        for label in labels:
            if engines[label] == "static" and seq_len > args.static_cap:
                rows.append({**_fields(label, seq_len),
                             "skipped": f"static capped at T={args.static_cap}"})
            else:
                rows.append(_measure_in_subprocess(args, label, seq_len))
            print(_describe(rows[-1]), flush=True)
    fields = {"model": {"hidden": args.hidden, "layers": args.layers, "vocab": args.vocab,
                        "batch": args.batch}, "engines": labels, "static_cap": args.static_cap,
              "rows": rows}
    return report.save("compile_time", fields, quick=args.quick, out=args.out, table=table)


def row_label(row: dict) -> str:
    """The engine label of a row, e.g. ``"scan unroll=8"`` (the table's and the plot's names)."""
    from benchmarks.peers import lstmjax_label

    return lstmjax_label(row["engine"], unroll=row["unroll"], remat_chunk=row.get("remat_chunk"))


def _describe(row: dict) -> str:
    if "skipped" in row:
        return f"T={row['seq_len']:5d} {row_label(row):16s} skipped: {row['skipped']}"
    return (f"T={row['seq_len']:5d} {row_label(row):16s} trace {row['trace_s']:7.2f} s  lower "
            f"{row['lower_s']:6.2f} s  compile {row['compile_s']:7.2f} s  "
            f"{row['stablehlo_ops']} StableHLO ops")


def table(record: dict) -> str:
    """The Markdown table of a compile-time record."""
    rows = []
    for row in record["rows"]:
        if "skipped" in row:
            rows.append([row["seq_len"], row_label(row), *[None] * 5, row["skipped"]])
        else:
            total = row["trace_s"] + row["lower_s"] + row["compile_s"]
            rows.append([row["seq_len"], row_label(row), row["trace_s"], row["lower_s"],
                         row["compile_s"], total, row["stablehlo_ops"], row["hlo_instructions"]])
    return report.markdown_table(
        ["T", "engine", "trace s", "lower s", "compile s", "total s", "StableHLO ops",
         "HLO instructions / note"], rows)


if __name__ == "__main__":
    main()
