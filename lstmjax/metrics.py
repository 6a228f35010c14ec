"""Loss to perplexity and bits, durations as text, and the run's metric log (one JSON object per
line, ``metrics.jsonl``): :class:`MetricsLog` writes it and :func:`read_records` is its one
reader (:mod:`lstmjax.results` and the tests read through it).

A record has ``split`` (one of :data:`SPLITS`), ``step``, ``epoch`` and ``loss`` (mean
cross-entropy in nats per token); a train record also ``step_time_s`` and ``tokens_per_s``.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

SPLITS = ("train", "valid", "test")
_REQUIRED = {"split": str, "step": int, "epoch": (int, float), "loss": (int, float)}
_REQUIRED_TRAIN = {"step_time_s": (int, float), "tokens_per_s": (int, float)}


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a mean cross-entropy in nats per token."""
    return math.exp(loss) if loss < 700 else math.inf


def bits_per_token(loss: float) -> float:
    """The loss in bits per token (bits per character for a character model)."""
    return loss / math.log(2.0)


def duration(seconds: float) -> str:
    """``"45 s"`` below two minutes, else whole minutes: ``"106 min"``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class MetricsLog:
    """Appends records to ``<workdir>/metrics.jsonl``; ``read`` returns them all. With ``path``
    None it writes nothing (the processes of a multi-process run other than process 0).

    Every line is standard JSON: a value that is not finite (a diverged loss, the perplexity of a
    loss above 700 nats) is written as ``null``, and the record's ``"nonfinite"`` list names those
    keys (read back as NaN).
    """

    def __init__(self, path: pathlib.Path | None):
        self.path = None if path is None else pathlib.Path(path)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        nonfinite = sorted(k for k, v in record.items()
                           if isinstance(v, float) and not math.isfinite(v))
        if nonfinite:
            record = {**{k: None for k in nonfinite}, **{k: v for k, v in record.items()
                                                         if k not in nonfinite},
                      "nonfinite": nonfinite}
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True, allow_nan=False) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """The records, as :func:`read_records` reads them; none when the file is absent."""
        if self.path is None or not self.path.exists():
            return []
        return read_records(self.path)[0]


def read_records(path: str | pathlib.Path) -> tuple[list[dict[str, Any]], list[str]]:
    """``(records, notes)`` of the metric log ``path``: the records in file order, a value
    logged as not finite (``null``, named in the record's ``"nonfinite"``) as NaN; the notes say
    what was skipped, one sentence each.

    A last line that is not JSON (a run stopped while writing it) is skipped with a note.

    Raises:
      ValueError: any other line is not JSON or not a metrics record (module docstring), naming
        the file and the line.
    """
    path = pathlib.Path(path)
    numbered = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1)
                if line.strip()]
    records, notes = [], []
    for number, line in numbered:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == numbered[-1][0]:
                notes.append(f"{path}: skipped line {number}, cut short ({error.msg}): "
                             "the run was stopped while writing it")
                continue
            raise ValueError(f"{path}, line {number}: not JSON ({error.msg}, column "
                             f"{error.colno}); delete or repair that line") from None
        problem = _record_problem(record)
        if problem:
            raise ValueError(f"{path}, line {number}: not a metrics record: {problem}")
        records.append({**record, **dict.fromkeys(record.get("nonfinite", ()), math.nan)})
    return records, notes


def _record_problem(record: Any) -> str | None:
    """What makes ``record`` not a metrics record, or None."""
    if not isinstance(record, dict):
        return f"{type(record).__name__}, not an object"
    if record.get("split") not in SPLITS:
        return f"split {record.get('split')!r} is none of {list(SPLITS)}"
    required = _REQUIRED | (_REQUIRED_TRAIN if record["split"] == "train" else {})
    nonfinite = record.get("nonfinite", ())  # written as null, e.g. a diverged loss
    bad = [k for k, kind in required.items()
           if not isinstance(record.get(k), kind) and not (k in nonfinite and record[k] is None)]
    return f"missing or mistyped {', '.join(bad)}" if bad else None
