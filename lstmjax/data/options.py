"""The data layer's options: :class:`DataConfig`, which corpus and where it lives, checked when
it is made, without reading a file.

The corpus names and the splits come from the registry :data:`lstmjax.data.catalog.CORPORA`.
This module imports nothing of the data layer's I/O, so that ``lstmjax.config`` (and so
``import lstmjax``) can use it without loading the corpora and download code.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, get_args

from lstmjax._checks import FieldError, require_choice, require_positive_int
from lstmjax._marks import RESUMABLE
from lstmjax.data.catalog import CORPORA, STANDARD, Level

TEXT = "text"  # the corpus name for your own text (data.path)
CorpusName = Literal[(*CORPORA, TEXT)]  # the choices the command line offers
SPLITS: tuple[str, ...] = tuple(dict.fromkeys(s for c in CORPORA.values() for s in c.splits))
Split = Literal[SPLITS]
UNKNOWN: tuple[str, ...] = ("error", "map")
Unknown = Literal[UNKNOWN]
TEXT_GLOB = "*.txt"  # the files of a data.path folder (searched recursively)
LEVELS: tuple[str, ...] = get_args(Level)
_PATHS = ("path", "data_dir", "cache_dir")  # fields that take a path (stored as str)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which corpus, and where it lives: a named corpus, or your own text (corpus="text").

    lstmjax.data.load_corpus(data) loads it, as does load_corpus(**dataclasses.asdict(data)).
    Errors name the fields data.<field>.

    Attributes:
      corpus: a named corpus (see lstmjax.data.catalog; "default" is embedded), or
        "text": the text at path. A path given here (an existing file or folder, or any value
        with a "/" or ending in ".txt") means corpus="text" with that path.
      path: corpus="text" only, and required there: a UTF-8 text file, or a folder whose
        *.txt files (subfolders included, hidden ones skipped) are read in sorted path order.
        Split contiguously 90/5/5. A relative path is resolved against the current directory
        when the corpus is loaded; config.json stores it as given, so resume a run from the
        directory it started in (or give an absolute path).
      level: corpus="text" only: "char" (every character of the text is a token) or
        "word" (whitespace-separated words, each newline an <eos>, as PTB).
      min_count: corpus="text", word level only: training-split words seen fewer times
        become <unk> (as do words seen only in valid or test); 1 keeps every training word.
      data_dir: directory holding a named corpus's files; None: $LSTMJAX_DATA_DIR, else
        download. Not with corpus="text".
      cache_dir: where downloads go; None: $LSTMJAX_CACHE_DIR, else ~/.cache/lstmjax.
      split: "standard" or, for text8, "tutorial" (validation = first 1,000 characters).
      unknown: text8 characters outside its alphabet and ptb valid/test words outside its
        training vocabulary: "error", or "map" to a space (text8) or <unk> (ptb).
    """

    corpus: CorpusName | str = "default"
    path: str | None = None
    level: Level = "char"
    min_count: int = 1
    data_dir: str | None = dataclasses.field(default=None, metadata=RESUMABLE)
    cache_dir: str | None = dataclasses.field(default=None, metadata=RESUMABLE)
    split: Split = STANDARD
    unknown: Unknown = "error"

    def __post_init__(self):
        for name in _PATHS:  # a pathlib.Path is kept as its str, as config.json stores it
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        named = (*CORPORA, TEXT)
        if self.corpus not in named:
            corpus = str(self.corpus)
            if self.path is not None or not (os.path.exists(corpus) or "/" in corpus
                                             or corpus.endswith(".txt")):
                raise FieldError("data.corpus", f"data.corpus={corpus!r} is neither one of "
                                 f"{named} nor the path of an existing text file or folder")
            object.__setattr__(self, "corpus", TEXT)
            object.__setattr__(self, "path", corpus)
        require_choice("data.level", self.level, LEVELS)
        require_positive_int("data.min_count", self.min_count)
        require_choice("data.split", self.split, SPLITS)
        require_choice("data.unknown", self.unknown, UNKNOWN)
        if self.corpus == TEXT:
            self._check_text()
        else:
            self._check_named()

    def _check_text(self):
        """The fields that ``corpus="text"`` takes and refuses."""
        if self.split != STANDARD:
            self._refuse_split()
        if not self.path:
            raise FieldError(
                "data.path",
                'data.corpus="text" trains on your own text, named by data.path, which is not '
                f"set: set data.path to a UTF-8 text file or to a folder of {TEXT_GLOB} files")
        if self.data_dir is not None:
            raise FieldError(
                "data.data_dir",
                'data.data_dir holds the files of the named corpora; data.corpus="text" reads '
                f"{setting('path', self.path)} alone: unset data.data_dir")
        if self.unknown != "error":
            raise FieldError(
                "data.unknown",
                'data.unknown="map" applies to the fixed vocabularies of text8 and ptb; '
                'data.corpus="text" builds its vocabulary from the text (at word level, rare '
                'words become <unk> by data.min_count): leave data.unknown="error"')
        if self.level == "char" and self.min_count != 1:
            raise FieldError(
                "data.min_count",
                f"{setting('min_count', self.min_count)} applies to word level only; set "
                'data.level="word", or leave data.min_count=1 (char level keeps every character)')

    def _check_named(self):
        """The fields that a named corpus takes and refuses."""
        if self.split not in CORPORA[self.corpus].splits:
            self._refuse_split()
        if self.path is not None:
            raise FieldError(
                "data.path",
                f'{setting("path", self.path)} is for your own text (data.corpus="text"); the '
                f"named corpus {setting('corpus', self.corpus)} is read from data.data_dir or the "
                'download cache: unset data.path, or set data.corpus="text" to train on that text')
        for name, default in (("level", "char"), ("min_count", 1)):
            value = getattr(self, name)
            if value != default:
                raise FieldError(
                    f"data.{name}",
                    f'{setting(name, value)} applies to data.corpus="text" only; the named corpus '
                    f"{setting('corpus', self.corpus)} has its own vocabulary: leave data.{name} "
                    f"at its default, {setting(name, default)}")

    def _refuse_split(self):
        owners = " or ".join(setting("corpus", name) for name, entry in CORPORA.items()
                             if self.split in entry.splits)
        raise FieldError(
            "data.split",
            f"{setting('split', self.split)} exists only for {owners}, got "
            f"{setting('corpus', self.corpus)}; use {setting('split', STANDARD)}")


def setting(field: str, value: object) -> str:
    """``data.<field>=<value>`` as an error message shows it, strings and paths in double quotes."""
    if isinstance(value, str | os.PathLike):
        return f'data.{field}="{os.fspath(value)}"'
    return f"data.{field}={value!r}"
