"""Loss to perplexity and bits, and the run's metric log (one JSON object per line)."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a mean cross-entropy in nats per token."""
    return math.exp(loss) if loss < 700 else math.inf


def bits_per_token(loss: float) -> float:
    """The loss in bits per token (bits per character for a character model)."""
    return loss / math.log(2.0)


class MetricsLog:
    """Appends records to ``<workdir>/metrics.jsonl``; ``read`` returns them all. With ``path``
    None it writes nothing (the processes of a multi-process run other than process 0).

    Every line is standard JSON: a value that is not finite (a diverged loss, the perplexity of a
    loss above 700 nats) is written as ``null``, and the record's ``"nonfinite"`` list names those
    keys (``read`` returns them as written, with the nulls).
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
        if self.path is None or not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
