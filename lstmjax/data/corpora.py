"""Corpora for language modelling, as one compact id array per split: the named ones and your own.

``load_corpus(data)`` tokenizes a corpus and returns a :class:`Corpus`: a vocabulary and the
train/valid/test splits as read-only id arrays (uint8 when the vocabulary has at most 256 tokens,
else int32), views into one array. ``data`` is a :class:`~lstmjax.data.options.DataConfig`, or
its fields as arguments: ``load_corpus("ptb", data_dir=...)``, and
``load_corpus(**dataclasses.asdict(config.data))`` loads a run's corpus; every error names the
field at fault as ``data.<field>``.

The named corpora are the entries of the registry :data:`lstmjax.data.catalog.CORPORA`, which
names each one's files and its reader (:data:`READERS`). Their files come from
:mod:`lstmjax.data.sources` (``data.data_dir``, or the download cache; each file checked against
its sha256, or its size where none is known). "90/5/5" = train is the first 90% of the tokens,
valid the next 5%, test the rest, contiguous.

The text8 reader streams the file in chunks through a 256-entry lookup table into a uint8 array,
never holding it as text. A character outside the alphabet is reported before the checksum: the
error names the character, its offset, how many there are and whether the file also differs from
the published one, and the fix, ``data.unknown="map"``, which maps each one to a space, counts
them in ``note`` and then accepts a file that differs from the published one only by such
characters (``note`` records its size and sha256 beside the published ones). A file with only
alphabet characters must match the published size and sha256. On the head file
(``text8.head10M.txt``, the first 10^7 characters) ``"standard"`` keeps the 90/5/5 proportions
(9M/0.5M/0.5M) and the corpus's ``note`` says so.

Vocabularies come from the training split. Char corpora also keep the characters that occur only
in valid or test (so that every test character can be scored; anna's test split has 6 that its
training split lacks: ``$%&*/@``); ``note`` names them. Word corpora have no such addition: a
word outside the training vocabulary is an error, or with ``data.unknown="map"`` becomes
``<unk>``.

Your own text, ``corpus="text"`` (``--data.corpus text --data.path my.txt``):

* ``data.path``: a UTF-8 text file, or a folder: then every ``*.txt`` file in it and in its
  subfolders (paths with a part starting with "." skipped, as ``.ipynb_checkpoints``), read in
  the order of their paths relative to the folder, compared as strings (``a.txt``, ``b.txt``,
  ``b/c.txt``, ``c.txt``), each starting on a new line (a newline is put between two files
  where the first lacks a final one). A leading UTF-8 byte-order mark is dropped; newlines are
  kept as in the file (a CRLF file gives ``"\\r"`` tokens at char level: convert it with
  ``dos2unix`` if unwanted). A relative path is resolved against the current directory at each
  load: a run's ``config.json`` stores ``data.path`` as given, so resume or evaluate a run from
  the directory it was started in, or give an absolute path. ``note`` records the absolute
  path, the files and the sha256 of the text read.
* ``data.level="char"``: one token per character; the vocabulary is every character of the
  text, as the named char corpora. ``data.level="word"``: as PTB, each line is split on
  whitespace and each newline becomes ``<eos>``; the vocabulary is the training split's words
  seen at least ``data.min_count`` times plus ``<unk>`` (always present), sorted by (-count,
  word) with ``<unk>`` counting the words it stands for: rarer words and words seen only in
  valid or test become ``<unk>`` (a word first seen at test time has no trained embedding to
  score it with), and ``note`` counts them.
* Split: contiguous 90/5/5 of the tokens of the whole text, as the named char corpora, for a
  file and a folder alike: the sizes follow from the token count alone and a folder of a few
  files still gets all three splits (splitting by whole files could not); order a folder's
  files so that the held-out text comes last. Each split needs 2 tokens or more (an input and
  its target), so the text needs at least 40; training also needs ``train.batch_size *
  (train.seq_len + 1)`` tokens in its 90%.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lstmjax._checks import FieldError
from lstmjax.data import sources
from lstmjax.data.catalog import CORPORA, Level, NamedCorpus, Reader
from lstmjax.data.options import TEXT, TEXT_GLOB, DataConfig, setting
from lstmjax.data.sources import CorpusFile
from lstmjax.data.vocab import EOS, UNK, Vocab, split_words

TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # id 0 = space, 1..26 = a..z
TUTORIAL_VALID_CHARS = 1000
MIN_SPLIT_TOKENS = 2  # an input and its target
MIN_TEXT_TOKENS = 20 * MIN_SPLIT_TOKENS  # the 5% valid split then holds MIN_SPLIT_TOKENS


@dataclasses.dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus.

    Attributes:
      name: one of :data:`CORPORA`, or ``"text"``.
      vocab: the V-token vocabulary; ``vocab.level`` is "char" or "word".
      train, valid: read-only ``uint8[N]`` (V <= 256) or ``int32[N]`` id arrays.
      test: as train, or None where the split has none (text8 ``split="tutorial"``).
      note: where the text came from, how it was split, and anything unusual (head file,
        characters mapped or added, words mapped to ``<unk>``).
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


def load_corpus(corpus: str | DataConfig, *, download: bool = True, **fields: Any) -> Corpus:
    """Load a corpus: a named one (see :data:`lstmjax.data.catalog.CORPORA`), or your own text.

    Args:
      corpus: a :class:`~lstmjax.data.options.DataConfig`; or its ``corpus`` field, the other
        fields given as ``fields``: ``load_corpus("ptb", data_dir=d)`` is
        ``load_corpus(DataConfig("ptb", data_dir=d))``. See DataConfig for each field:
        ``path``, ``level`` and ``min_count`` for your own text (``corpus="text"``),
        ``data_dir`` and ``cache_dir`` for the named corpora's files, ``split`` and ``unknown``.
      download: fetch missing files into the cache; False: a missing file is an error.
      **fields: the other fields of DataConfig, when ``corpus`` is a name.

    Raises:
      FileNotFoundError: a file is missing (offline, download failed, not in the data dir, or no
        such ``path``).
      ValueError: a bad field, a checksum mismatch, an unknown symbol, text that is not UTF-8
        or too short to split.
      TypeError: ``fields`` beside a DataConfig, or a name that is not a field of DataConfig.
    """
    if isinstance(corpus, DataConfig):
        if fields:
            raise TypeError(f"load_corpus takes a DataConfig or its fields, not both: got "
                            f"{corpus} and {sorted(fields)}")
        data = corpus
    else:
        data = DataConfig(corpus, **fields)
    if data.corpus == TEXT:
        return _user_text(data.path, data.level, data.min_count)
    entry = CORPORA[data.corpus]
    files = [sources.locate(entry.name, alternatives, data_dir=data.data_dir,
                            cache_dir=data.cache_dir, download=download)
             for alternatives in entry.files]
    return READERS[entry.reader](entry, files, data)


# ---- building corpora ------------------------------------------------------------------------


def _user_text(path: str | os.PathLike, level: Level, min_count: int) -> Corpus:
    """``corpus="text"``: the file or folder at ``path``, tokenized at ``level``, 90/5/5."""
    root = Path(path).expanduser().absolute()  # a relative path: from the current directory
    files = _text_files(path, root)
    text = _join_files([sources.decode_utf8(f.read_bytes(), f) for f in files])
    tokens = text if level == "char" else split_words(text)
    if len(tokens) < MIN_TEXT_TOKENS:
        unit = "characters" if level == "char" else "words (<eos> included)"
        where = f" ({root})" if os.fspath(path) != str(root) else ""
        raise FieldError(
            "data.path",
            f"{setting('path', path)}{where} holds {len(tokens)} {unit}: too short. The "
            f"contiguous 90/5/5 split needs at least {MIN_TEXT_TOKENS} so that valid and test "
            f"get {MIN_SPLIT_TOKENS} each (an input and its target), and training needs "
            "train.batch_size * (train.seq_len + 1) in its 90%: use a longer text"
        )
    shown = ", ".join(f.relative_to(root).as_posix() for f in files[:3])
    more = f", ... {files[-1].relative_to(root).as_posix()}" if len(files) > 3 else ""
    what = f"{len(files)} {TEXT_GLOB} files in path order: {shown}{more}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    origin = f"read from {root}" + (f" ({what})" if root.is_dir() else "")
    origin += f", text sha256 {digest}; "
    if level == "char":
        return _char_corpus(TEXT, text, origin)
    return _word_corpus(TEXT, tokens, origin, min_count)


def _text_files(path: str | os.PathLike, root: Path) -> list[Path]:
    """The file ``root``, or the ``*.txt`` files under the folder ``root`` (see the module
    docstring), in order; errors name ``data.path`` as given and as resolved."""
    given = setting("path", path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(
            f"{given}: no such file or folder ({root}, a relative path being resolved against "
            f"the current directory {Path.cwd()}); name a UTF-8 text file or a folder of "
            f"{TEXT_GLOB} files"
        )
    found = {
        p.relative_to(root).as_posix(): p
        for p in root.rglob(TEXT_GLOB)
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    if not found:
        raise FileNotFoundError(
            f"{given}: the folder {root} holds no {TEXT_GLOB} file (searched with its subfolders, "
            f"hidden ones skipped); put UTF-8 text files named {TEXT_GLOB} there, or set "
            "data.path to one file"
        )
    return [found[k] for k in sorted(found)]


def _join_files(texts: list[str]) -> str:
    """The texts in order, each starting on a new line (a newline added where one lacks it)."""
    parts: list[str] = []
    for text in texts:
        if parts and text and not parts[-1].endswith("\n"):
            parts.append("\n")
        if text:
            parts.append(text)
    return "".join(parts)


# ---- building corpora from tokens ------------------------------------------------------------


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
    if extra:
        note += (
            f"; vocabulary = the training split's {len(train_chars)} chars plus "
            f"{len(extra)} seen only in valid/test: {extra!r}"
        )
    return Corpus(name, vocab, train, valid, test, note)


def _word_corpus(name: str, tokens: list[str], origin: str, min_count: int) -> Corpus:
    """A word corpus split 90/5/5; vocabulary: the training split's words seen at least
    ``min_count`` times, plus ``<unk>`` for every other word."""
    n = len(tokens)
    a, b = _bounds(n)
    vocab = Vocab.build_words(tokens[:a], min_count=min_count, unk=UNK)
    mapped = np.fromiter((t not in vocab.index for t in tokens), bool, count=n)  # [N]
    train, valid, test = _freeze(vocab.encode(tokens, unknown=UNK).astype(vocab.dtype), (a, b))
    counts = [int(m.sum()) for m in np.split(mapped, [a, b])]
    note = (
        f"{name}: {origin}{n:,} words ({EOS} included): each line's words split on whitespace, "
        f"then {EOS}; vocabulary: {len(vocab):,} tokens, the training split's words seen at least "
        f"{min_count} times plus {UNK}, sorted by (-count, word); words mapped to {UNK}: "
        f"train {counts[0]:,}, valid {counts[1]:,}, test {counts[2]:,}; contiguous 90/5/5 split: "
        f"train {a:,}, valid {b - a:,}, test {n - b:,} words"
    )
    return Corpus(name, vocab, train, valid, test, note)


# ---- the readers of the named corpora: (entry, its files as located, the config) -> Corpus ----


def _read_pydoc_topics(entry: NamedCorpus, files: list[CorpusFile], data: DataConfig) -> Corpus:
    """CPython's help topics, sorted by key and joined with blank lines; 90/5/5."""
    del files, data  # no file; nothing to choose
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some distributions split pydoc_data off the standard library
        raise FileNotFoundError(
            f"the {entry.name} corpus reads CPython's pydoc_data.topics, which this Python "
            "lacks; install the full standard library or choose another data.corpus"
        ) from err
    text = "\n\n".join(topics[k] for k in sorted(topics))
    return _char_corpus(entry.name, text, f"CPython {sys.version.split()[0]} pydoc_data.topics, ")


def _read_char_text(entry: NamedCorpus, files: list[CorpusFile], data: DataConfig) -> Corpus:
    """One checked UTF-8 file, one token per character; 90/5/5."""
    del data  # nothing to choose
    (file,) = files
    return _char_corpus(entry.name, sources.read_text(file), f"read from {file.path}; ")


def _read_ptb(entry: NamedCorpus, files: list[CorpusFile], data: DataConfig) -> Corpus:
    """PTB words or chars (``entry.level``), one file per split, vocabulary from train."""
    texts = [sources.read_text(f) for f in files]  # train, valid, test
    paths = [f.path for f in files]
    note = f"{entry.name}: read from {paths[0].parent}; "
    replacement = None
    unknown = data.unknown
    if entry.level == "word":
        splits = [split_words(t) for t in texts]  # token lists
        vocab = Vocab.build_words(splits[0])
        note += "each line's words split on whitespace, then <eos>; vocabulary from train "
        note += "sorted by (-count, word); "
        for tokens, path in zip(splits[1:], paths[1:], strict=True):
            pos = next((i for i, t in enumerate(tokens) if t not in vocab.index), None)
            if pos is not None and unknown == "error":
                raise FieldError(
                    "data.unknown",
                    f"{path}: word {tokens[pos]!r} at position {pos:,} is not in the vocabulary "
                    f'of {paths[0].name} ({len(vocab):,} words); set data.unknown="map" to map '
                    f"such words to {UNK}"
                )
        if unknown == "map":
            replacement = UNK
            mapped = sum(t not in vocab.index for s in splits[1:] for t in s)
            note += f"{mapped} valid/test words outside it mapped to {UNK}; "
    else:
        splits = [_ptb_symbols(t, p) for t, p in zip(texts, paths, strict=True)]
        train_symbols = set(splits[0])
        symbols = sorted(train_symbols.union(*splits[1:]))
        vocab = Vocab(tuple(sorted(EOS if c == "\n" else c for c in symbols)), "char")
        extra = [c for c in symbols if c not in train_symbols]
        note += f"each line's symbols split on whitespace, then {EOS}; "
        note += f"vocabulary adds {extra} seen only in valid/test; " if extra else ""
    sizes = [len(s) for s in splits]
    whole = np.concatenate([vocab.encode(tokens, unknown=replacement) for tokens in splits])
    train, valid, test = _freeze(whole.astype(vocab.dtype), (sizes[0], sizes[0] + sizes[1]))
    note += f"{len(vocab)} tokens; train {sizes[0]:,}, valid {sizes[1]:,}, test {sizes[2]:,}"
    return Corpus(entry.name, vocab, train, valid, test, note)


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


def _read_text8(entry: NamedCorpus, files: list[CorpusFile], data: DataConfig) -> Corpus:
    """text8 (or its 10^7-char head, the alternative file) streamed into uint8 ids, split as
    ``data.split`` says.

    A character outside the alphabet is reported before a checksum mismatch (it explains one);
    with ``data.unknown="map"`` a file that differs only by such characters is accepted and noted.
    """
    ((path, source),) = files
    split, unknown = data.split, data.unknown
    vocab = Vocab(tuple(TEXT8_ALPHABET), "char")
    ids, digest, mapped, first = _encode_stream(path, vocab, replace_with=" ")
    differs = sources.mismatch(path, digest, source)
    if mapped and unknown == "error":
        with open(path, "rb") as f:
            f.seek(first)
            char = f.read(4).decode("utf-8", errors="replace")[0]
        raise FieldError(
            "data.unknown",
            f"{path}: character {char!r} (U+{ord(char):04X}) at offset {first:,} is outside "
            f"text8's {len(vocab)}-symbol alphabet {TEXT8_ALPHABET!r}"
            + (f", as are {mapped - 1:,} more characters" if mapped > 1 else "")
            + (f"; the file is not the published one ({differs})" if differs else "")
            + '. Set data.unknown="map" to map each such character to a space, or train on the '
            'file as it is, with its own alphabet, as data.corpus="text" with '
            + setting("path", path)
        )
    if differs and not mapped:
        sources.check_sha256(path, digest, source)  # raises, naming the fix
    head = source != entry.files[0][0]
    n = len(ids)
    note = f"{entry.name}: {path}, sha256 {digest}"
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
    if differs:
        note += f'; not the published file ({differs}), which data.unknown="map" accepts'
    parts = _freeze(ids, cuts)
    if split == "tutorial":
        return Corpus(entry.name, vocab, parts[1], parts[0], None, note)
    return Corpus(entry.name, vocab, *parts, note)


def _encode_stream(
    path: Path, vocab: Vocab, *, replace_with: str
) -> tuple[np.ndarray, str, int, int | None]:
    """Encode a file over a fixed single-byte alphabet, ``sources.CHUNK_BYTES`` at a time.

    Bytes go through a 256-entry lookup table straight into one preallocated ``uint8[N]`` array,
    N the file size; the text is never decoded as a whole. A character outside the alphabet
    becomes ``replace_with``: its first byte does, its UTF-8 continuation bytes are dropped.

    Returns:
      ``(ids, digest, replaced, first)``: ids ``uint8[N']``; the sha256 hex digest of the file;
      the count of characters replaced; the byte offset of the first of them (also its character
      offset: every byte before it is an ASCII symbol), or None.
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
    read = written = replaced = 0
    first = None
    with open(path, "rb") as f:
        while n := f.readinto(view):
            digest.update(view[:n])
            raw = np.frombuffer(buf, np.uint8, count=n)
            ids = lut[raw]  # [n]; np.take(..., out=<a view of out>) would copy all of out
            bad = ids == absent
            if bad.any():
                if first is None:
                    first = read + int(np.argmax(bad))
                keep = (raw & 0xC0) != 0x80  # not a UTF-8 continuation byte
                replaced += int(np.count_nonzero(bad & keep))
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
    return out[:written], digest.hexdigest(), replaced, first


READERS: dict[Reader, Callable[[NamedCorpus, list[CorpusFile], DataConfig], Corpus]] = {
    "pydoc_topics": _read_pydoc_topics,
    "char_text": _read_char_text,
    "ptb": _read_ptb,
    "text8": _read_text8,
}
"""The readers that :data:`lstmjax.data.catalog.CORPORA` names: ``(entry, its files as located,
the config) -> Corpus``. A corpus in a new format is a reader here, its name in
:data:`~lstmjax.data.catalog.Reader`, and its entry."""
