"""Truncated-BPTT windows over one token stream, as TF's PTB reader (``reader.ptb_producer``).

The corpus ``ids[N]`` is cut into B parallel streams, each a contiguous slice of it, and each
stream is read T tokens at a time::

    L = N // B                                   # tokens per stream (the tail N - B*L is dropped)
    data = ids[: B * L].reshape(B, L)            # [B, L]; row b is ids[b*L : (b+1)*L]
    num_windows = (L - 1) // T                   # windows per epoch
    inputs_i  = data[:, i*T     : (i+1)*T]       # [B, T]
    targets_i = data[:, i*T + 1 : (i+1)*T + 1]   # [B, T], inputs shifted by one token

Window i+1 continues each stream where window i ended, so a model carries its recurrent state
from one window to the next (detached from the gradient) and resets it at each epoch.

The position in the stream is a :class:`Position` (epoch, window), small and JSON-serializable: a
checkpoint stores it, and iterating from it resumes exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from lstmjax._checks import require_positive_int


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a pass over the windows stands: the next window to read is ``window`` of ``epoch``.

    Both count from 0; ``window == 0`` marks the start of an epoch (reset the carry there).
    """

    epoch: int = 0
    window: int = 0

    def __post_init__(self):
        for name in ("epoch", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Position.{name} must be an int >= 0, got {value!r}")

    def next(self, num_windows: int) -> Position:
        """The position after this window, in an epoch of ``num_windows`` windows."""
        require_positive_int("num_windows", num_windows)
        if self.window + 1 >= num_windows:
            return Position(self.epoch + 1, 0)
        return Position(self.epoch, self.window + 1)

    def to_dict(self) -> dict[str, int]:
        """``{"epoch": e, "window": w}``, for JSON or a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Position:
        """The position that :meth:`to_dict` wrote."""
        if not isinstance(d, dict) or set(d) != {"epoch", "window"}:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"a Position dict has keys 'epoch' and 'window', got {got}")
        return cls(int(d["epoch"]), int(d["window"]))


def num_windows(num_tokens: int, batch_size: int, seq_len: int) -> int:
    """Windows per epoch: ``(num_tokens // batch_size - 1) // seq_len`` (0 if too short)."""
    require_positive_int("batch_size", batch_size)
    require_positive_int("seq_len", seq_len)
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 0:
        raise ValueError(f"num_tokens must be an int >= 0, got {num_tokens!r}")
    return max(0, (num_tokens // batch_size - 1) // seq_len)


def require_windows(num_tokens: int, batch_size: int, seq_len: int, *,
                    names: tuple[str, str] = ("batch_size", "seq_len")) -> int:
    """:func:`num_windows`, or a ValueError naming the sizes when not one window fits; ``names``
    are what the message calls them (``("train.batch_size", "train.seq_len")`` for a config)."""
    n = num_windows(num_tokens, batch_size, seq_len)
    if n == 0:
        b, t = names
        raise ValueError(
            f"window longer than the corpus: {b}={batch_size} streams of {t}={seq_len} "
            f"(+1 target) need at least {b} * ({t} + 1) = {batch_size * (seq_len + 1)} "
            f"tokens, the corpus has {num_tokens}; use a smaller {b} or {t}"
        )
    return n


def _streams(ids: np.ndarray, batch_size: int, seq_len: int) -> tuple[np.ndarray, int]:
    """``(data[B, L], num_windows)``, data a view of ``ids``; errors for unusable arguments."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array, got {ids.dtype}{list(ids.shape)}")
    n = require_windows(len(ids), batch_size, seq_len)
    length = len(ids) // batch_size
    return ids[: batch_size * length].reshape(batch_size, length), n  # [B, L]


def windows(
    ids: np.ndarray, batch_size: int, seq_len: int, start: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of ``(inputs, targets)`` windows, from window ``start`` to the last.

    Args:
      ids: ``int[N]`` token ids (any integer dtype, e.g. a corpus's uint8 split).
      batch_size: B, parallel streams.
      seq_len: T, tokens per window.
      start: first window to yield, ``0 <= start <= num_windows`` (``num_windows``: nothing left).

    Yields:
      ``(inputs, targets)``, each ``int32[B, T]``, targets the inputs shifted by one token.

    Raises:
      ValueError: if the corpus is shorter than one window, or ``start`` is out of range.
    """
    data, n = _streams(ids, batch_size, seq_len)
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= n:
        raise ValueError(f"start must be an int in [0, {n}] (num_windows), got {start!r}")
    for i in range(start, n):
        lo = i * seq_len
        yield (
            data[:, lo : lo + seq_len].astype(np.int32),
            data[:, lo + 1 : lo + seq_len + 1].astype(np.int32),
        )


def stream(
    ids: np.ndarray,
    batch_size: int,
    seq_len: int,
    position: Position = Position(),
    num_epochs: int | None = None,
) -> Iterator[tuple[Position, np.ndarray, np.ndarray]]:
    """Windows across epochs, from ``position`` on: ``(position, inputs, targets)``.

    ``position`` is that of the window yielded (``window == 0``: a new epoch, reset the carry);
    to resume after it, save ``position.next(num_windows(...))``. Stops before epoch
    ``num_epochs`` (None: never).
    """
    data, n = _streams(ids, batch_size, seq_len)
    if position.window >= n:
        raise ValueError(f"position.window must be < num_windows = {n}, got {position.window}")
    while num_epochs is None or position.epoch < num_epochs:
        for inputs, targets in windows(data.reshape(-1), batch_size, seq_len, position.window):
            yield position, inputs, targets
            position = position.next(n)
