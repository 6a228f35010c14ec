"""The options of the data layer, checked without reading a file: corpus names, token levels, and
:func:`check_options`, which checks a combination of ``DataConfig`` fields.

This module imports nothing of the data layer's I/O, so that ``lstmjax.config`` (and so
``import lstmjax``) can use it without loading the corpora and download code.
"""

from __future__ import annotations

import os
from typing import Literal, get_args

from lstmjax._checks import require_choice, require_positive_int

CorpusName = Literal["default", "text8", "tinyshakespeare", "anna", "ptb", "ptb-char", "text"]
TEXT = "text"  # the corpus name for your own text (data.path)
CORPORA: tuple[str, ...] = tuple(c for c in get_args(CorpusName) if c != TEXT)  # the named ones
SPLITS: tuple[str, ...] = ("standard", "tutorial")
UNKNOWN: tuple[str, ...] = ("error", "map")
TEXT_GLOB = "*.txt"  # the files of a data.path folder (searched recursively)
Level = Literal["char", "word"]
LEVELS: tuple[str, ...] = get_args(Level)


def check_options(
    corpus: str,
    *,
    path: str | os.PathLike | None = None,
    level: Level = "char",
    min_count: int = 1,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    split: str = "standard",
    unknown: str = "error",
) -> None:
    """Check a combination of :class:`~lstmjax.config.DataConfig` fields, reading no file.

    Raises:
      ValueError: naming the ``data.<field>`` at fault and the fix.
    """
    del cache_dir  # any cache serves any corpus
    require_choice("data.corpus", corpus, get_args(CorpusName))
    require_choice("data.level", level, LEVELS)
    require_positive_int("data.min_count", min_count)
    require_choice("data.split", split, SPLITS)
    require_choice("data.unknown", unknown, UNKNOWN)
    if split == "tutorial" and corpus != "text8":
        raise ValueError(
            f'data.split="tutorial" exists only for data.corpus="text8", got '
            f'{setting("corpus", corpus)}; use data.split="standard"'
        )
    if corpus == TEXT:
        if path is None or not os.fspath(path):
            raise ValueError(
                'data.corpus="text" trains on your own text, named by data.path, which is not '
                f"set: set data.path to a UTF-8 text file or to a folder of {TEXT_GLOB} files"
            )
        if data_dir is not None:
            raise ValueError(
                'data.data_dir holds the files of the named corpora; data.corpus="text" reads '
                f"{setting('path', path)} alone: unset data.data_dir"
            )
        if unknown != "error":
            raise ValueError(
                'data.unknown="map" applies to the fixed vocabularies of text8 and ptb; '
                'data.corpus="text" builds its vocabulary from the text (at word level, rare '
                'words become <unk> by data.min_count): leave data.unknown="error"'
            )
        if level == "char" and min_count != 1:
            raise ValueError(
                f"{setting('min_count', min_count)} applies to word level only; set "
                'data.level="word", or leave data.min_count=1 (char level keeps every character)'
            )
        return
    if path is not None:
        raise ValueError(
            f'{setting("path", path)} is for your own text (data.corpus="text"); the named '
            f"corpus {setting('corpus', corpus)} is read from data.data_dir or the download "
            'cache: unset data.path, or set data.corpus="text" to train on that text'
        )
    for name, value, default in (("level", level, "char"), ("min_count", min_count, 1)):
        if value != default:
            raise ValueError(
                f'{setting(name, value)} applies to data.corpus="text" only; the named corpus '
                f"{setting('corpus', corpus)} has its own vocabulary: leave data.{name} at its "
                f"default, {setting(name, default)}"
            )


def setting(field: str, value: object) -> str:
    """``data.<field>=<value>`` as an error message shows it, strings and paths in double quotes."""
    if isinstance(value, str | os.PathLike):
        return f'data.{field}="{os.fspath(value)}"'
    return f"data.{field}={value!r}"
