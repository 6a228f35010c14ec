"""The data layer: vocabularies, corpora (named ones and your own text), truncated-BPTT windows.

  vocab     ``Vocab``: char- and word-level token <-> id tables, saved as JSON with a run.
  corpora   ``load_corpus(corpus, ...)``, its keyword arguments the fields of ``DataConfig``:
            default (CPython's help texts), text8, tinyshakespeare, anna, ptb, ptb-char, or
            ``"text"``: your own UTF-8 file or folder of ``*.txt`` files (``path``), char or word
            level, split 90/5/5; one compact id array per split. Errors name the config fields
            (``data.path``, ``data.unknown``, ...); ``check_options`` checks them without reading.
  sources   where corpus files come from: origins and sha256s, a data dir or a verified download
            into the cache; UTF-8 decoding that names the offset of a bad byte.
  batching  ``windows``: B contiguous streams read T tokens at a time (TF's ``ptb_producer``);
            ``Position(epoch, window)`` to resume exactly.

  options   corpus names, token levels, ``check_options``: what ``lstmjax.config`` needs, with
            none of the I/O above.

Importing this package reads no file and touches no network, and imports none of its modules:
each name below loads its module on first use, so that ``lstmjax.config`` can import
``lstmjax.data.options`` alone.
"""

import importlib

_NAMES = {
    "CORPORA": "options",
    "EOS": "vocab",
    "UNK": "vocab",
    "Corpus": "corpora",
    "Position": "batching",
    "Vocab": "vocab",
    "check_options": "options",
    "load_corpus": "corpora",
    "num_windows": "batching",
    "require_windows": "batching",
    "stream": "batching",
    "windows": "batching",
}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"lstmjax.data.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'lstmjax.data' has no attribute {name!r}")

__all__ = [
    "CORPORA",
    "EOS",
    "UNK",
    "Corpus",
    "Position",
    "Vocab",
    "check_options",
    "load_corpus",
    "num_windows",
    "require_windows",
    "stream",
    "windows",
]
