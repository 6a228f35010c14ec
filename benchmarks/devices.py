"""Data-parallel training over N devices: tokens/s of lstmjax's train step against N.

The train step (forward, backward, clip, Adam; engine ``auto`` unless ``--engine``) of a
PTB-small-like language model, a 2 x 200 LSTM with V = 10,000 (E = H), on a global batch of
B = 64 streams of T = 20 tokens, runs on a one-axis mesh of N devices
(``lstmjax.TrainConfig(num_devices=N)`` through ``lstmjax.build``, see :mod:`lstmjax.parallel`):
the train state is replicated, the batch and the carried state are split into B / N streams a
device, and XLA's SPMD partitioner adds the all-reduce of the gradients. Each N is measured in a
fresh process: the first call (compile included) is timed apart, then the median of ``--steps``
steps after ``--warmup``, each ending with the devices synchronized. The table gives each N's
tokens/s as a ratio to the 1-device row of the same run (N = 1 is always measured, first), and
the first step's loss, which every N computes alike up to the order of float32 sums. Matmuls run
in full float32 by default (``--precision``).

On a CPU host the N devices are *simulated*: the measurement process starts with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, and its N devices share the host's cores.
The ratio then measures the overhead of splitting the batch (SPMD partitioning, N per-device
programs, the gradient all-reduce), not a speed-up: 1.0 would mean no overhead. On a GPU host the
devices are real, N runs 1, 2, 4, ... up to the device count, and the ratio is the speed-up at
the same global batch.

The shape: H = 200, L = 2, V = 10,000 and T = 20 are the PTB "small" recipe's, the smallest of
the recipe shapes whose step is more than dispatch overhead; B = 64 instead of its 20, so that B
splits over 1, 2, 4 and 8 devices with 8 streams left on each at N = 8. One step takes 0.9 s
(N = 1) to 2 s (N = 8) on a 2-core x86-64 VM (AMD EPYC, Zen 4), so the full CPU run (4 device counts, 2
rounds of 2 + 10 steps) takes about 4.5 minutes.

    python -m benchmarks.devices                 # N in 1 2 4 8 (CPU) or 1, 2, 4, ... (GPU)
    python -m benchmarks.devices --quick         # tiny model, seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os

from benchmarks import report
from benchmarks.shapes import QUICK_SHAPES, Shape

SHAPE = Shape("ptb-small B=64", vocab_size=10000, hidden_size=200, num_layers=2, batch_size=64,
              seq_len=20)
QUICK_SHAPE = dataclasses.replace(QUICK_SHAPES["quick-char"], name="quick-char B=8", batch_size=8)
CPU_DEVICE_COUNTS = (1, 2, 4, 8)
FORCE_DEVICES = "--xla_force_host_platform_device_count"


def measure(num_devices: int, shape: Shape, *, engine: str, precision: str, warmup: int,
            steps: int) -> dict:
    """lstmjax's train step on a mesh of ``num_devices`` devices, in this process (whose
    ``XLA_FLAGS`` already simulate them on a CPU host)."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    jax.config.update("jax_default_matmul_precision",
                      "highest" if precision == "float32" else "tensorfloat32")
    import lstmjax
    from benchmarks import peers
    from lstmjax.build import build_trainer

    options = peers.parse_lstmjax_label(engine)
    config = lstmjax.Config(
        model=peers.lstmjax_config(shape, **options),
        optim=lstmjax.OptimConfig(optimizer="adam", learning_rate=peers.LEARNING_RATE,
                                  max_grad_norm=peers.MAX_GRAD_NORM, adam_eps=peers.ADAM_EPSILON),
        train=lstmjax.TrainConfig(batch_size=shape.batch_size, seq_len=shape.seq_len,
                                  num_devices=num_devices))
    trainer = build_trainer(config, steps_per_epoch=1)
    inputs, targets = (trainer.placement.shard_batch(rows) for rows in peers.make_batch(shape, 0))
    state = {"train": trainer.state, "carry": trainer.carry, "losses": []}

    def step():
        # The step donates the state and the carry: keep the ones it returns.
        state["train"], state["carry"], metrics = trainer.train_step(
            state["train"], state["carry"], inputs, targets)
        jax.block_until_ready((state["train"], state["carry"], metrics))
        state["losses"].append(metrics["loss"])

    with jax.numpy_dtype_promotion("standard"):
        timing = report.time_steps(step, warmup=warmup, steps=steps)
    # the rows of the carry the step returned that one device holds: the split it ran with
    per_device = jax.tree.leaves(state["carry"])[0].addressable_shards[0].data.shape[0]
    return {"devices": num_devices, "placement": trainer.placement.describe(),
            "backend": jax.default_backend(), "visible_devices": jax.device_count(),
            "streams_per_device": per_device,
            "notes": peers.lstmjax_notes(shape, **options),
            "first_loss": float(state["losses"][0]), **timing,
            "tokens_per_s": shape.tokens_per_step / timing["median_step_s"]}


def xla_flags(num_devices: int) -> str:
    """This process's ``XLA_FLAGS`` with the host platform's device count set to ``num_devices``
    (it simulates CPU devices, and leaves a GPU's alone)."""
    kept = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
            if not flag.startswith(FORCE_DEVICES)]
    return " ".join([*kept, f"{FORCE_DEVICES}={num_devices}"])


def check_batch(batch_size: int, counts: list[int]) -> None:
    """Raise ValueError unless every device count divides ``batch_size``."""
    bad = [n for n in counts if batch_size % n]
    if bad:
        raise ValueError(
            f"--batch {batch_size} does not split over {' or '.join(map(str, bad))} devices: "
            f"each device needs the same number of streams. Use a multiple of "
            f"{math.lcm(*counts)} for --batch, or other --devices")


def default_device_counts(first: dict) -> list[int]:
    """1, 2, 4, 8 simulated CPU devices; on another backend, the powers of two up to the device
    count that the 1-device row (``first``) saw."""
    if "backend" not in first:
        why = first.get("failed") or first.get("unavailable")
        raise RuntimeError(f"the 1-device measurement did not run ({why}): nothing to compare to")
    if first["backend"] == "cpu":
        return list(CPU_DEVICE_COUNTS)
    return [2**k for k in range(first["visible_devices"].bit_length())]


def _measure_in_subprocess(args, num_devices: int) -> dict:
    arguments = ["--one", str(num_devices), "--batch", str(args.batch), "--seq-len",
                 str(args.seq_len), "--engine", args.engine, "--precision", args.precision,
                 "--warmup", str(args.warmup), "--steps", str(args.steps)]
    arguments += ["--quick"] if args.quick else []
    return report.measure_row({"devices": num_devices}, "benchmarks.devices", arguments,
                              timeout=args.timeout, env={"XLA_FLAGS": xla_flags(num_devices)})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps: seconds")
    parser.add_argument("--devices", type=int, nargs="+", default=None,
                        help="device counts to measure (1 is always measured, first; default: "
                        "1 2 4 8 simulated on a CPU host, else 1, 2, 4, ... up to the device "
                        "count)")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"global batch B, split over the devices: every device count must "
                        f"divide it (default {SHAPE.batch_size}; {QUICK_SHAPE.batch_size} with "
                        "--quick)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help=f"tokens per window T (default {SHAPE.seq_len})")
    parser.add_argument("--engine", default="auto",
                        help="lstmjax engine label, e.g. 'scan unroll=8' (default auto)")
    parser.add_argument("--precision", default="float32", choices=["float32", "tf32"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the median is kept)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="measure every device count this many times, in rotated order, and "
                        "keep each one's fastest round (a noisy machine only slows runs down)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one measurement may take")
    parser.add_argument("--out", default=None, help="JSON path (default results/<backend>/)")
    parser.add_argument("--one", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    base = QUICK_SHAPE if args.quick else SHAPE
    args.batch = args.batch or base.batch_size
    args.seq_len = args.seq_len or base.seq_len
    shape = dataclasses.replace(base, batch_size=args.batch, seq_len=args.seq_len)
    if args.one is not None:
        print(json.dumps(measure(args.one, shape, engine=args.engine, precision=args.precision,
                                 warmup=args.warmup, steps=args.steps)))
        return {}
    if args.quick:
        args.warmup, args.steps, args.rounds = 1, 2, 1
    from benchmarks.peers import parse_lstmjax_label

    try:
        parse_lstmjax_label(args.engine)
        if min(args.devices or [1]) < 1 or args.batch < 1 or args.seq_len < 1 or args.rounds < 1:
            raise ValueError("--devices, --batch, --seq-len and --rounds must be positive")
        if args.devices:
            check_batch(args.batch, args.devices)
    except ValueError as error:
        parser.error(str(error))

    rounds = {1: [_measure_in_subprocess(args, 1)]}  # also tells the backend and device count
    print(_describe(rounds[1][0]), flush=True)
    counts = sorted({1, *args.devices}) if args.devices else default_device_counts(rounds[1][0])
    try:
        check_batch(args.batch, counts)
    except ValueError as error:
        parser.error(str(error))
    for round_index in range(args.rounds):
        shift = round_index % len(counts)
        for count in counts[shift:] + counts[:shift]:
            if round_index or count != 1:
                rounds.setdefault(count, []).append(_measure_in_subprocess(args, count))
                print(_describe(rounds[count][-1]), flush=True)
    rows = [report.fastest_round(rounds[count]) for count in counts]
    if "tokens_per_s" in rows[0]:
        for row in filter(lambda row: "tokens_per_s" in row, rows):
            row["x_1_device"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]

    import jax

    simulated = jax.default_backend() == "cpu"
    fields = {"simulated_devices": simulated, "host_cpu_count": os.cpu_count(),
              "note": _note(simulated, os.cpu_count()), "precision": args.precision,
              "warmup": args.warmup, "steps": args.steps, "rounds": args.rounds,
              "engine": args.engine, "shape": vars(shape), "device_counts": counts, "rows": rows}
    return report.save("devices", fields, quick=args.quick, out=args.out, table=table)


def _note(simulated: bool, cores: int | None) -> str:
    """What the ratio to one device means on this host."""
    if simulated:
        return (f"The N devices are simulated ({FORCE_DEVICES}=N) and share this host's {cores} "
                "CPU cores: 'x 1 device' measures the overhead of splitting the batch (SPMD "
                "partitioning, N per-device programs, the gradient all-reduce), not a speed-up; "
                "1.0 would be no overhead.")
    return ("The N devices are real: 'x 1 device' is the speed-up over one device at the same "
            "global batch.")


def _describe(row: dict) -> str:
    head = f"{row['devices']:3d} device{'s' if row['devices'] > 1 else ' '}"
    if "tokens_per_s" not in row:
        return f"{head}  {row.get('unavailable') or 'failed: ' + row.get('failed', '?')}"
    return (f"{head}  {row['tokens_per_s']:10,.0f} tokens/s  step "
            f"{row['median_step_s'] * 1e3:8.2f} ms  first call {row['first_call_s']:6.1f} s  "
            f"first loss {row['first_loss']:.6f}  ({row['placement']}, "
            f"{row['streams_per_device']} streams/device)")


def table(record: dict) -> str:
    """Markdown: one row per device count (tokens/s, its ratio to 1 device, step ms, first call
    s, first loss, the mesh), then what was run and what the ratio means."""
    rows, notes = [], []
    for row in record["rows"]:
        if "tokens_per_s" not in row:
            why = row.get("unavailable") or f"failed: {row.get('failed')}"
            rows.append([row["devices"], *[None] * 6, why])
            continue
        notes.append(row["notes"])
        rows.append([row["devices"], row["streams_per_device"], round(row["tokens_per_s"]),
                     row.get("x_1_device"), row["median_step_s"] * 1e3, row["first_call_s"],
                     f"{row['first_loss']:.5f}", row["placement"]])
    shape = record["shape"]
    return "\n".join([
        report.markdown_table(["devices", "streams/device", "tokens/s", "x 1 device", "step ms",
                               "first call s", "first loss", "mesh / note"], rows),
        "",
        f"{shape['num_layers']} x {shape['hidden_size']} LSTM, V={shape['vocab_size']}, "
        f"B={shape['batch_size']}, T={shape['seq_len']} ({'; '.join(dict.fromkeys(notes))}), "
        f"{record['precision']}; median of {record['steps']} steps after {record['warmup']}, "
        f"best of {record['rounds']} round{'s' * (record['rounds'] > 1)}.",
        record["note"]])


if __name__ == "__main__":
    main()
