"""Named corpora for language modelling, as one compact id array per split.

``load_corpus(name)`` gets the corpus files from :mod:`lstmjax.data.sources` (a data dir, or the
download cache; each file checked against its sha256), tokenizes them and returns a
:class:`Corpus`: a vocabulary and the train/valid/test splits as read-only id arrays (uint8 when
the vocabulary has at most 256 tokens, else int32), views into one array.

The corpora (char level unless noted; "90/5/5" = train is the first 90% of the text, valid the
next 5%, test the rest, contiguous):

* ``default``: CPython's own help texts (``pydoc_data.topics.topics``, the text behind
  ``help("assert")``: ~80 topics of English prose about the language, ~0.47M characters and ~100
  distinct ones on CPython 3.11; the exact text follows the running Python version). Read at run
  time, no file and no download; the topics in sorted key order joined by blank lines; 90/5/5.
* ``text8``: the first 10^8 bytes of cleaned English Wikipedia (Mahoney), 27 symbols (a-z and
  space; id 0 is space, ids 1-26 are a-z as in the TF Udacity tutorial). ``split="standard"``:
  90M/5M/5M chars. ``split="tutorial"``: valid = the first 1,000 chars, train = the rest, no
  test (the Udacity tutorial's split). The data dir may hold the full ``text8`` (100,000,000 bytes)
  or only ``text8.head10M.txt`` (its first 10^7 chars); on the head file "standard" keeps the
  90/5/5 proportions (9M/0.5M/0.5M) and the corpus's ``note`` says so. The file is streamed in
  chunks through a 256-entry lookup table into a uint8 array, never held as text. Other
  characters are an error naming the character and its offset; ``unknown="map"`` maps each one
  to a space and counts them in ``note``.
* ``tinyshakespeare``: Karpathy's char-rnn ``input.txt`` (1,115,394 chars, 65 distinct); 90/5/5.
* ``anna``: Tolstoy's *Anna Karenina* from the Udacity tutorials (1,985,223 chars, 83 distinct),
  LF line endings: the upstream download has CRLF; its raw sha256 is checked, then ``\\r\\n``
  becomes ``\\n``. 90/5/5.
* ``ptb``: word level, Mikolov's Penn Treebank (``ptb.{train,valid,test}.txt``; 10,000 words with
  ``<eos>``). Each line is split on whitespace and a newline becomes ``<eos>``; ``<unk>`` is an
  ordinary word. Vocabulary from train, sorted by (-count, word) as TF's PTB reader.
* ``ptb-char``: the same text one character per token (``ptb.char.{train,valid,test}.txt``):
  symbols separated by spaces, ``_`` a word boundary, each line ends with ``<eos>`` (50 symbols).

Vocabularies come from the training split. Char corpora also keep the characters that occur only
in valid or test (so that every test character can be scored; anna's test split has 6 that its
training split lacks: ``$%&*/@``); ``note`` names them. Word corpora have no such addition: a
word outside the training vocabulary is an error, or with ``unknown="map"`` becomes ``<unk>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import sys
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from lstmjax._checks import require_choice
from lstmjax.data import sources
from lstmjax.data.vocab import EOS, Vocab, split_words

CorpusName = Literal["default", "text8", "tinyshakespeare", "anna", "ptb", "ptb-char"]
CORPORA: tuple[str, ...] = get_args(CorpusName)
SPLITS: tuple[str, ...] = ("standard", "tutorial")
UNKNOWN: tuple[str, ...] = ("error", "map")
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # id 0 = space, 1..26 = a..z
TUTORIAL_VALID_CHARS = 1000


_FILES: dict[str, tuple[tuple[str, ...], ...]] = {  # corpus -> per split, the files to try in order
    "text8": (("text8", "text8.head10M.txt"),),
    "tinyshakespeare": (("tinyshakespeare.txt",),),
    "anna": (("anna.txt",),),
    "ptb": tuple((f"ptb.{s}.txt",) for s in ("train", "valid", "test")),
    "ptb-char": tuple((f"ptb.char.{s}.txt",) for s in ("train", "valid", "test")),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus.

    Attributes:
      name: one of :data:`CORPORA`.
      vocab: the V-token vocabulary; ``vocab.level`` is "char" or "word".
      train, valid: read-only ``uint8[N]`` (V <= 256) or ``int32[N]`` id arrays.
      test: as train, or None where the split has none (text8 ``split="tutorial"``).
      note: where the text came from, how it was split, and anything unusual (head file,
        characters mapped or added).
    """

    name: str
    vocab: Vocab
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray | None
    note: str

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{k}={len(v):,}"
            for k, v in (("train", self.train), ("valid", self.valid), ("test", self.test))
            if v is not None
        )
        return f"Corpus({self.name!r}, {self.vocab!r}, {sizes})"


def load_corpus(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    split: str = "standard",
    unknown: str = "error",
    download: bool = True,
) -> Corpus:
    """Load the named corpus (see the module docstring for each one and its splits).

    Args:
      name: one of :data:`CORPORA`.
      data_dir: folder holding the corpus files; None: ``$LSTMJAX_DATA_DIR`` if set, else the
        cache. With a data dir, missing files are an error (nothing is downloaded).
      cache_dir: download cache; None: ``$LSTMJAX_CACHE_DIR``, else ``~/.cache/lstmjax``.
      split: ``"standard"`` (90/5/5, or PTB's own files) or ``"tutorial"`` (text8 only: valid =
        the first 1,000 chars, train = the rest, no test).
      unknown: ``"error"``: a character outside text8's alphabet, or a valid/test word outside
        PTB's training vocabulary, is a ValueError naming it and its offset; ``"map"``: it becomes
        a space (text8) or ``<unk>`` (ptb), counted in ``note``. Char corpora with an open
        alphabet have no unknowns.
      download: fetch missing files into the cache; False: a missing file is an error.

    Raises:
      FileNotFoundError: a file is missing (offline, download failed, or not in the data dir).
      ValueError: a bad argument, a checksum mismatch, or an unknown symbol.
    """
    require_choice("name", name, CORPORA)
    require_choice("split", split, SPLITS)
    require_choice("unknown", unknown, UNKNOWN)
    if split == "tutorial" and name != "text8":
        raise ValueError(
            f"split='tutorial' exists only for text8, got name={name!r}; use split='standard'"
        )
    if name == "default":
        return _char_corpus(name, _default_text(), "")
    paths = [
        sources.locate(name, files, data_dir=data_dir, cache_dir=cache_dir, download=download)
        for files in _FILES[name]
    ]
    if name == "text8":
        return _text8(paths[0], split, unknown)
    if name in ("tinyshakespeare", "anna"):
        return _char_corpus(name, sources.read_text(paths[0]), f"read from {paths[0]}; ")
    return _ptb(name, paths, unknown)


# ---- building corpora ------------------------------------------------------------------------


def _default_text() -> str:
    """CPython's help topics, sorted by key and joined with blank lines."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some distributions split pydoc_data off the standard library
        raise FileNotFoundError(
            "the default corpus reads CPython's pydoc_data.topics, which this Python lacks; "
            "install the full standard library or choose another corpus"
        ) from err
    return "\n\n".join(topics[k] for k in sorted(topics))


def _bounds(n: int) -> tuple[int, int]:
    """(end of train, end of valid) for a contiguous 90/5/5 split of n tokens."""
    return n * 90 // 100, n * 90 // 100 + n * 5 // 100


def _freeze(ids: np.ndarray, cuts: tuple[int, ...]) -> list[np.ndarray]:
    """Read-only views of ``ids`` between consecutive cuts (0 and len(ids) implied)."""
    ids.setflags(write=False)
    edges = (0, *cuts, len(ids))
    return [ids[a:b] for a, b in itertools.pairwise(edges)]


def _char_corpus(name: str, text: str, origin: str) -> Corpus:
    """A char corpus with an open alphabet, split 90/5/5."""
    a, b = _bounds(len(text))
    train_chars = set(text[:a])
    vocab = Vocab.build_chars(text)
    extra = "".join(t for t in vocab.tokens if t not in train_chars)
    train, valid, test = _freeze(vocab.encode(text).astype(vocab.dtype), (a, b))
    note = (
        f"{name}: {origin}{len(text):,} chars, {len(vocab)} distinct; contiguous 90/5/5 split: "
        f"train {a:,}, valid {b - a:,}, test {len(text) - b:,} chars"
    )
    if name == "default":
        note += f" (CPython {sys.version.split()[0]} pydoc_data.topics)"
    if extra:
        note += (
            f"; vocabulary = the training split's {len(train_chars)} chars plus "
            f"{len(extra)} seen only in valid/test: {extra!r}"
        )
    return Corpus(name, vocab, train, valid, test, note)


def _ptb(name: str, paths: list[Path], unknown: str) -> Corpus:
    """PTB words or chars, one file per split, vocabulary from train."""
    texts = [sources.read_text(p) for p in paths]  # train, valid, test
    note = f"{name}: read from {paths[0].parent}; "
    if name == "ptb":
        splits = [split_words(t) for t in texts]  # token lists
        vocab = Vocab.build_words(splits[0])
        replacement = "<unk>" if unknown == "map" else None
        note += "each line's words split on whitespace, then <eos>; vocabulary from train "
        note += "sorted by (-count, word); "
        if replacement:
            mapped = sum(t not in vocab.index for s in splits[1:] for t in s)
            note += f"{mapped} valid/test words outside it mapped to <unk>; "
    else:
        splits = [_ptb_symbols(t, p) for t, p in zip(texts, paths, strict=True)]
        train_symbols = set(splits[0])
        symbols = sorted(train_symbols.union(*splits[1:]))
        vocab = Vocab(tuple(sorted(EOS if c == "\n" else c for c in symbols)), "char")
        extra = [c for c in symbols if c not in train_symbols]
        replacement = None
        note += f"each line's symbols split on whitespace, then {EOS}; "
        note += f"vocabulary adds {extra} seen only in valid/test; " if extra else ""
    sizes = [len(s) for s in splits]
    encoded = []
    for tokens, path in zip(splits, paths, strict=True):
        try:
            encoded.append(vocab.encode(tokens, unknown=replacement))
        except ValueError as err:  # only ptb words can be missing from the vocabulary
            raise ValueError(
                f"{path}: {err}. load_corpus({name!r}, unknown='map') maps such words to <unk>"
            ) from err
    whole = np.concatenate(encoded)
    train, valid, test = _freeze(whole.astype(vocab.dtype), (sizes[0], sizes[0] + sizes[1]))
    note += f"{len(vocab)} tokens; train {sizes[0]:,}, valid {sizes[1]:,}, test {sizes[2]:,}"
    return Corpus(name, vocab, train, valid, test, note)


def _ptb_symbols(text: str, path: Path) -> str:
    """PTB char symbols as one str, a newline standing for each ``<eos>``.

    The same tokens as ``split_words(text)``, whose symbols are single characters, but kept as a
    str so that they encode in one vectorized pass.
    """
    lines = []
    for i, line in enumerate(text.split("\n")):
        symbols = line.split()
        joined = "".join(symbols)
        if len(joined) != len(symbols):
            bad = next(s for s in symbols if len(s) != 1)
            raise ValueError(f"{path}, line {i + 1}: symbol {bad!r} is not one character")
        lines.append(joined)
    return "\n".join(lines)


def _text8(path: Path, split: str, unknown: str) -> Corpus:
    """text8 (or its 10^7-char head) streamed into uint8 ids, split as ``split`` says."""
    vocab = Vocab(tuple(TEXT8_ALPHABET), "char")
    source = sources.SOURCES[path.name]
    replace_with = " " if unknown == "map" else None
    try:
        ids, digest, mapped = _encode_stream(path, vocab, replace_with=replace_with)
    except ValueError:  # a stray character in a file with a known checksum: report the checksum
        if source.sha256 is not None:
            sources.check_sha256(path, sources.sha256_file(path), source)
        raise
    sources.check_sha256(path, digest, source)
    head = source.filename != "text8"
    n = len(ids)
    note = f"text8: {path}, sha256 {digest}"
    note += " (the first 10^7 chars of text8 only); " if head else "; "
    if split == "tutorial":
        cuts: tuple[int, ...] = (TUTORIAL_VALID_CHARS,)
        note += f"tutorial split: valid = the first {TUTORIAL_VALID_CHARS:,} chars, "
        note += f"train = the rest ({n - TUTORIAL_VALID_CHARS:,}), no test"
    else:
        cuts = _bounds(n)
        note += "standard split"
        note += " on the head file, in the 90/5/5 proportions of 90M/5M/5M" if head else ""
        note += f": train {cuts[0]:,}, valid {cuts[1] - cuts[0]:,}, test {n - cuts[1]:,} chars"
    if unknown == "map":
        note += f"; {mapped:,} characters outside a-z and space mapped to ' '"
    parts = _freeze(ids, cuts)
    if split == "tutorial":
        return Corpus("text8", vocab, parts[1], parts[0], None, note)
    return Corpus("text8", vocab, *parts, note)


def _encode_stream(
    path: Path, vocab: Vocab, *, replace_with: str | None
) -> tuple[np.ndarray, str, int]:
    """Encode a file over a fixed single-byte alphabet, ``sources.CHUNK_BYTES`` at a time.

    Bytes go through a 256-entry lookup table straight into one preallocated ``uint8[N]`` array,
    N the file size; the text is never decoded as a whole. A byte outside the alphabet is an
    error naming the character and its offset, or, with ``replace_with``, becomes that symbol;
    then UTF-8 continuation bytes are dropped, so a multi-byte character becomes one symbol.

    Returns:
      (ids ``uint8[N']``, sha256 hex digest of the file, count of characters replaced).
    """
    absent = 255
    lut = np.full(256, absent, np.uint8)
    for i, t in enumerate(vocab.tokens):
        lut[ord(t)] = i
    size = path.stat().st_size
    out = np.empty(size, np.uint8)
    buf = bytearray(sources.CHUNK_BYTES)
    view = memoryview(buf)
    digest = hashlib.sha256()
    read = written = mapped = 0
    with open(path, "rb") as f:
        while n := f.readinto(view):
            digest.update(view[:n])
            raw = np.frombuffer(buf, np.uint8, count=n)
            ids = lut[raw]  # [n]; np.take(..., out=<a view of out>) would copy all of out
            bad = ids == absent
            if bad.any():
                if replace_with is None:
                    k = int(np.argmax(bad))  # every byte before it is an ASCII symbol
                    char = bytes(buf[k : k + 4]).decode("utf-8", errors="replace")[0]
                    raise ValueError(
                        f"{path}: character {char!r} (byte 0x{buf[k]:02x}) at offset {read + k:,} "
                        f"is outside the {len(vocab)}-symbol alphabet {''.join(vocab.tokens)!r}; "
                        "pass unknown='map' to map such characters to ' ' (space)"
                    )
                keep = (raw & 0xC0) != 0x80  # not a UTF-8 continuation byte
                mapped += int(np.count_nonzero(bad & keep))
                ids[bad] = vocab.index[replace_with]
                kept = ids[keep]
                n_out = len(kept)
                out[written : written + n_out] = kept
            else:
                n_out = n
                out[written : written + n] = ids
            read += n
            written += n_out
    if read != size:
        raise ValueError(f"{path} changed while it was read ({size:,} bytes, then {read:,})")
    return out[:written], digest.hexdigest(), mapped
