"""One recurrent layer, forward and backward: where the layer engines' time goes.

Times ``grad`` of a random projection of one layer's outputs (w.r.t. its parameters, inputs and
initial carry) for formulations that differ only in the loop's shape, all in one process on one
machine, ratios to ``scan``:

* ``scan``: engine "scan", the input matmul inside the loop, JAX's transpose of ``lax.scan``
  (the weight gradients accumulated in the backward loop);
* ``scan split-transpose``: the same with ``lax.scan(_split_transpose=True)``, JAX's internal
  switch that moves the accumulation of loop-invariant gradients out of the backward loop;
* ``hoisted autodiff``: the fused engine's forward (input matmul before the loop) differentiated
  by JAX, without its custom VJP;
* ``fused``: engine "fused" (custom VJP: weight gradients as one matmul each after the loop);
* ``native``: engine "native" (the fused algorithm with each direction's loop one C++ FFI call);
* ``cudnn``: engine "cudnn" (cuDNN's LSTM through ``jax.experimental.rnn``; NVIDIA GPUs);
* ``torch nn.LSTM``: the same layer in torch (oneDNN's fused RNN on CPU), when torch imports.

Each row has the forward pass alone (``fwd``: the layer's outputs, no gradient; torch under
``no_grad``) and forward + backward (``fwd+bwd``), medians of the timed calls, with the ratios
to ``scan`` and to torch of the same run.

    python -m benchmarks.layer                      # the recipe shapes, results/<backend>/layer.json
    python -m benchmarks.layer --quick              # seconds
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import report
from lstmjax.engines import ENGINES

SHAPES = {  # name: (B, T, I, H)
    "text8 layer": (64, 10, 128, 128),
    "ptb-medium layer": (20, 35, 650, 650),
    "anna-char layer": (100, 100, 512, 512),
    "ptb-small layer": (20, 20, 200, 200),
    "long-seq layer": (32, 1000, 256, 256),
}
QUICK_SHAPES = {"quick layer": (2, 5, 3, 4)}
VARIANTS = ("scan", "scan split-transpose", "hoisted autodiff", "fused", "native", "cudnn",
            "torch nn.LSTM")
ENGINE_VARIANTS = tuple(name for name in ENGINES if name != "static")
"""The engines timed through ``lstmjax.run_layer``: every registered one but "static", whose
program holds every step, so that its compile time grows with T."""


def layer_loss(variant: str, cell, params, carry, xs, weights):
    """The timed loss, ``sum(ys * weights)``, of one layer whose outputs ``ys: [T, B, P]`` come
    from ``variant`` (an engine of :data:`ENGINE_VARIANTS`, "hoisted autodiff" or "scan
    split-transpose")."""
    from lstmjax import engines
    from lstmjax.engines import fused

    if variant in ENGINE_VARIANTS:
        _, ys = engines.run_layer(cell, params, carry, xs, engine=variant)
    elif variant == "hoisted autodiff":
        split = cell.cast_weights(cell.layer_weights(params))
        (_, ys), _ = fused._forward(cell, False, 1, split, carry, xs, None, None, None)
    else:  # scan split-transpose
        split = cell.cast_weights(cell.layer_weights(params))
        _, ys = jax.lax.scan(lambda c, x: cell.step_with_weights(split, c, x), carry, xs,
                             _split_transpose=True)
    return jnp.sum(ys * weights)


def layer_inputs(cell, batch: int, steps: int, features: int, seed: int = 0):
    """``(params, carry, xs, weights)`` for one layer of ``cell``: random parameters, a random
    non-zero carry, ``xs: float32[T, B, I]`` and the loss's fixed random ``weights: [T, B, P]``."""
    rng = np.random.default_rng(seed)
    params = cell.init(jax.random.key(seed), features)
    carry = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32),
                         cell.zero_carry(batch))
    xs = jnp.asarray(rng.normal(size=(steps, batch, features)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(steps, batch, cell.output_size)), jnp.float32)
    return params, carry, xs, weights


def _jax_step(variant: str, shape: tuple[int, int, int, int], cell_name: str = "lstm",
              seed: int = 0):
    """``(forward, forward_backward)``: each runs one call and waits for its result."""
    from lstmjax import CELLS, resolve

    batch, steps, features, hidden = shape
    cell = CELLS[cell_name](hidden)
    if variant in ENGINE_VARIANTS:
        choice = resolve(cell, variant, num_steps=steps, batch_size=batch)
        if choice.engine != variant:
            raise report.Unavailable(choice.reason)
    params, carry, xs, weights = layer_inputs(cell, batch, steps, features, seed)
    loss = functools.partial(layer_loss, variant, cell)
    forward, grad = jax.jit(loss), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    return (lambda: jax.block_until_ready(forward(params, carry, xs, weights)),
            lambda: jax.block_until_ready(grad(params, carry, xs, weights)))


def _torch_step(shape: tuple[int, int, int, int], cell_name: str = "lstm", seed: int = 0):
    try:
        import torch
    except ImportError as error:
        raise report.Unavailable("torch is not installed") from error
    if cell_name != "lstm":
        raise report.Unavailable("the torch row is an LSTM")
    batch, steps, features, hidden = shape
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(features, hidden)
    xs = torch.randn(steps, batch, features, requires_grad=True)
    state = tuple(torch.randn(1, batch, hidden, requires_grad=True) for _ in range(2))
    weights = torch.randn(steps, batch, hidden)

    def forward():
        with torch.no_grad():
            lstm(xs, state)

    def forward_backward():
        lstm.zero_grad()
        ys, _ = lstm(xs, state)
        (ys * weights).sum().backward()

    return forward, forward_backward


def measure(shape_name: str, variant: str, *, warmup: int, steps: int,
            cell: str = "lstm") -> dict:
    jax.config.update("jax_default_matmul_precision", "highest")
    shape = {**SHAPES, **QUICK_SHAPES}[shape_name]
    row = {"shape": shape_name, "variant": variant, "cell": cell}
    try:
        forward, step = (_torch_step(shape, cell) if variant.startswith("torch")
                         else _jax_step(variant, shape, cell))
    except report.Unavailable as why:
        return {**row, "unavailable": str(why)}
    forward_times = report.time_steps(forward, warmup=warmup, steps=steps)
    return {**row, **report.time_steps(step, warmup=warmup, steps=steps),
            "forward": forward_times, "median_forward_s": forward_times["median_step_s"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny layer, two steps: seconds")
    parser.add_argument("--shapes", nargs="+", default=None, help=f"subset of {list(SHAPES)}")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--cell", default="lstm", help="a key of lstmjax.CELLS (default lstm)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15, help="timed steps (the median is kept)")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 2
    shapes = args.shapes or list(QUICK_SHAPES if args.quick else SHAPES)
    rows = []
    for shape_name in shapes:
        for variant in args.variants:
            rows.append(measure(shape_name, variant, warmup=args.warmup, steps=args.steps,
                                cell=args.cell))
            row = rows[-1]
            timing = row.get("unavailable") or (f"{row['median_forward_s'] * 1e3:9.2f} ms fwd "
                                                f"{row['median_step_s'] * 1e3:9.2f} ms fwd+bwd")
            print(f"{shape_name:18s} {variant:22s} {timing}", flush=True)
    fields = {"precision": "float32 (jax_default_matmul_precision=highest)",
              "shapes": {name: dict(zip("BTIH", {**SHAPES, **QUICK_SHAPES}[name]))
                         for name in shapes}, "rows": rows}
    return report.save("layer", fields, quick=args.quick, out=args.out, table=table)


def table(record: dict) -> str:
    """Markdown: median ms per (shape, variant), forward and forward + backward, and the speed-ups
    over ``scan`` and over torch in the same run (a ratio > 1 is faster than that row)."""

    def medians(variant):
        return {row["shape"]: (row["median_forward_s"], row["median_step_s"])
                for row in record["rows"] if row["variant"] == variant and "median_step_s" in row}

    scan, torch = medians("scan"), medians("torch nn.LSTM")
    rows = []
    for row in record["rows"]:
        if "median_step_s" not in row:
            rows.append([row["shape"], row["variant"], None, None, None, None, None, None,
                         row["unavailable"]])
            continue
        times = (row["median_forward_s"], row["median_step_s"])
        ratios = [peer[row["shape"]][k] / times[k] if row["shape"] in peer else None
                  for peer in (scan, torch) for k in (0, 1)]
        rows.append([row["shape"], row["variant"], times[0] * 1e3, times[1] * 1e3, *ratios, ""])
    return report.markdown_table(["shape", "variant", "fwd ms", "fwd+bwd ms", "fwd x scan",
                                  "fwd+bwd x scan", "fwd x torch", "fwd+bwd x torch", "note"],
                                 rows)


if __name__ == "__main__":
    main()
