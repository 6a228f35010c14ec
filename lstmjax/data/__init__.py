"""The data layer: vocabularies, corpora (named ones and your own text), truncated-BPTT windows.

  options   ``DataConfig``: which corpus and where it lives (lstmjax.config re-exports it),
            checked when made, reading no file; what ``lstmjax.config`` needs, with none of the
            I/O below.
  catalog   ``CORPORA``: the registry of named corpora, one ``NamedCorpus`` entry each (files
            as ``Source`` s with sha256 and origin, level, reader, splits): default (CPython's
            help texts), text8, tinyshakespeare, anna, ptb, ptb-char.
  corpora   ``load_corpus(data)``, ``data`` a DataConfig or its fields: a named corpus, or
            ``"text"``: your own UTF-8 file or folder of ``*.txt`` files (``path``), char or
            word level, split 90/5/5; one compact id array per split. Errors name the config
            fields (``data.path``, ``data.unknown``, ...).
  sources   where corpus files come from: a data dir or a verified download into the cache;
            UTF-8 decoding that names the offset of a bad byte.
  vocab     ``Vocab``: char- and word-level token <-> id tables, saved as JSON with a run.
  batching  ``windows``: B contiguous streams read T tokens at a time (TF's ``ptb_producer``);
            ``Position(epoch, window)`` to resume exactly.

Importing this package reads no file and touches no network, and imports none of its modules:
each name below loads its module on first use, so that ``lstmjax.config`` can import
``lstmjax.data.options`` (and the catalog) alone.
"""
import importlib

_NAMES = {
    "CORPORA": "catalog",
    "EOS": "vocab",
    "UNK": "vocab",
    "Corpus": "corpora",
    "DataConfig": "options",
    "NamedCorpus": "catalog",
    "Position": "batching",
    "Source": "catalog",
    "Vocab": "vocab",
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
    "DataConfig",
    "NamedCorpus",
    "Position",
    "Source",
    "Vocab",
    "load_corpus",
    "num_windows",
    "require_windows",
    "stream",
    "windows",
]
