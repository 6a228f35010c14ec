"""The data layer: vocabularies, named corpora, and truncated-BPTT windows.

  vocab     ``Vocab``: char- and word-level token <-> id tables, saved as JSON with a run.
  corpora   ``load_corpus(name)``: default (CPython's help texts), text8, tinyshakespeare, anna,
            ptb, ptb-char; one compact id array per split.
  sources   where corpus files come from: origins and sha256s, a data dir or a verified download
            into the cache.
  batching  ``windows``: B contiguous streams read T tokens at a time (TF's ``ptb_producer``);
            ``Position(epoch, window)`` to resume exactly.

Importing this package reads no file and touches no network.
"""

from lstmjax.data.batching import Position, num_windows, require_windows, stream, windows
from lstmjax.data.corpora import CORPORA, Corpus, load_corpus
from lstmjax.data.vocab import EOS, Vocab

__all__ = [
    "CORPORA",
    "EOS",
    "Corpus",
    "Position",
    "Vocab",
    "load_corpus",
    "num_windows",
    "require_windows",
    "stream",
    "windows",
]
