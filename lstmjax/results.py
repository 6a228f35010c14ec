"""Look at runs: a summary table and learning curves, from each run directory's own files.

    lstmjax report runs/a runs/b --plot curves.png --json summary.json

Reads only ``config.json`` and ``metrics.jsonl`` of directories written by
:func:`lstmjax.train.train` (no checkpoint, no corpus, no device). ``metrics.jsonl`` holds one
JSON record per line: ``split`` ``"train"`` every ``train.log_every`` steps and at each epoch's end
(``loss`` is the mean over the steps since the previous train record, with ``step_time_s`` and
``tokens_per_s``), ``"valid"`` every ``train.eval_every`` steps and at each epoch's end, and one
``"test"`` at the end. Losses are mean cross-entropies in nats per token; every record has
``step`` and ``epoch``. A resumed run logs again the steps it repeats after its last checkpoint:
the later record of a step counts.

The table needs only the base install; the curves need matplotlib (``pip install
"lstmjax[plot]"``). ``experiments/report.py`` builds the recipes' RESULTS.md table on this module.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import statistics
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from lstmjax.config import Config
from lstmjax.metrics import SPLITS, bits_per_token, duration, perplexity, read_records
from lstmjax.rundir import METRICS_FILE, RunDirectory


@dataclasses.dataclass(frozen=True)
class RunLog:
    """One run directory's config and metric records.

    Attributes:
      path: the run directory.
      config: its ``config.json``.
      records: its ``metrics.jsonl`` records in step order, the later record of each
        ``(split, step)`` only; a value logged as not finite (``null``, named in the record's
        ``"nonfinite"``) reads as NaN.
      notes: what reading skipped, one sentence each (a partial last line).
    """

    path: pathlib.Path
    config: Config
    records: list[dict[str, Any]]
    notes: list[str]

    def split(self, name: str) -> list[dict[str, Any]]:
        """The records of split ``name`` (``"train"``, ``"valid"`` or ``"test"``), in step order."""
        return [r for r in self.records if r["split"] == name]


def read_run(run: str | pathlib.Path) -> RunLog:
    """Read the run directory ``run``; a clear ``FileNotFoundError`` or ``ValueError`` otherwise.

    A last line that is not JSON (a run stopped while writing it) is skipped with a note; any other
    line that is not a metrics record is an error naming the file and the line.
    """
    run = pathlib.Path(run)
    directory = RunDirectory(run)
    metrics_path, config_path = directory.metrics_file, directory.config_file
    if not run.is_dir():
        problem = "is not a directory" if run.exists() else "does not exist"
        raise FileNotFoundError(f"{run} {problem}; give the --workdir of a lstmjax train run")
    if not metrics_path.exists() or not config_path.exists():
        missing = " and ".join(p.name for p in (config_path, metrics_path) if not p.exists())
        runs_below = sorted(str(p.parent) for p in run.glob(f"*/{METRICS_FILE}"))
        hint = (f"; it holds the runs {', '.join(runs_below)}" if runs_below
                else "; lstmjax train --workdir DIR writes both")
        raise FileNotFoundError(f"{run} is not a run directory: no {missing}{hint}")
    try:
        config = Config.from_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError, AttributeError) as error:  # JSONDecodeError: a ValueError
        raise ValueError(f"{config_path} is not a lstmjax config: {error}") from None

    logged, notes = read_records(metrics_path)
    if not logged and not notes:
        raise ValueError(f"{metrics_path} is empty: the run has not logged a step yet (it logs "
                         "every train.log_every steps)")
    if not logged:
        raise ValueError(f"{metrics_path} holds no complete record: {notes[0]}")
    by_key = {(record["split"], record["step"]): record for record in logged}  # the later counts
    records = sorted(by_key.values(), key=lambda r: r["step"])
    return RunLog(path=run, config=config, records=records, notes=notes)


def train_spans(records: Sequence[dict]) -> list[tuple[int, dict]]:
    """``(first_step, record)`` per train record, in step order: a record averages steps
    ``first_step + 1 .. record["step"]``."""
    train = sorted((r for r in records if r["split"] == "train"), key=lambda r: r["step"])
    return list(zip([0] + [r["step"] for r in train[:-1]], train))


def epoch_train_losses(records: Sequence[dict]) -> dict[int, float]:
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


def last_steps_train_loss(records: Sequence[dict], num_steps: int) -> float:
    """Mean training loss over (at least) the last ``num_steps`` steps, in whole records."""
    weighted, steps = 0.0, 0
    for first, record in reversed(train_spans(records)):
        if steps >= num_steps:
            break
        weighted += record["loss"] * (record["step"] - first)
        steps += record["step"] - first
    return weighted / steps


def summarize(log: RunLog, *, name: str | None = None) -> dict[str, Any]:
    """One run's numbers, JSON-ready; losses in nats per token, None where a split is absent.

    Keys: ``run`` (``name``, default the directory as given), ``corpus``, ``model`` (cell,
    L x H), ``optimizer``; ``steps`` and ``epochs`` of the last train record; ``train_loss``, the
    mean over the last epoch when it is complete, else over the last ``train.eval_every`` steps
    (``train_loss_over`` says which); ``valid_loss`` (last), ``best_valid_loss`` and
    ``best_valid_step``; ``test_loss``; ``tokens_per_s``, the median over the train records but
    the first (which includes compilation); ``train_time_s``, the seconds of the training steps
    summed from the records (``step_time_s`` times their steps: compilation included; evaluation,
    checkpoints and start-up not); ``notes``.
    """
    config = log.config
    train, valid, test = (log.split(s) for s in SPLITS)
    per_epoch = epoch_train_losses(log.records)
    if not train:
        train_loss, over = None, "no train record"
    elif per_epoch and max(per_epoch) + 1 >= train[-1]["epoch"]:
        train_loss, over = per_epoch[max(per_epoch)], "last epoch"
    else:
        train_loss = last_steps_train_loss(log.records, config.train.eval_every)
        over = f"last {config.train.eval_every} steps"
    best = min(valid, key=lambda r: (math.isnan(r["loss"]), r["loss"]), default=None)
    corpus = config.data.corpus + (f" ({config.data.split} split)"
                                   if config.data.split != "standard" else "")
    model = config.model
    last = train[-1] if train else log.records[-1]
    return {
        "run": str(log.path) if name is None else name,
        "corpus": corpus,
        "model": f"{model.cell} {model.num_layers} x {model.hidden_size}",
        "optimizer": f"{config.optim.optimizer} {config.optim.learning_rate:g}",
        "steps": last["step"],
        "epochs": round(last["epoch"], 2),
        "train_loss": train_loss,
        "train_loss_over": over,
        "valid_loss": valid[-1]["loss"] if valid else None,
        "best_valid_loss": best["loss"] if best else None,
        "best_valid_step": best["step"] if best else None,
        "test_loss": test[-1]["loss"] if test else None,
        "tokens_per_s": (statistics.median(r["tokens_per_s"] for r in train[1:] or train)
                         if train else None),
        "train_time_s": sum(r["step_time_s"] * (r["step"] - first)
                            for first, r in train_spans(log.records)),
        "notes": log.notes,
    }


def _ppl(loss: float | None) -> str:
    if loss is None:
        return "-"
    return "nan" if math.isnan(loss) else f"{perplexity(loss):.2f}"


def _bits(loss: float | None) -> str:
    return "-" if loss is None else f"{bits_per_token(loss):.3f}"


def _valid(s: dict) -> str:
    if s["valid_loss"] is None:
        return "-"
    return f"{_ppl(s['valid_loss'])} ({_ppl(s['best_valid_loss'])} @ {s['best_valid_step']})"


Column = tuple[str, Callable[[dict], str]]
COLUMNS: list[Column] = [
    ("run", lambda s: s["run"]),
    ("corpus", lambda s: s["corpus"]),
    ("model", lambda s: s["model"]),
    ("optimizer", lambda s: s["optimizer"]),
    ("steps (epochs)", lambda s: f"{s['steps']} ({s['epochs']})"),
    ("train ppl", lambda s: _ppl(s["train_loss"])),
    ("valid ppl (best @ step)", _valid),
    ("test ppl", lambda s: _ppl(s["test_loss"])),
    ("valid / test bits per token", lambda s: f"{_bits(s['valid_loss'])} / {_bits(s['test_loss'])}"),
    ("tokens/s", lambda s: "-" if s["tokens_per_s"] is None else f"{s['tokens_per_s']:.0f}"),
    ("train time", lambda s: duration(s["train_time_s"])),
]
"""The table's columns: header, and the cell's text from a :func:`summarize` dict."""

LEGEND = (
    "Perplexity per token. train ppl: the mean over the last epoch, or over the last "
    "train.eval_every steps when the last epoch is partial. best: the lowest validation at any "
    "evaluation, at that step. tokens/s: the median over the train records but the first. train "
    "time: step_time_s x steps summed over the train records, i.e. the training steps with their "
    "compilation, without evaluation, checkpoints and start-up."
)


def markdown_table(summaries: Sequence[dict], columns: Sequence[Column] = COLUMNS) -> str:
    """A Markdown table of :func:`summarize` dicts, one row per run."""
    lines = ["| " + " | ".join(header for header, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(s) for _, cell in columns) + " |" for s in summaries]
    return "\n".join(lines)


class Curves(NamedTuple):
    """One run's learning curves: ``(x, loss)`` points, x in steps or epochs, loss in nats."""

    label: str
    train: Sequence[tuple[float, float]]
    valid: Sequence[tuple[float, float]]


def step_curves(log: RunLog, label: str | None = None) -> Curves:
    """Every train record's and every validation's loss against its step."""
    return Curves(str(log.path) if label is None else label,
                  [(r["step"], r["loss"]) for r in log.split("train")],
                  [(r["step"], r["loss"]) for r in log.split("valid")])


def plot_curves(runs: Sequence[Curves], path: str | pathlib.Path, *, xlabel: str = "step",
                title: str | None = None) -> None:
    """Draw perplexity (log scale) against x, one colour per run: training as a line, validation
    as markers; save to ``path`` (the format from its suffix, e.g. ``.png``, ``.pdf``).

    Raises ModuleNotFoundError saying how to install matplotlib when it is missing.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as error:
        raise ModuleNotFoundError('plotting needs matplotlib, which is not installed: '
                                  'pip install "lstmjax[plot]"', name="matplotlib") from error
    figure = Figure(figsize=(7, 4.5))  # no pyplot: no global backend, no GUI
    axes = figure.subplots()
    def xy(points):  # a loss that is not finite leaves a gap
        x, losses = zip(*points)
        return x, [perplexity(v) if math.isfinite(v) else math.nan for v in losses]

    for colour, run in enumerate(runs):
        style = {"color": f"C{colour % 10}"}
        if run.train:
            axes.plot(*xy(run.train), label=f"{run.label} train", **style)
        if run.valid:
            axes.plot(*xy(run.valid), linestyle="none", marker="o", markersize=4,
                      label=f"{run.label} valid", **style)
    axes.set(xlabel=xlabel, ylabel="perplexity per token", yscale="log", title=title)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.yaxis.set_major_formatter(plain)
    low, high = axes.get_ylim()
    if high / low < 30:  # labels at 2, 3, ... x 10^k only where they do not crowd
        axes.yaxis.set_minor_formatter(plain)
        axes.tick_params(axis="y", which="minor", labelsize=7)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except (ValueError, OSError) as error:  # an unknown format, a missing folder
        raise type(error)(f"cannot write the plot {path}: {error}") from None


def report(runs: Sequence[str | pathlib.Path], *, plot: str | pathlib.Path | None = None,
           json_path: str | pathlib.Path | None = None) -> str:
    """``lstmjax report``: read every run (every error before any file is written), draw the step
    curves to ``plot`` and write the summaries to ``json_path`` when given; return the table, its
    legend, the notes and the files written, as text."""
    logs = [read_run(run) for run in runs]
    summaries = [summarize(log) for log in logs]
    text = [markdown_table(summaries), "", LEGEND]
    text += [f"note: {note}" for s in summaries for note in s["notes"]]
    if plot is not None:  # first: without matplotlib, nothing is written
        plot_curves([step_curves(log) for log in logs], plot)
        text.append(f"wrote {plot}")
    if json_path is not None:
        pathlib.Path(json_path).write_text(json.dumps(summaries, indent=2) + "\n")
        text.append(f"wrote {json_path}")
    return "\n".join(text)
