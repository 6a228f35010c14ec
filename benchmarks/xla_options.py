"""XLA:CPU's per-jit compiler options on one LSTM layer: what each changes in a program, its time.

Each option set is passed to one ``jax.jit(..., compiler_options=...)`` (never through
``XLA_FLAGS``, which would set it for every program of the process). Per shape, every
(engine, mode, option set) is compiled once in this process; its optimized HLO is compared with
the default's (byte for byte, and the count of XNNPACK/YNN and oneDNN dot fusions), its outputs
with the default's, and then all of them are timed interleaved: each round calls every variant in
turn (the order rotated by one each round), so the VM's load drifts over all of them alike. The
row keeps every call's time; the table shows the minimum and the median, and their ratio to the
default option set of the same engine and mode.

Option sets (:data:`OPTION_SETS`): ``default``; ``oneDNN flag alone`` (``xla_cpu_use_onednn``
without a fusion type: the control, the same program as the default); ``Eigen dots`` (no YNN
fusion type, so XLA's own dot emitter runs the matmuls); ``oneDNN dot fusion``; ``fast math``.
The oneDNN dot fusion can kill the process (:data:`ISOLATED`), so each of its programs first runs
once in a fresh process; ``--quick`` leaves it out.

Modes: ``forward`` (``lstmjax.run_layer``) and ``forward+backward`` (``grad`` of a random
projection of the outputs w.r.t. parameters, initial carry and inputs, as ``benchmarks.layer``).
Engines: ``scan`` (input matmul inside the loop, per step) and ``fused`` (the input projection
hoisted out of the loop as one ``[T * B, I] @ [I, 4H]`` matmul; custom VJP). The forward rows of
the two engines are the hoisting question at small K (text8-char, ptb-small).

    python -m benchmarks.xla_options            # results/<backend>/xla_options.json
    python -m benchmarks.xla_options --quick    # seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import numpy as np

from benchmarks import layer, report

OPTION_SETS: dict[str, dict[str, bool | str]] = {
    "default": {},
    "oneDNN flag alone": {"xla_cpu_use_onednn": True},
    "Eigen dots": {"xla_cpu_experimental_ynn_fusion_type": ""},
    "oneDNN dot fusion": {"xla_cpu_use_onednn": True,
                          "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
    "fast math": {"xla_cpu_enable_fast_math": True},
    # Combinations, for a second run if two of the above each help.
    "Eigen dots + fast math": {"xla_cpu_experimental_ynn_fusion_type": "",
                               "xla_cpu_enable_fast_math": True},
    "oneDNN dot fusion + fast math": {
        "xla_cpu_use_onednn": True,
        "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT",
        "xla_cpu_enable_fast_math": True},
}
ISOLATED = frozenset({"oneDNN dot fusion", "oneDNN dot fusion + fast math"})
"""Option sets whose programs can kill the process: on jaxlib 0.10.2 a oneDNN fusion of a dot
with adds (the LSTM step's ``x @ W_x + h @ W_h + b``) prints "partition compile failed" and dies
of SIGILL when it runs. Each of their variants first runs once in a fresh process; one that
fails there is a row that says so, and is not run here."""
DEFAULT_OPTION_SETS = ("default", "oneDNN flag alone", "Eigen dots", "oneDNN dot fusion",
                       "fast math")
SHAPES = {  # name: (B, T, H); the layer's input features I = H
    "text8-char": (64, 10, 128),
    "ptb-small": (20, 20, 200),
    "ptb-medium": (20, 35, 650),
    "anna-char": (100, 100, 512),
    "long-seq": (32, 1000, 256),
}
QUICK_SHAPES = {"quick": (2, 5, 8)}
ENGINES = ("scan", "fused")
MODES = ("forward", "forward+backward")
FUSION_KINDS = ("__ynn_fusion", "__onednn_fusion")


def _inputs(shape: tuple[int, int, int], seed: int = 0):
    """An LSTM layer (I = H) and random params, non-zero carry, ``xs: [T, B, H]``, weights."""
    from lstmjax import LSTM

    batch, steps, hidden = shape
    cell = LSTM(hidden, forget_bias=0.0)
    return cell, layer.layer_inputs(cell, batch, steps, hidden, seed)


def _function(cell, engine: str, mode: str):
    """``f(params, carry, xs, weights)``: the layer's outputs, or their projection's gradients."""
    from lstmjax import engines

    if mode == "forward":
        return lambda params, carry, xs, weights: engines.run_layer(cell, params, carry, xs,
                                                                    engine=engine)
    return jax.grad(lambda *args: layer.layer_loss(engine, cell, *args), argnums=(0, 1, 2))


def hlo_summary(text: str) -> dict[str, int]:
    """Counts in an optimized HLO text: dots, and fusions of each library kind."""
    counts = {"dots": text.count(" dot(")}
    counts.update({kind.strip("_"): text.count(f'"kind":"{kind}"') for kind in FUSION_KINDS})
    return counts


def _max_difference(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def compile_variants(shape_name: str, shape, *, engines, modes, option_sets) -> list[dict]:
    """Compile every (engine, mode, option set) of one shape; rows with the HLO comparison, the
    output difference to the default, and ``_call`` (the compiled program on its arguments)."""
    cell, args = _inputs(shape)
    variants = []
    for engine in engines:
        for mode in modes:
            function = _function(cell, engine, mode)
            reference = None
            for name in option_sets:
                row = {"shape": shape_name, "engine": engine, "mode": mode, "options": name,
                       "compiler_options": OPTION_SETS[name]}
                if name in ISOLATED:
                    probe = report.measure_row(row, "benchmarks.xla_options",
                                               ["--one", shape_name, engine, mode, name],
                                               timeout=600)
                    if "failed" in probe or "unavailable" in probe:
                        variants.append(probe)
                        continue
                start = time.perf_counter()
                compiled = jax.jit(function, compiler_options=OPTION_SETS[name]).lower(
                    *args).compile()
                compile_s = time.perf_counter() - start
                text = compiled.as_text()
                outputs = jax.block_until_ready(compiled(*args))
                row.update(compile_s=compile_s, hlo=hlo_summary(text))
                if reference is None:  # the first option set is the baseline (default)
                    reference = (name, text, outputs)
                row["baseline"] = reference[0]
                row["hlo_identical_to_baseline"] = text == reference[1]
                row["max_abs_difference_to_baseline"] = _max_difference(outputs, reference[2])
                row["_call"] = lambda compiled=compiled: jax.block_until_ready(compiled(*args))
                variants.append(row)
    return variants


def time_interleaved(variants: list[dict], *, rounds: int, target_s: float) -> None:
    """Time every variant ``rounds`` times, interleaved (rotated start each round). A variant
    faster than ``target_s`` makes several calls in a row per round; all calls are kept. Rows
    without a program (a failed probe) are left as they are."""
    runnable = [row for row in variants if "_call" in row]
    for row in runnable:
        start = time.perf_counter()
        row["_call"]()
        row["reps"] = max(1, min(50, int(target_s / max(time.perf_counter() - start, 1e-6))))
        row["step_times_s"] = []
    for index in range(rounds):
        shift = index % max(len(runnable), 1)
        for row in runnable[shift:] + runnable[:shift]:
            for _ in range(row["reps"]):
                start = time.perf_counter()
                row["_call"]()
                row["step_times_s"].append(time.perf_counter() - start)
    for row in runnable:
        times = row["step_times_s"]
        row["min_s"], row["median_s"] = min(times), statistics.median(times)
        del row["_call"]


def _run_once(shape_name: str, engine: str, mode: str, options: str) -> dict:
    """Compile and run one variant once in this process (the ``--one`` probe of :data:`ISOLATED`
    option sets); a crash kills this process, not the benchmark's."""
    shape = {**SHAPES, **QUICK_SHAPES}[shape_name]
    cell, args = _inputs(shape)
    compiled = jax.jit(_function(cell, engine, mode),
                       compiler_options=OPTION_SETS[options]).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    return {"shape": shape_name, "engine": engine, "mode": mode, "options": options, "ran": True}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny layer, one round: seconds")
    parser.add_argument("--shapes", nargs="+", default=None, choices=[*SHAPES, *QUICK_SHAPES])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--options", nargs="+", default=None, choices=list(OPTION_SETS),
                        help="option sets; the first is the baseline of the ratios (default: "
                        f"{list(DEFAULT_OPTION_SETS)}, less the isolated ones with --quick)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds per shape")
    parser.add_argument("--target-s", type=float, default=0.05,
                        help="a faster variant makes several calls per round, about this long")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    parser.add_argument("--one", nargs=4, metavar=("SHAPE", "ENGINE", "MODE", "OPTIONS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    if args.one:
        print(json.dumps(_run_once(*args.one)))
        return {}
    if args.quick:  # no fresh process per isolated variant (seconds each)
        args.rounds, args.target_s = 1, 0.0
    if args.options is None:
        args.options = [name for name in DEFAULT_OPTION_SETS
                        if not (args.quick and name in ISOLATED)]
    shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    rows = []
    for shape_name in shapes:
        shape = {**SHAPES, **QUICK_SHAPES}[shape_name]
        variants = compile_variants(shape_name, shape, engines=args.engines, modes=args.modes,
                                    option_sets=args.options)
        time_interleaved(variants, rounds=args.rounds, target_s=args.target_s)
        rows += variants
        for row in variants:
            timing = (f"failed: {row['failed']}" if "failed" in row else
                      row.get("unavailable") or
                      f"min {row['min_s'] * 1e3:9.2f} ms  median {row['median_s'] * 1e3:9.2f} ms  "
                      f"HLO {'=' if row['hlo_identical_to_baseline'] else 'changed'}")
            print(f"{shape_name:11s} {row['engine']:6s} {row['mode']:17s} {row['options']:30s} "
                  f"{timing}", flush=True)
    arguments = sys.argv[1:] if argv is None else argv
    fields = {"command": " ".join(["python -m benchmarks.xla_options", *arguments]),
              "precision": "float32 (jax_default_matmul_precision=highest)",
              "option_sets": {name: OPTION_SETS[name] for name in args.options},
              "shapes": {name: dict(zip("BTH", {**SHAPES, **QUICK_SHAPES}[name]))
                         for name in shapes},
              "rounds": args.rounds, "rows": rows}
    return report.save("xla_options", fields, quick=args.quick, out=args.out, table=tables)


def _ratios(row: dict, reference: dict) -> tuple[float, float]:
    """Speed-up of ``row`` over ``reference`` (> 1: faster), on the minimum and on the median."""
    return reference["min_s"] / row["min_s"], reference["median_s"] / row["median_s"]


def tables(record: dict) -> str:
    """Markdown: :func:`table`, then :func:`engines_table`."""
    return table(record) + "\n\n" + engines_table(record)


def table(record: dict) -> str:
    """Markdown: per (shape, engine, mode, option set) whether the optimized HLO differs from the
    baseline's, its dot/fusion counts, min and median ms, and the speed-up over the baseline."""
    baseline = {(row["shape"], row["engine"], row["mode"]): row for row in record["rows"]
                if row["options"] == row.get("baseline")}
    lines = []
    for row in record["rows"]:
        if "min_s" not in row:
            why = row.get("failed") or row.get("unavailable")
            lines.append([row["shape"], row["engine"], row["mode"], row["options"], why,
                          None, None, None, None, None, None])
            continue
        reference = baseline[(row["shape"], row["engine"], row["mode"])]
        by_min, by_median = _ratios(row, reference)
        hlo = row["hlo"]
        program = ("baseline" if row is reference else
                   "same HLO" if row["hlo_identical_to_baseline"] else "changed")
        lines.append([row["shape"], row["engine"], row["mode"], row["options"], program,
                      f"{hlo['dots']}/{hlo['ynn_fusion']}/{hlo['onednn_fusion']}",
                      f"{row['max_abs_difference_to_baseline']:.1e}",
                      row["min_s"] * 1e3, row["median_s"] * 1e3, by_min, by_median])
    return report.markdown_table(
        ["shape", "engine", "mode", "options", "HLO", "dots/ynn/onednn", "max diff", "min ms",
         "median ms", "x base (min)", "x base (median)"], lines)


def engines_table(record: dict) -> str:
    """Markdown: ``fused`` (input projection hoisted) against ``scan`` (per step), per shape,
    mode and option set: speed-up of fused on the minimum and the median."""
    rows = {(row["shape"], row["engine"], row["mode"], row["options"]): row
            for row in record["rows"]}
    lines = []
    for (shape, engine, mode, options), row in rows.items():
        scan = rows.get((shape, "scan", mode, options))
        if engine != "fused" or scan is None or "min_s" not in row or "min_s" not in scan:
            continue
        by_min, by_median = _ratios(row, scan)
        lines.append([shape, mode, options, scan["median_s"] * 1e3, row["median_s"] * 1e3,
                      by_min, by_median])
    return report.markdown_table(["shape", "mode", "options", "scan median ms",
                                  "fused median ms", "fused x scan (min)",
                                  "fused x scan (median)"], lines)


if __name__ == "__main__":
    main()
