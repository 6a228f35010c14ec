"""Summaries and learning curves of the recipe runs, from each run directory's own files.

    python -m experiments.report               # reads experiments/runs/*, writes results.json and curves/

Per run (``experiments/runs/NAME``, written by ``experiments/run.sh``): ``config.json``,
``metrics.jsonl`` (train records every ``log_every`` steps and at each epoch's end, valid records
at each evaluation, one test record at the end) and ``wall.txt`` (one line per invocation). Prints a markdown table, writes
``experiments/results.json`` and one PNG per run: validation (and training) perplexity per epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

import benchmarks.report

EXPERIMENTS = pathlib.Path(__file__).resolve().parent


def train_spans(records: list[dict]) -> list[tuple[int, dict]]:
    """``(first_step, record)`` per train record, in step order: a record averages steps
    ``first_step + 1 .. record["step"]``."""
    train = sorted((r for r in records if r["split"] == "train"), key=lambda r: r["step"])
    return list(zip([0] + [r["step"] for r in train[:-1]], train))


def epoch_train_losses(records: list[dict]) -> dict[int, float]:
    """Mean training loss (nats per token) of each completed epoch, ``{epoch: loss}`` from 0.

    Weighting each record by its step count gives the mean over all the epoch's steps (Zaremba
    et al.'s "train perplexity"). Records end at every epoch boundary, so none straddles two.
    """
    sums: dict[int, list[float]] = {}
    for first, record in train_spans(records):
        epoch = math.ceil(record["epoch"]) - 1  # the epoch of the record's last step
        total = sums.setdefault(epoch, [0.0, 0])
        total[0] += record["loss"] * (record["step"] - first)
        total[1] += record["step"] - first
    finished = {round(r["epoch"]) - 1 for r in records
                if r["split"] == "train" and r["epoch"] == round(r["epoch"])}
    return {e: sums[e][0] / sums[e][1] for e in sorted(finished & set(sums))}


def last_steps_train_loss(records: list[dict], num_steps: int) -> float:
    """Mean training loss over (at least) the last ``num_steps`` steps, in whole records."""
    weighted, steps = 0.0, 0
    for first, record in reversed(train_spans(records)):
        if steps >= num_steps:
            break
        weighted += record["loss"] * (record["step"] - first)
        steps += record["step"] - first
    return weighted / steps


def summarize(run: pathlib.Path) -> dict:
    """One run's numbers: final and best validation, test, final training loss, speed, wall time."""
    config = json.loads((run / "config.json").read_text())
    lines = (run / "metrics.jsonl").read_text().splitlines()
    # a run killed after its last checkpoint logged steps that its resumption ran again: keep
    # the later record of each step
    records = sorted({(r["split"], r["step"]): r for r in map(json.loads, lines)}.values(),
                     key=lambda r: r["step"])
    valid = [r for r in records if r["split"] == "valid"]
    test = [r for r in records if r["split"] == "test"]
    train = [r for r in records if r["split"] == "train"]
    per_epoch = epoch_train_losses(records)
    last_epoch_complete = bool(per_epoch) and max(per_epoch) + 1 >= train[-1]["epoch"]
    final_train = (per_epoch[max(per_epoch)] if last_epoch_complete
                   else last_steps_train_loss(records, config["train"]["eval_every"]))
    wall = [line.split(" s on ", 1) for line in (run / "wall.txt").read_text().splitlines()]
    return {
        "run": run.name,
        "steps": train[-1]["step"],
        "epochs": round(train[-1]["epoch"], 2),
        "train_loss": final_train,
        "train_loss_over": "last epoch" if last_epoch_complete else
                           f"last {config['train']['eval_every']} steps",
        "valid_loss": valid[-1]["loss"],
        "best_valid_loss": min(r["loss"] for r in valid),
        "test_loss": test[-1]["loss"] if test else None,
        # the first record includes compilation (as does each resumed call's: the median
        # leaves those out in practice)
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train[1:] or train),
        "wall_s": sum(float(seconds) for seconds, _ in wall),
        "invocations": len(wall),
        "device": wall[-1][1],
        "valid_curve": [(r["epoch"], r["loss"]) for r in valid],
        "train_curve": sorted(per_epoch.items()),
    }


def plot(summary: dict, path: pathlib.Path) -> None:
    """Validation perplexity at each evaluation, and each epoch's mean training perplexity."""
    figure, axes = plt.subplots(figsize=(6, 4))
    epochs, losses = zip(*summary["valid_curve"], strict=True)
    axes.plot(epochs, [math.exp(x) for x in losses], marker="o", markersize=3, label="validation")
    if summary["train_curve"]:
        epochs, losses = zip(*summary["train_curve"], strict=True)
        axes.plot([e + 1 for e in epochs], [math.exp(x) for x in losses], marker="s", markersize=3,
                  label="training (epoch mean)")
    axes.set(xlabel="epoch", ylabel="perplexity per token", yscale="log", title=summary["run"])
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.yaxis.set_major_formatter(plain)
    axes.yaxis.set_minor_formatter(plain)
    axes.tick_params(axis="y", which="minor", labelsize=7)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def markdown_table(summaries: list[dict]) -> str:
    """One row per run: perplexities with 2 decimals, bits with 3, a dash where a split is absent."""

    def ppl(loss):
        return "-" if loss is None else f"{math.exp(loss):.2f}"

    def bits(loss):
        return "-" if loss is None else f"{loss / math.log(2):.3f}"

    headers = ["run", "steps (epochs)", "train ppl", "valid ppl (best)", "test ppl",
               "valid / test bits per token", "tokens/s", "wall", "device"]
    rows = [[s["run"], f"{s['steps']} ({s['epochs']})", ppl(s["train_loss"]),
             f"{ppl(s['valid_loss'])} ({ppl(s['best_valid_loss'])})", ppl(s["test_loss"]),
             f"{bits(s['valid_loss'])} / {bits(s['test_loss'])}", f"{s['tokens_per_s']:.0f}",
             f"{s['wall_s'] / 60:.0f} min ({s['invocations']} call{'s' * (s['invocations'] > 1)})",
             s["device"]] for s in summaries]
    return benchmarks.report.markdown_table(headers, rows)


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
    print(markdown_table(summaries))


if __name__ == "__main__":
    main()
