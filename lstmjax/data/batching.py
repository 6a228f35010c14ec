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

With random BPTT (Merity et al. 2017, sec. 4.1) the windows vary in length (:func:`bptt_length`,
a function of the seed and the step): each starts where the last ended, the epoch's last is cut to
the tokens left, and an epoch is a pass over all ``L - 1`` targets of each stream.

The position in the stream is a :class:`Position` (epoch, window, and for varying windows the
token offset), small and JSON-serializable: a checkpoint stores it, and iterating from it resumes
exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from lstmjax._checks import FieldError, require_int, require_positive_int


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a pass over the windows stands: the next window to read is ``window`` of ``epoch``,
    starting at token ``offset`` of each stream.

    All count from 0; ``window == 0`` marks the start of an epoch (reset the carry there).
    ``offset`` is None for windows of one length T (window i starts at ``i * T``); windows of
    varying length (random BPTT) record it.
    """

    epoch: int = 0
    window: int = 0
    offset: int | None = None

    def __post_init__(self):
        for name in ("epoch", "window", "offset"):
            if not (name == "offset" and self.offset is None):  # a numpy int is kept as an int
                object.__setattr__(self, name, require_int(f"Position.{name}", getattr(self, name)))

    def next(self, num_windows: int) -> Position:
        """The position after this window, in an epoch of ``num_windows`` windows."""
        require_positive_int("num_windows", num_windows)
        if self.window + 1 >= num_windows:
            return Position(self.epoch + 1, 0)
        return Position(self.epoch, self.window + 1)

    def to_dict(self) -> dict[str, int]:
        """``{"epoch": e, "window": w}`` (and ``"offset"`` when set), for JSON or a checkpoint."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Position:
        """The position that :meth:`to_dict` wrote."""
        if not isinstance(d, dict) or set(d) not in ({"epoch", "window"},
                                                     {"epoch", "window", "offset"}):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError("a Position dict has keys 'epoch' and 'window' (and 'offset' for "
                             f"windows of varying length), got {got}")
        offset = d.get("offset")
        return cls(int(d["epoch"]), int(d["window"]), None if offset is None else int(offset))


def num_windows(num_tokens: int, batch_size: int, seq_len: int) -> int:
    """Windows per epoch: ``(num_tokens // batch_size - 1) // seq_len`` (0 if too short)."""
    require_positive_int("batch_size", batch_size)
    require_positive_int("seq_len", seq_len)
    require_int("num_tokens", num_tokens)
    return max(0, (num_tokens // batch_size - 1) // seq_len)


def require_windows(num_tokens: int, batch_size: int, seq_len: int, *,
                    names: tuple[str, str] = ("batch_size", "seq_len")) -> int:
    """:func:`num_windows`, or a :class:`~lstmjax._checks.FieldError` naming the sizes when not
    one window fits; ``names`` are what the message calls them (``("train.batch_size",
    "train.seq_len")`` for a config), the first its ``field``."""
    n = num_windows(num_tokens, batch_size, seq_len)
    if n == 0:
        b, t = names
        raise FieldError(
            b,
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
    require_int("start", start, maximum=n, meaning="num_windows")
    for i in range(start, n):
        lo = i * seq_len
        yield (
            data[:, lo : lo + seq_len].astype(np.int32),
            data[:, lo + 1 : lo + seq_len + 1].astype(np.int32),
        )


class Window(NamedTuple):
    """One window of :func:`stream`.

    Attributes:
      position: where it starts (``window == 0``: a new epoch, reset the carry).
      next: where the window after it starts: save it to resume after this one.
      inputs: ``int32[B, T_w]``, T_w the window's length.
      targets: ``int32[B, T_w]``, the inputs shifted by one token.
    """

    position: Position
    next: Position
    inputs: np.ndarray
    targets: np.ndarray


def stream(
    ids: np.ndarray,
    batch_size: int,
    seq_len: int,
    position: Position = Position(),
    num_epochs: int | None = None,
    *,
    lengths: Iterator[int] | None = None,
) -> Iterator[Window]:
    """Windows across epochs, from ``position`` on, as :class:`Window` s. Stops before epoch
    ``num_epochs`` (None: never).

    ``lengths`` None: every window ``seq_len`` tokens, ``num_windows(...)`` per epoch (the tail
    that fills no window is dropped, as TF's reader). Else each window takes its length from
    ``lengths`` (one item per window; random BPTT, :func:`bptt_length`), cut to the targets left
    in the epoch, and an epoch ends when every target of the streams has been read; its
    positions record the token offset.
    """
    data, n = _streams(ids, batch_size, seq_len)
    if lengths is None:
        if position.window >= n or position.offset is not None:
            raise ValueError(f"position must have window < num_windows = {n} and no offset "
                             f"(windows of one length), got {position}")
        while num_epochs is None or position.epoch < num_epochs:
            for inputs, targets in windows(data.reshape(-1), batch_size, seq_len,
                                           position.window):
                yield Window(position, position.next(n), inputs, targets)
                position = position.next(n)
        return
    last = data.shape[1] - 1  # targets per stream
    offset = position.offset if position.offset is not None else 0
    if (position.window == 0) != (offset == 0) or offset >= last:
        raise ValueError(f"position {position} is not the start of a window of varying length "
                         f"(offset 0 exactly at window 0, below {last}, the targets per stream)")
    position = Position(position.epoch, position.window, offset)
    while num_epochs is None or position.epoch < num_epochs:
        lo = position.offset
        hi = min(lo + next(lengths), last)
        after = (Position(position.epoch + 1, 0, 0) if hi == last
                 else Position(position.epoch, position.window + 1, hi))
        yield Window(position, after, data[:, lo:hi].astype(np.int32),
                     data[:, lo + 1:hi + 1].astype(np.int32))
        position = after


BPTT_MIN_LENGTH = 5
"""The shortest window random BPTT draws (the reference's ``max(5, ...)``)."""
BPTT_STDDEV = 5.0
"""The standard deviation of random BPTT's normal draw, in tokens (the reference's)."""
BPTT_FULL_PROBABILITY = 0.95
"""Random BPTT's probability of a mean of ``seq_len`` (else ``seq_len / 2``)."""


def bptt_length(seed: int, step: int, seq_len: int) -> int:
    """Random BPTT's window length for optimizer step ``step`` of the run seeded ``seed``
    (Merity, Keskar & Socher 2017, sec. 4.1; salesforce/awd-lstm-lm's main.py)::

        mean = seq_len if u < 0.95 else seq_len / 2        # u uniform in [0, 1)
        length = max(5, floor(normal(mean, 5)))

    A pure function of its arguments (numpy's PCG64 seeded with ``(seed, step)``): a resumed run
    draws what an uninterrupted one does.
    """
    rng = np.random.default_rng([_BPTT_STREAM, seed & (2**64 - 1), step])  # seed may be < 0
    full = rng.random() < BPTT_FULL_PROBABILITY
    mean = seq_len if full else seq_len / 2
    return max(BPTT_MIN_LENGTH, int(np.floor(rng.normal(mean, BPTT_STDDEV))))


_BPTT_STREAM = 0x42505454  # "BPTT": keeps these draws apart from other uses of (seed, step)
