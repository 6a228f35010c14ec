"""PNG plots from the benchmarks' JSON: compile time against T (log-log, one line per engine in
the JSON), training tokens/s per shape and runner, and the long-T memory rows.

    python -m benchmarks.plot benchmarks/results/cpu     # reads *.json there, writes *.png beside
"""

from __future__ import annotations

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks import report
from benchmarks.compile_time import row_label


def plot_compile_time(record: dict, path: pathlib.Path) -> None:
    lines: dict[str, list[tuple[int, float]]] = {}
    for row in record["rows"]:
        if "skipped" not in row:
            total = row["trace_s"] + row["lower_s"] + row["compile_s"]
            lines.setdefault(row_label(row), []).append((row["seq_len"], total))
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for name, points in lines.items():
        xs, ys = zip(*sorted(points), strict=True)
        axes.plot(xs, ys, marker="o", label=name)
    axes.set(xscale="log", yscale="log", xlabel="T (time steps per window)",
             ylabel="trace + lower + compile (s)",
             title=f"Training-step build time, {_device(record)}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_throughput(record: dict, path: pathlib.Path) -> None:
    shapes = list(record["shapes"])
    runners = list(dict.fromkeys(row["runner"] for row in record["rows"]))
    values = {(row["shape"], row["runner"]): row.get("tokens_per_s") for row in record["rows"]}
    width = 0.8 / len(runners)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(shapes)), 4.5))
    for k, runner in enumerate(runners):
        heights = [values.get((shape, runner)) or 0 for shape in shapes]
        axes.bar([i + k * width for i in range(len(shapes))], heights, width, label=runner)
    axes.set_xticks([i + width * (len(runners) - 1) / 2 for i in range(len(shapes))], shapes)
    axes.set(yscale="log", ylabel="training tokens / s",
             title=f"Training throughput, {_device(record)} (missing bar: not run)")
    axes.grid(True, axis="y", which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_memory(record: dict, path: pathlib.Path) -> None:
    """Two bar charts of the memory rows: peak MiB and step seconds (a row that did not run has
    no bar)."""
    rows = [row for row in record["rows"] if "median_step_s" in row]
    names = [row["runner"] for row in rows]
    kind = report.peak_of(rows[0])[1] if rows else ""
    figure, (memory, step) = plt.subplots(1, 2, figsize=(9, 4))
    memory.bar(names, [report.peak_of(row)[0] / 2**20 for row in rows])
    memory.set(ylabel=f"peak MiB ({kind})")
    step.bar(names, [row["median_step_s"] for row in rows])
    step.set(ylabel="step s (median)")
    for axes in (memory, step):
        axes.tick_params(axis="x", labelrotation=20)
        axes.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"Training at T={record['shape']['seq_len']}, {_device(record)}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _device(record: dict) -> str:
    env = record["environment"]
    return f"{env['device_kind']} ({env['backend']})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=pathlib.Path, help="folder of benchmark JSON files")
    args = parser.parse_args(argv)
    plotters = {"compile_time": plot_compile_time, "throughput": plot_throughput,
                "memory": plot_memory}
    for path in sorted(args.folder.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("benchmark") not in plotters:
            print(f"skipped {path}: no plot for benchmark {record.get('benchmark')!r}")
            continue
        plotters[record["benchmark"]](record, path.with_suffix(".png"))
        print(f"wrote {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
