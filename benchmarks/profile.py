"""Where a training step's time goes: a ``jax.profiler`` trace, summed per XLA op.

Runs lstmjax's benchmark train step (:func:`benchmarks.peers.lstmjax_train_step`) for a recipe
shape and engine, traces ``--steps`` steps after two warm-up steps, and prints the ops that took
the most time per step (summed over the threads that ran them), with how often each ran per step.
Op names are those of the compiled HLO (``--hlo PATH`` writes it, to look an op up).

    python -m benchmarks.profile long-seq fused            # top 25 ops
    python -m benchmarks.profile ptb-medium scan --top 40 --hlo /tmp/step.hlo

The trace is read with ``jax._src.lib._profile_data`` (the reader behind ``jax.profiler``'s
``ProfileData``); on a jax without it the script says so.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import tempfile

import jax

from benchmarks.peers import lstmjax_train_step, parse_lstmjax_label
from benchmarks.shapes import QUICK_SHAPES, SHAPES


def op_times(trace_dir: str, steps: int) -> list[tuple[str, float, float]]:
    """``[(op, ms per step, calls per step)]`` from the XSpace that ``trace_dir`` holds, longest
    first; host-side wrappers (``ThunkExecutor``, thread-pool waits, Python frames) excluded."""
    from jax._src.lib import _profile_data

    total, calls = collections.Counter(), collections.Counter()
    for path in pathlib.Path(trace_dir).rglob("*.xplane.pb"):
        for plane in _profile_data.ProfileData.from_file(str(path)).planes:
            for line in plane.lines:
                if line.name == "python":
                    continue
                for event in line.events:
                    if "ThunkExecutor" in event.name or "::" in event.name:
                        continue
                    total[event.name] += event.duration_ns
                    calls[event.name] += 1
    return [(name, ns / steps / 1e6, calls[name] / steps) for name, ns in total.most_common()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", choices=[*SHAPES, *QUICK_SHAPES])
    parser.add_argument("label", help="an lstmjax row label: 'fused', 'scan unroll=8', ...")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--hlo", default=None, help="write the compiled step's HLO text here")
    args = parser.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    shape = {**SHAPES, **QUICK_SHAPES}[args.shape]
    with jax.numpy_dtype_promotion("standard"):
        step, (state, carry, inputs, targets) = lstmjax_train_step(
            shape, **parse_lstmjax_label(args.label))
        if args.hlo:
            lowered = step.lower(state, carry, inputs, targets)
            pathlib.Path(args.hlo).write_text(lowered.compile().as_text())
        for _ in range(2):
            state, carry, metrics = step(state, carry, inputs, targets)
            jax.block_until_ready(metrics)
        with tempfile.TemporaryDirectory() as trace_dir:
            jax.profiler.start_trace(trace_dir)
            for _ in range(args.steps):
                state, carry, metrics = step(state, carry, inputs, targets)
                jax.block_until_ready(metrics)
            jax.profiler.stop_trace()
            rows = op_times(trace_dir, args.steps)
    print(f"{args.shape}, lstmjax {args.label}: ms per step summed over threads")
    print(f"{'ms/step':>9s} {'calls/step':>10s}  op")
    for name, ms, per_step in rows[: args.top]:
        print(f"{ms:9.2f} {per_step:10.0f}  {name}")


if __name__ == "__main__":
    main()
