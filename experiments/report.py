"""Summaries and learning curves of the recipe runs, from each run directory's own files.

    python -m experiments.report               # reads experiments/runs/*, writes results.json and curves/

Per run (``experiments/runs/NAME``, written by ``experiments/run.sh``): ``config.json`` and
``metrics.jsonl``, read by :mod:`lstmjax.results` (which also serves ``lstmjax report``), and
``wall.txt`` (one line per invocation: seconds, host, backend). Prints the
:func:`lstmjax.results.markdown_table` with wall time and device added, writes
``experiments/results.json`` and one PNG per run: validation perplexity at each evaluation and
each epoch's mean training perplexity, against the epoch.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from lstmjax import results
from lstmjax.metrics import duration

EXPERIMENTS = pathlib.Path(__file__).resolve().parent

COLUMNS = [
    *results.COLUMNS,
    ("wall", lambda s: f"{duration(s['wall_s'])} ({s['invocations']} "
                       f"call{'s' * (s['invocations'] > 1)})"),
    ("device", lambda s: s["device"]),
]


def summarize(run: pathlib.Path) -> dict:
    """:func:`lstmjax.results.summarize` named by the directory, plus the wall time and device
    of ``wall.txt`` and the per-epoch curves (``[epoch, loss]`` pairs; train: each finished
    epoch's mean, from 0)."""
    log = results.read_run(run)
    per_epoch = results.epoch_train_losses(log.records)
    wall = [line.split(" s on ", 1) for line in (run / "wall.txt").read_text().splitlines()]
    return {
        **results.summarize(log, name=run.name),
        "wall_s": sum(float(seconds) for seconds, _ in wall),
        "invocations": len(wall),
        "device": wall[-1][1],
        "valid_curve": [(r["epoch"], r["loss"]) for r in log.split("valid")],
        "train_curve": sorted(per_epoch.items()),
    }


def plot(summary: dict, path: pathlib.Path) -> None:
    """Validation perplexity at each evaluation, and each epoch's mean training perplexity at the
    epoch's end."""
    train = [(epoch + 1, loss) for epoch, loss in summary["train_curve"]]
    curves = results.Curves(summary["run"], train, summary["valid_curve"])
    results.plot_curves([curves], path, xlabel="epoch (train: mean over the epoch)",
                            title=summary["run"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=pathlib.Path, default=EXPERIMENTS / "runs")
    parser.add_argument("--out", type=pathlib.Path, default=EXPERIMENTS)
    args = parser.parse_args(argv)
    runs = sorted(p for p in args.runs.iterdir() if (p / "wall.txt").exists())
    summaries = [summarize(run) for run in runs]
    (args.out / "curves").mkdir(parents=True, exist_ok=True)
    for summary in summaries:
        plot(summary, args.out / "curves" / f"{summary['run']}.png")
    (args.out / "results.json").write_text(json.dumps(summaries, indent=2) + "\n")
    print(results.markdown_table(summaries, COLUMNS))
    print(f"\n{results.LEGEND}")


if __name__ == "__main__":
    main()
