"""Training throughput: tokens per second, step time and peak memory on the recipe shapes.

Rows: lstmjax, one per name of its engine registry (``lstmjax.engines.ENGINE_NAMES``: ``auto``,
whose notes name the engine it resolved to, then each engine) plus ``scan`` with ``--unroll``
steps per iteration; then the tools a user would pick instead (:mod:`benchmarks.peers`: flax
``nn.RNN``, ``jax.experimental.rnn`` on cuDNN, ``torch.nn.LSTM``, Keras 3, TensorFlow). All train
the same model: embedding, LSTM stack, dense, softmax cross-entropy, clip + Adam. A peer that
cannot run here (missing library, needs a GPU) gets a row that says why. Each measurement runs in
a fresh process: the first call (compile included) is timed apart, then the median of
``--steps`` steps after ``--warmup``, each ending with the device synchronized. Matmuls run in
full float32 by default (``--precision``; TF32 changes speed and results alike). The table gives
each row's tokens/s as a ratio to ``lstmjax scan``'s and to ``torch nn.LSTM``'s on the same shape.

    python -m benchmarks.throughput                  # every shape and runner, results/<backend>/
    python -m benchmarks.throughput --quick          # seconds
"""

from __future__ import annotations

import argparse
import json

from benchmarks import report
from benchmarks.shapes import QUICK_SHAPES, SHAPES

STATIC_CAP = 200  # longest window unrolled statically (lstmjax and TF): its build grows with T
LSTMJAX_PREFIX = "lstmjax "  # lstmjax's rows are the prefix and a benchmarks.peers.lstmjax_label
RATIOS = {"x lstmjax scan": "lstmjax scan", "x torch": "torch nn.LSTM"}  # table column: its row


def runner_names(unroll: int) -> list[str]:
    """Every row: ``"lstmjax <label>"`` for each engine of lstmjax's registry (``"auto"``
    included) and for scan with ``unroll`` (:func:`benchmarks.peers.lstmjax_labels`), then the
    peers."""
    from benchmarks.peers import PEERS, lstmjax_labels

    return [LSTMJAX_PREFIX + label for label in lstmjax_labels(unroll)] + list(PEERS)


def check_runner_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a peer or ``"lstmjax <label>"``: an engine name with
    optional ``unroll=K`` and ``remat=K`` (:func:`benchmarks.peers.parse_lstmjax_label`)."""
    from benchmarks.peers import PEERS, parse_lstmjax_label

    if name.startswith(LSTMJAX_PREFIX):
        parse_lstmjax_label(name.removeprefix(LSTMJAX_PREFIX))
    elif name not in PEERS:
        raise ValueError(f"unknown runner {name!r}: expected 'lstmjax <engine> [unroll=K] "
                         f"[remat=K]' or one of {list(PEERS)}")


def make_runner(name: str, shape, *, precision: str) -> report.Runner:
    """The runner of the row ``name`` (see :func:`check_runner_name`) on ``shape``."""
    from benchmarks.peers import PEERS, lstmjax_runner, parse_lstmjax_label

    if "static" in name and shape.seq_len > STATIC_CAP:
        raise report.Unavailable(f"static unrolling capped at T={STATIC_CAP}")
    if name.startswith(LSTMJAX_PREFIX):
        return lstmjax_runner(shape, **parse_lstmjax_label(name.removeprefix(LSTMJAX_PREFIX)),
                              precision=precision)
    return PEERS[name](shape, precision=precision)


def measure(shape_name: str, runner_name: str, *, precision: str, warmup: int,
            steps: int) -> dict:
    """One runner on one shape, in this process."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_default_matmul_precision",
                      "highest" if precision == "float32" else "tensorfloat32")
    shape = {**SHAPES, **QUICK_SHAPES}[shape_name]
    row = {"shape": shape_name, "runner": runner_name}
    try:
        runner = make_runner(runner_name, shape, precision=precision)
    except report.Unavailable as why:
        return {**row, "unavailable": str(why)}
    with jax.numpy_dtype_promotion("standard"):
        timing = report.time_steps(runner.step, warmup=warmup, steps=steps)
    return {**row, "notes": runner.notes, **timing, **report.peak_memory_bytes(),
            "tokens_per_s": shape.tokens_per_step / timing["median_step_s"]}


def _measure_in_subprocess(args, shape_name: str, runner_name: str) -> dict:
    arguments = ["--one", shape_name, runner_name, "--precision", args.precision, "--warmup",
                 str(args.warmup), "--steps", str(args.steps)]
    return report.measure_row({"shape": shape_name, "runner": runner_name},
                              "benchmarks.throughput", arguments, timeout=args.timeout)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few steps: seconds")
    parser.add_argument("--shapes", nargs="+", default=None, help=f"subset of {list(SHAPES)}")
    parser.add_argument("--runners", nargs="+", default=None,
                        help="row names (default all): peers, and 'lstmjax <engine> [unroll=K] "
                        "[remat=K]' for any engine of lstmjax's registry or auto")
    parser.add_argument("--unroll", type=int, default=8,
                        help="unroll of the 'lstmjax scan unroll=K' row (default 8)")
    parser.add_argument("--precision", default="float32", choices=["float32", "tf32"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (the median is kept)")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every runner this many times per shape, in rotated order, "
                        "and keep each one's fastest round (a noisy machine only slows runs down)")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "RUNNER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one, precision=args.precision, warmup=args.warmup,
                                 steps=args.steps)))
        return {}
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.quick:
        args.warmup, args.steps, args.unroll = 1, 2, 2
    shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    runners = args.runners or runner_names(args.unroll)
    for name in runners:
        try:
            check_runner_name(name)
        except ValueError as error:
            parser.error(str(error))

    rows = []
    for shape_name in shapes:
        rounds = {name: [] for name in runners}
        for round_index in range(args.rounds):
            shift = round_index % len(runners)
            for runner_name in runners[shift:] + runners[:shift]:
                rounds[runner_name].append(_measure_in_subprocess(args, shape_name, runner_name))
                print(_describe(rounds[runner_name][-1]), flush=True)
        rows += [report.fastest_round(rounds[name]) for name in runners]
    fields = {"precision": args.precision, "warmup": args.warmup, "steps": args.steps,
              "rounds": args.rounds, "static_cap": STATIC_CAP,
              "shapes": {name: vars({**SHAPES, **QUICK_SHAPES}[name]) for name in shapes},
              "rows": rows}
    return report.save("throughput", fields, quick=args.quick, out=args.out, table=table)


def _describe(row: dict) -> str:
    head = f"{row['shape']:12s} {row['runner']:24s}"
    if "tokens_per_s" not in row:
        return f"{head} {row.get('unavailable') or 'failed: ' + row.get('failed', '?')}"
    return (f"{head} {row['tokens_per_s']:12,.0f} tokens/s  step {row['median_step_s'] * 1e3:8.2f} ms"
            f"  first call {row['first_call_s']:6.1f} s")


def table(record: dict) -> str:
    """Markdown: one row per (shape, runner): tokens/s, its ratio to lstmjax scan's and to torch's
    on the same shape, step ms, first call s, peak memory MiB."""
    bases = [_tokens_per_s(record, runner) for runner in RATIOS.values()]
    rows = []
    for row in record["rows"]:
        if "tokens_per_s" not in row:
            why = row.get("unavailable") or f"failed: {row.get('failed')}"
            rows.append([row["shape"], row["runner"], *[None] * (4 + len(bases)), why])
            continue
        memory, kind = report.peak_of(row)
        ratios = [row["tokens_per_s"] / base[row["shape"]] if row["shape"] in base else None
                  for base in bases]
        rows.append([row["shape"], row["runner"], round(row["tokens_per_s"]), *ratios,
                     row["median_step_s"] * 1e3, row["first_call_s"],
                     f"{memory / 2**20:.0f} ({kind})", row["notes"]])
    return report.markdown_table(
        ["shape", "runner", "tokens/s", *RATIOS, "step ms", "first call s", "peak MiB", "notes"],
        rows)


def _tokens_per_s(record: dict, runner: str) -> dict[str, float]:
    """``{shape: tokens/s}`` of ``runner``'s measured rows."""
    return {row["shape"]: row["tokens_per_s"] for row in record["rows"]
            if row["runner"] == runner and "tokens_per_s" in row}


if __name__ == "__main__":
    main()
