"""Vocabularies: token <-> id maps for character- and word-level language models.

A :class:`Vocab` is a tuple of tokens (id = position) and a level. It is built from the training
split, saved with a run as JSON, and read back unchanged, so ids mean the same thing at sampling
time as they did in training.

Text rules (the PTB reader's, ``tensorflow/models:tutorials/rnn/ptb/reader.py``):

* char level: one token per Unicode code point. A char vocabulary may also hold ``"<eos>"`` (the
  PTB character corpus marks line ends with it); if it does and has no ``"\\n"``, a newline in the
  text encodes as ``<eos>`` and ``<eos>`` decodes as a newline.
* word level: each line is split on whitespace and every newline becomes ``<eos>``. Unknown words
  are an error, unless ``encode(..., unknown=token)`` names a token to use instead (PTB's own
  ``<unk>`` is an ordinary word of its vocabulary). ``build_words(..., min_count=k, unk="<unk>")``
  keeps the words seen k times or more (and ``<eos>``) and lets ``<unk>`` stand for the rest.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import json
from collections.abc import Iterable, Sequence

import numpy as np

from lstmjax.data.options import LEVELS, Level

EOS = "<eos>"
UNK = "<unk>"


def split_words(text: str) -> list[str]:
    """PTB word tokens of ``text``: whitespace-separated words, each newline an ``<eos>``."""
    return text.replace("\n", f" {EOS} ").split()


@dataclasses.dataclass(frozen=True)
class Vocab:
    """An id -> token table.

    Attributes:
      tokens: the V tokens; token ``tokens[i]`` has id i. Char tokens are single characters (or
        ``"<eos>"``).
      level: ``"char"`` (decode joins tokens with "") or ``"word"`` (joins with " ", each
        ``<eos>`` becomes a newline).
    """

    tokens: tuple[str, ...] = dataclasses.field(repr=False)
    level: Level

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        tokens = tuple(self.tokens)
        object.__setattr__(self, "tokens", tokens)
        if not tokens:
            raise ValueError("tokens must not be empty: a vocabulary needs at least one token")
        if not all(isinstance(t, str) and t for t in tokens):
            bad = next(t for t in tokens if not (isinstance(t, str) and t))
            raise ValueError(f"every token must be a non-empty str, got {bad!r}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, n in collections.Counter(tokens).items() if n > 1)
            raise ValueError(f"tokens must be unique, {dup!r} occurs more than once")
        if self.level == "char":
            bad = [t for t in tokens if len(t) != 1 and t != EOS]
            if bad:
                raise ValueError(
                    f"a char vocabulary holds single characters (or {EOS!r}), got {bad[0]!r}; "
                    "use level='word' for multi-character tokens"
                )

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocab(level={self.level!r}, size={len(self)})"

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """token -> id."""
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def dtype(self) -> np.dtype:
        """The smallest integer dtype that holds every id: uint8 when V <= 256, else int32."""
        return np.dtype(np.uint8 if len(self) <= 256 else np.int32)

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def build_chars(cls, text: str) -> Vocab:
        """The sorted distinct characters of ``text`` (the rule of char-rnn and the Udacity
        tutorials)."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {type(text).__name__}")
        return cls(tuple(sorted(set(text))), "char")

    @classmethod
    def build_words(
        cls, tokens: Iterable[str], *, min_count: int = 1, unk: str | None = None
    ) -> Vocab:
        """The distinct tokens seen at least ``min_count`` times, sorted by (-count, token), as TF's
        PTB reader ``_build_vocab``.

        Args:
          tokens: the training tokens.
          min_count: rarer tokens are left out, except ``<eos>``; above 1 it needs ``unk``.
          unk: a token always in the vocabulary, standing for the tokens left out: its count, for
            the order, is its own plus theirs. None: no such token.
        """
        counts = collections.Counter(tokens)
        if not counts:
            raise ValueError("tokens must not be empty: cannot build a vocabulary from nothing")
        if unk is not None:
            rare = [t for t, n in counts.items() if n < min_count and t not in (unk, EOS)]
            counts[unk] += sum(counts.pop(t) for t in rare)
        elif min_count != 1:
            raise ValueError(f"min_count={min_count} leaves words out: name unk=<a token> for them")
        return cls(
            tuple(w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))), "word"
        )

    # ---- encoding ---------------------------------------------------------------------------

    def encode(
        self, text_or_tokens: str | Sequence[str], *, unknown: str | None = None
    ) -> np.ndarray:
        """Ids of a text or of a token sequence.

        Args:
          text_or_tokens: a str, split by the level's rule (see the module docstring), or a
            sequence of tokens taken as they are.
          unknown: a token of this vocabulary to use for tokens it lacks; None (default): a token
            it lacks is a ValueError naming it and its position.

        Returns:
          ``int32[N]`` ids, N the number of tokens.
        """
        if unknown is not None and unknown not in self.index:
            raise ValueError(f"unknown={unknown!r} is not a token of this vocabulary")
        if isinstance(text_or_tokens, str) and self.level == "char":
            return self._encode_chars(text_or_tokens, unknown)
        tokens = split_words(text_or_tokens) if isinstance(text_or_tokens, str) else text_or_tokens
        fallback = -1 if unknown is None else self.index[unknown]
        ids = np.fromiter(
            map(self.index.get, tokens, itertools.repeat(fallback)), np.int32, count=len(tokens)
        )
        if unknown is None and (ids < 0).any():
            pos = int(np.argmax(ids < 0))
            raise ValueError(
                f"token {tokens[pos]!r} at position {pos} is not in the vocabulary "
                f"({self.level} level, {len(self)} tokens); pass unknown=<a token> to map it"
            )
        return ids

    @functools.cached_property
    def _char_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted code points, their ids): the lookup behind char-level ``encode``."""
        pairs = {ord(t): i for i, t in enumerate(self.tokens) if len(t) == 1}
        if EOS in self.index and "\n" not in self.index:
            pairs[ord("\n")] = self.index[EOS]
        keys = np.array(sorted(pairs), np.uint32)
        return keys, np.array([pairs[k] for k in keys.tolist()], np.int32)

    def _encode_chars(self, text: str, unknown: str | None) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), np.uint32)  # [N] code points
        keys, values = self._char_table
        where = np.minimum(np.searchsorted(keys, points), len(keys) - 1)
        known = keys[where] == points
        ids = values[where]
        if not known.all():
            if unknown is None:
                pos = int(np.argmin(known))
                raise ValueError(
                    f"character {text[pos]!r} (U+{ord(text[pos]):04X}) at offset {pos} is not in "
                    f"the vocabulary ({len(self)} chars); pass unknown=<a token> to map it"
                )
            ids[~known] = self.index[unknown]
        return ids

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of ``ids`` (any int sequence or array; it is flattened).

        Char level: tokens joined with "" (``<eos>`` -> newline when the vocabulary has no
        newline). Word level: words joined with " ", each ``<eos>`` a newline.
        """
        flat = np.asarray(ids).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            bad = int(flat[(flat < 0) | (flat >= len(self))][0])
            raise ValueError(f"id {bad} is out of range for a vocabulary of {len(self)} tokens")
        tokens = [self.tokens[i] for i in flat.tolist()]
        if self.level == "char":
            newline = "\n" if "\n" not in self.index else EOS
            return "".join(newline if t == EOS else t for t in tokens)
        lines, line = [], []
        for t in tokens:
            if t == EOS:
                lines.append(" ".join(line))
                line = []
            else:
                line.append(t)
        return "\n".join([*lines, " ".join(line)])

    # ---- JSON -------------------------------------------------------------------------------

    def to_json(self) -> str:
        """``{"level": ..., "tokens": [...]}``, ASCII-only JSON (non-ASCII tokens escaped)."""
        return json.dumps({"level": self.level, "tokens": list(self.tokens)})

    @classmethod
    def from_json(cls, s: str) -> Vocab:
        """The vocabulary that :meth:`to_json` wrote."""
        data = json.loads(s)
        if not isinstance(data, dict) or set(data) != {"level", "tokens"}:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"vocab JSON must be an object with keys 'level' and 'tokens', got {got}"
            )
        return cls(tuple(data["tokens"]), data["level"])
