"""Corpora for language modelling, as one compact id array per split: the named ones and your own.

``load_corpus(corpus, ...)`` tokenizes a corpus and returns a :class:`Corpus`: a vocabulary and
the train/valid/test splits as read-only id arrays (uint8 when the vocabulary has at most 256
tokens, else int32), views into one array. Its keyword arguments are the fields of
:class:`lstmjax.config.DataConfig`, so ``load_corpus(**dataclasses.asdict(config.data))`` loads a
run's corpus, and every error names the field at fault as ``data.<field>``.

The named corpora get their files from :mod:`lstmjax.data.sources` (``data.data_dir``, or the
download cache; each file checked against its sha256, or its size where none is known). Char
level unless noted; "90/5/5" = train is the first 90% of the text, valid the next 5%, test the
rest, contiguous:

* ``default``: CPython's own help texts (``pydoc_data.topics.topics``, the text behind
  ``help("assert")``: ~80 topics of English prose about the language, ~0.47M characters and ~100
  distinct ones on CPython 3.11; the exact text follows the running Python version). Read at run
  time, no file and no download; the topics in sorted key order joined by blank lines; 90/5/5.
* ``text8``: the first 10^8 bytes of cleaned English Wikipedia (Mahoney), 27 symbols (a-z and
  space; id 0 is space, ids 1-26 are a-z as in the TF Udacity tutorial). ``data.split="standard"``:
  90M/5M/5M chars. ``data.split="tutorial"``: valid = the first 1,000 chars, train = the rest, no
  test (the Udacity tutorial's split). The data dir may hold the full ``text8`` (100,000,000 bytes)
  or only ``text8.head10M.txt`` (its first 10^7 chars); on the head file "standard" keeps the
  90/5/5 proportions (9M/0.5M/0.5M) and the corpus's ``note`` says so. The file is streamed in
  chunks through a 256-entry lookup table into a uint8 array, never held as text. A character
  outside the alphabet is reported before the checksum: the error names the character, its
  offset, how many there are and whether the file also differs from the published one, and
  the fix, ``data.unknown="map"``, which maps each one to a space, counts them in ``note`` and
  then accepts a file that differs from the published one only by such characters (``note``
  records its size and sha256 beside the published ones). A file with only alphabet characters
  must match the published size and sha256.
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
from pathlib import Path

import numpy as np

from lstmjax.data import sources
from lstmjax.data.options import (
    TEXT,
    TEXT_GLOB,
    Level,
    check_options,
    setting,
)
from lstmjax.data.vocab import EOS, UNK, Vocab, split_words

TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # id 0 = space, 1..26 = a..z
TUTORIAL_VALID_CHARS = 1000
MIN_SPLIT_TOKENS = 2  # an input and its target
MIN_TEXT_TOKENS = 20 * MIN_SPLIT_TOKENS  # the 5% valid split then holds MIN_SPLIT_TOKENS


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


def load_corpus(
    corpus: str,
    *,
    path: str | os.PathLike | None = None,
    level: Level = "char",
    min_count: int = 1,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    split: str = "standard",
    unknown: str = "error",
    download: bool = True,
) -> Corpus:
    """Load a corpus (see the module docstring for each one and its splits).

    The arguments but ``download`` are the fields of :class:`lstmjax.config.DataConfig`.

    Args:
      corpus: one of :data:`CORPORA`, or ``"text"``: your own text at ``path``.
      path: ``"text"`` only: a UTF-8 text file, or a folder of ``*.txt`` files; a relative path
        is resolved against the current directory.
      level: ``"text"`` only: ``"char"`` or ``"word"``.
      min_count: ``"text"`` at word level only: training-split words seen fewer times become
        ``<unk>``.
      data_dir: folder holding the named corpora's files; None: ``$LSTMJAX_DATA_DIR`` if set,
        else the cache. With a data dir, missing files are an error (nothing is downloaded).
      cache_dir: download cache; None: ``$LSTMJAX_CACHE_DIR``, else ``~/.cache/lstmjax``.
      split: ``"standard"`` (90/5/5, or PTB's own files) or ``"tutorial"`` (text8 only: valid =
        the first 1,000 chars, train = the rest, no test).
      unknown: ``"error"``: a character outside text8's alphabet, or a valid/test word outside
        PTB's training vocabulary, is a ValueError naming it and its offset; ``"map"``: it becomes
        a space (text8) or ``<unk>`` (ptb), counted in ``note``. Char corpora with an open
        alphabet have no unknowns; ``"text"`` takes only ``"error"`` (its words are mapped by
        ``min_count``).
      download: fetch missing files into the cache; False: a missing file is an error.

    Raises:
      FileNotFoundError: a file is missing (offline, download failed, not in the data dir, or no
        such ``path``).
      ValueError: a bad argument, a checksum mismatch, an unknown symbol, text that is not UTF-8
        or too short to split.
    """
    check_options(
        corpus,
        path=path,
        level=level,
        min_count=min_count,
        data_dir=data_dir,
        split=split,
        unknown=unknown,
    )
    if corpus == TEXT:
        return _user_text(path, level, min_count)
    if corpus == "default":
        return _char_corpus(corpus, _default_text(), "")
    paths = [
        sources.locate(corpus, files, data_dir=data_dir, cache_dir=cache_dir, download=download)
        for files in _FILES[corpus]
    ]
    if corpus == "text8":
        return _text8(paths[0], split, unknown)
    if corpus in ("tinyshakespeare", "anna"):
        return _char_corpus(corpus, sources.read_text(paths[0]), f"read from {paths[0]}; ")
    return _ptb(corpus, paths, unknown)


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
        raise ValueError(
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


def _default_text() -> str:
    """CPython's help topics, sorted by key and joined with blank lines."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some distributions split pydoc_data off the standard library
        raise FileNotFoundError(
            "the default corpus reads CPython's pydoc_data.topics, which this Python lacks; "
            "install the full standard library or choose another data.corpus"
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


def _ptb(name: str, paths: list[Path], unknown: str) -> Corpus:
    """PTB words or chars, one file per split, vocabulary from train."""
    texts = [sources.read_text(p) for p in paths]  # train, valid, test
    note = f"{name}: read from {paths[0].parent}; "
    replacement = None
    if name == "ptb":
        splits = [split_words(t) for t in texts]  # token lists
        vocab = Vocab.build_words(splits[0])
        note += "each line's words split on whitespace, then <eos>; vocabulary from train "
        note += "sorted by (-count, word); "
        for tokens, path in zip(splits[1:], paths[1:], strict=True):
            pos = next((i for i, t in enumerate(tokens) if t not in vocab.index), None)
            if pos is not None and unknown == "error":
                raise ValueError(
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
    """text8 (or its 10^7-char head) streamed into uint8 ids, split as ``split`` says.

    A character outside the alphabet is reported before a checksum mismatch (it explains one);
    with ``unknown="map"`` a file that differs only by such characters is accepted and noted.
    """
    vocab = Vocab(tuple(TEXT8_ALPHABET), "char")
    source = sources.SOURCES[path.name]
    ids, digest, mapped, first = _encode_stream(path, vocab, replace_with=" ")
    differs = sources.mismatch(path, digest, source)
    if mapped and unknown == "error":
        with open(path, "rb") as f:
            f.seek(first)
            char = f.read(4).decode("utf-8", errors="replace")[0]
        raise ValueError(
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
    if differs:
        note += f'; not the published file ({differs}), which data.unknown="map" accepts'
    parts = _freeze(ids, cuts)
    if split == "tutorial":
        return Corpus("text8", vocab, parts[1], parts[0], None, note)
    return Corpus("text8", vocab, *parts, note)


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
