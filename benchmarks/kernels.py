"""The kernels under a recurrent layer, alone: matmuls in XLA against torch, and the LSTM gate math.

Two measurements behind ``benchmarks/NOTES.md``, each row in a fresh process (torch's and XLA's
thread pools never share one), median of ``--steps`` calls after a warm-up:

* ``matmul``: ``[M, K] @ [K, N]`` under ``jax.jit`` and in torch, at the shapes a recipe's layer
  runs: a per-step recurrent matmul, the input projection of a whole window, a weight gradient;
* ``gate math``: one LSTM's elementwise update (no matmul) in a ``lax.scan`` of T steps over
  ``[B, 4H]`` pre-activations, with ``jax.nn.sigmoid`` and with the tanh form that
  :func:`lstmjax.cells.sigmoid` uses.

    python -m benchmarks.kernels            # results/<backend>/kernels.json
    python -m benchmarks.kernels --quick    # seconds
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks import report

MATMULS = {  # name: (M, K, N)
    "ptb-medium step [20,650]x[650,2600]": (20, 650, 2600),
    "ptb-medium window [700,650]x[650,2600]": (700, 650, 2600),
    "long-seq window [32000,256]x[256,1024]": (32000, 256, 1024),
}
GATE_MATH = {"long-seq gates T=1000 [32,1024]": (1000, 32, 256)}  # name: (T, B, H)
QUICK_MATMULS = {"quick [4,8]x[8,16]": (4, 8, 16)}
QUICK_GATE_MATH = {"quick gates T=5 [2,16]": (5, 2, 4)}
SIGMOIDS = ("jax.nn.sigmoid", "tanh form")


def _median_ms(call, steps: int) -> float:
    """Median milliseconds of ``steps`` calls after one warm-up call."""
    return report.time_steps(call, warmup=0, steps=steps)["median_step_s"] * 1e3


def measure(kind: str, name: str, variant: str, steps: int) -> dict:
    """One row in this process: ``kind`` "matmul" (variant "jax" or "torch") or "gate math"
    (variant one of :data:`SIGMOIDS`)."""
    row = {"kind": kind, "name": name, "variant": variant}
    rng = np.random.default_rng(0)
    if kind == "matmul" and variant == "torch":
        try:
            import torch
        except ImportError:
            return {**row, "unavailable": "torch is not installed"}
        m, k, n = {**MATMULS, **QUICK_MATMULS}[name]
        a, b = torch.randn(m, k), torch.randn(k, n)
        ms = _median_ms(lambda: a @ b, steps)
        return {**row, "median_ms": ms, "gflop_per_s": 2 * m * k * n / ms / 1e6}

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    if kind == "matmul":
        m, k, n = {**MATMULS, **QUICK_MATMULS}[name]
        a = jnp.asarray(rng.normal(size=(m, k)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(k, n)), jnp.float32)
        product = jax.jit(lambda a, b: a @ b)
        ms = _median_ms(lambda: product(a, b).block_until_ready(), steps)
        return {**row, "median_ms": ms, "gflop_per_s": 2 * m * k * n / ms / 1e6}

    from lstmjax.cells import sigmoid as tanh_sigmoid

    sigmoid = jax.nn.sigmoid if variant == "jax.nn.sigmoid" else tanh_sigmoid
    steps_t, batch, hidden = {**GATE_MATH, **QUICK_GATE_MATH}[name]
    gates = jnp.asarray(rng.normal(size=(steps_t, batch, 4 * hidden)), jnp.float32)

    def body(c, g):
        i, j, f, o = jnp.split(g, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(j)
        return c, sigmoid(o) * jnp.tanh(c)

    loop = jax.jit(lambda g: jax.lax.scan(body, jnp.zeros((batch, hidden)), g))
    return {**row, "median_ms": _median_ms(lambda: jax.block_until_ready(loop(gates)), steps)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes: seconds")
    parser.add_argument("--steps", type=int, default=20, help="timed calls (the median is kept)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    parser.add_argument("--one", nargs=3, metavar=("KIND", "NAME", "VARIANT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(*args.one, steps=args.steps)))
        return {}
    if args.quick:
        args.steps = 2
    matmuls, gate_math = (QUICK_MATMULS, QUICK_GATE_MATH) if args.quick else (MATMULS, GATE_MATH)
    cases = [("matmul", name, variant) for name in matmuls for variant in ("jax", "torch")]
    cases += [("gate math", name, variant) for name in gate_math for variant in SIGMOIDS]
    rows = []
    for kind, name, variant in cases:
        row = {"kind": kind, "name": name, "variant": variant}
        rows.append(report.measure_row(row, "benchmarks.kernels",
                                       ["--one", kind, name, variant, "--steps", str(args.steps)],
                                       timeout=args.timeout))
        print(rows[-1], flush=True)

    fields = {"precision": "float32 (jax_default_matmul_precision=highest)", "steps": args.steps,
              "rows": rows}
    return report.save("kernels", fields, quick=args.quick, out=args.out, table=table)


def table(record: dict) -> str:
    """Markdown: median ms per (kind, shape, variant), and GFLOP/s for the matmuls."""
    rows = [[row["kind"], row["name"], row["variant"], row.get("median_ms"),
             row.get("gflop_per_s"), row.get("unavailable") or row.get("failed") or ""]
            for row in record["rows"]]
    return report.markdown_table(["kind", "shape", "variant", "median ms", "GFLOP/s", "note"], rows)


if __name__ == "__main__":
    main()
