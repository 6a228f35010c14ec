"""The data layer: exact truncated-BPTT windows and resume, vocabularies, the named corpora on the
shared data (skipped where it is absent), the registry (a toy corpus registered as one entry),
your own text (``corpus="text"``) from tiny files, errors that name the config field and the fix,
and the download path, served locally (no network)."""

import dataclasses
import hashlib
import io
import itertools
import json
import pathlib
import re
import tracemalloc
import urllib.error
import urllib.request
import zipfile
from typing import get_args

import numpy as np
import pytest

from lstmjax._checks import FieldError
from lstmjax.config import Config, DataConfig
from lstmjax.data import (
    CORPORA,
    EOS,
    UNK,
    NamedCorpus,
    Position,
    Source,
    Vocab,
    load_corpus,
    num_windows,
    sources,
    stream,
    windows,
)
from lstmjax.data.batching import bptt_length

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "SOURCES.md").is_file(), reason=f"no shared data at {SHARED_DATA}"
)
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test touches the network, the user's cache or the user's data dir."""
    monkeypatch.delenv(sources.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv(sources.ENV_CACHE_DIR, str(tmp_path / "cache"))

    def no_network(url):
        raise urllib.error.URLError(f"offline test: {url}")

    monkeypatch.setattr(sources, "_open_url", no_network)


# ---- batching --------------------------------------------------------------------------------


def decode_rows(vocab, batch):
    return [vocab.decode(row) for row in batch]


def test_windows_on_a_known_string_are_contiguous_streams():
    vocab = Vocab.build_chars(ALPHABET)
    ids = vocab.encode(ALPHABET)  # 26 tokens; B=2 -> L=13 per stream; T=3 -> (13-1)//3 = 4 windows
    got = [(decode_rows(vocab, x), decode_rows(vocab, y)) for x, y in windows(ids, 2, 3)]
    assert got == [
        (["abc", "nop"], ["bcd", "opq"]),
        (["def", "qrs"], ["efg", "rst"]),
        (["ghi", "tuv"], ["hij", "uvw"]),
        (["jkl", "wxy"], ["klm", "xyz"]),
    ]
    assert num_windows(26, 2, 3) == 4
    x, y = next(windows(ids.astype(np.uint8), 2, 3))
    assert x.dtype == y.dtype == np.int32 and x.shape == y.shape == (2, 3)


def test_windows_drop_the_tail_and_continue_where_the_last_ended():
    ids = np.arange(103)  # B=4: L=25, tokens 100..102 dropped; T=6: (25-1)//6 = 4 windows
    batches = list(windows(ids, 4, 6))
    assert len(batches) == num_windows(103, 4, 6) == 4
    for (x0, y0), (x1, _) in itertools.pairwise(batches):
        np.testing.assert_array_equal(x1[:, 0], y0[:, -1])  # stream b goes on where it stopped
        np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)
    np.testing.assert_array_equal(batches[0][0][:, 0], [0, 25, 50, 75])  # row b starts at b*L
    assert batches[-1][1].max() == 99


def test_stream_crosses_the_epoch_boundary_at_window_zero():
    ids = np.arange(26)
    got = list(stream(ids, 2, 3, num_epochs=2))
    assert [w.position for w in got] == [Position(e, w) for e in range(2) for w in range(4)]
    assert [w.next for w in got] == [w.position for w in got[1:]] + [Position(2, 0)]
    first, second = got[:4], got[4:]
    for (_, _, x0, y0), (_, _, x1, y1) in zip(first, second):  # each epoch reads the same windows
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(second[0].inputs, [[0, 1, 2], [13, 14, 15]])


def test_resume_from_a_saved_position_continues_exactly():
    ids = np.arange(1000) % 37
    n = num_windows(len(ids), 3, 7)
    uninterrupted = list(stream(ids, 3, 7, num_epochs=3))
    k = n + 5  # stop in the second epoch
    saved = json.dumps(uninterrupted[k - 1].next.to_dict())
    assert uninterrupted[k - 1].next == uninterrupted[k - 1].position.next(n)
    resumed = list(stream(ids, 3, 7, Position.from_dict(json.loads(saved)), num_epochs=3))
    assert len(resumed) == len(uninterrupted) - k
    for (p0, _, x0, y0), (p1, _, x1, y1) in zip(uninterrupted[k:], resumed):
        assert p0 == p1
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    tail = list(windows(ids, 3, 7, start=5))  # windows(start=) agrees with the full epoch
    for (x0, y0), (x1, y1) in zip(list(windows(ids, 3, 7))[5:], tail, strict=True):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)


def test_windows_of_varying_length_cover_each_epoch_and_resume_from_their_offset():
    """B=2 streams of L=13 tokens, 12 targets each; lengths 5, 4, 6, 3, 9: epoch 0 reads [0, 5),
    [5, 9) and [9, 12) (6 cut to the 3 targets left), epoch 1 [0, 3) and [3, 12)."""
    ids = np.arange(26)
    got = list(stream(ids, 2, 3, num_epochs=2, lengths=iter([5, 4, 6, 3, 9, 7])))
    assert [w.position for w in got] == [Position(0, 0, 0), Position(0, 1, 5), Position(0, 2, 9),
                                         Position(1, 0, 0), Position(1, 1, 3)]
    assert [w.next for w in got] == [w.position for w in got[1:]] + [Position(2, 0, 0)]
    assert [w.inputs.shape[1] for w in got] == [5, 4, 3, 3, 9]
    np.testing.assert_array_equal(got[1].inputs, [[5, 6, 7, 8], [18, 19, 20, 21]])
    np.testing.assert_array_equal(got[2].targets, [[10, 11, 12], [23, 24, 25]])
    assert got[2].inputs.dtype == np.int32
    saved = json.dumps(got[1].next.to_dict())
    assert json.loads(saved) == {"epoch": 0, "window": 2, "offset": 9}
    resumed = list(stream(ids, 2, 3, Position.from_dict(json.loads(saved)), num_epochs=2,
                          lengths=iter([6, 3, 9])))
    for a, b in zip(got[2:], resumed, strict=True):
        assert a.position == b.position and a.next == b.next
        np.testing.assert_array_equal(a.inputs, b.inputs)
        np.testing.assert_array_equal(a.targets, b.targets)
    for position in (Position(0, 1), Position(0, 0, 4), Position(0, 1, 12)):
        with pytest.raises(ValueError, match="not the start of a window of varying length"):
            next(stream(ids, 2, 3, position, lengths=iter([5])))
    with pytest.raises(ValueError, match="no offset"):
        next(stream(ids, 2, 3, Position(0, 1, 3)))
    assert Position.from_dict({"epoch": 1, "window": 2}) == Position(1, 2)  # older checkpoints


def test_random_bptt_lengths_follow_merity_s_rule():
    """max(5, floor(N(mean, 5))), mean seq_len with probability 0.95 else seq_len / 2 (Merity
    et al. 2017 sec. 4.1), checked piece by piece on 4,000 seeded draws (bounds: 3 sigma)."""
    n = 4000
    lengths = np.array([bptt_length(7, k, 70) for k in range(n)])
    half, full = lengths[lengths < 53], lengths[lengths >= 53]  # each side of 53: under 4e-4 strays
    assert abs(len(half) / n - 0.05) < 3 * np.sqrt(0.05 * 0.95 / n)
    # floor(N(m, 5)): mean m - 0.5, standard deviation sqrt(25 + 1/12)
    assert abs(full.mean() - 69.5) < 3 * 5 / np.sqrt(len(full))
    assert abs(half.mean() - 34.5) < 3 * 5 / np.sqrt(len(half))
    assert abs(full.std() - 5.008) < 3 * 5 / np.sqrt(2 * len(full))
    # the floor at 5: with seq_len 8, P(length = 5) = 0.95 P(N(8, 5) < 6) + 0.05 P(N(4, 5) < 6)
    # = 0.95 * 0.3446 + 0.05 * 0.6554 = 0.3601
    short = np.array([bptt_length(7, k, 8) for k in range(n)])
    assert short.min() == 5
    assert abs(np.mean(short == 5) - 0.3601) < 3 * np.sqrt(0.36 * 0.64 / n)
    # a function of (seed, step) alone
    assert [bptt_length(7, k, 70) for k in range(40)] == lengths[:40].tolist()
    assert [bptt_length(8, k, 70) for k in range(40)] != lengths[:40].tolist()


def test_window_longer_than_the_corpus_is_an_error_that_names_the_fix():
    with pytest.raises(FieldError, match="window longer than the corpus") as err:
        next(windows(np.arange(20), 4, 5))
    assert err.value.field == "batch_size"
    message = str(err.value)
    for part in ("batch_size=4", "seq_len=5", "has 20", "smaller batch_size or seq_len"):
        assert part in message
    assert num_windows(20, 4, 5) == 0
    assert num_windows(24, 4, 5) == 1  # B*(T+1) tokens give exactly one window
    with pytest.raises(ValueError, match="seq_len"):
        num_windows(100, 2, 0)
    with pytest.raises(FieldError, match=re.escape("start must be an int in [0, 4] (num_windows), "
                                                   "got 5")):
        next(windows(np.arange(26), 2, 3, start=5))
    with pytest.raises(FieldError, match="Position.epoch must be an int >= 0, got -1"):
        Position.from_dict({"epoch": -1, "window": 0})
    with pytest.raises(FieldError, match="Position.offset must be an int >= 0, got True"):
        Position(0, 1, True)
    assert Position(np.int64(2), 0).to_dict() == {"epoch": 2, "window": 0}  # kept as an int
    assert type(Position(np.int64(2), 0).epoch) is int


# ---- vocabularies ----------------------------------------------------------------------------


def test_char_vocab_round_trips_text_and_json():
    text = "Hello, wörld!\nBye."
    vocab = Vocab.build_chars(text)
    assert vocab.tokens == tuple(sorted(set(text))) and vocab.level == "char"
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    again = Vocab.from_json(vocab.to_json())
    assert again == vocab and again.decode(ids) == text
    with pytest.raises(ValueError, match=r"'Z' \(U\+005A\) at offset 3"):
        vocab.encode("HelZ")
    np.testing.assert_array_equal(vocab.encode("HelZ", unknown="!"), vocab.encode("Hel!"))


def test_word_vocab_follows_the_ptb_reader():
    text = "the cat <unk> the\n the dog \n"
    tokens = text.replace("\n", f" {EOS} ").split()
    vocab = Vocab.build_words(tokens)
    # sorted by (-count, word): the x3, <eos> x2, then the singletons alphabetically
    assert vocab.tokens == ("the", EOS, "<unk>", "cat", "dog")
    ids = vocab.encode(text)
    np.testing.assert_array_equal(ids, vocab.encode(tokens))
    assert vocab.decode(ids) == "the cat <unk> the\nthe dog\n"
    assert Vocab.from_json(vocab.to_json()) == vocab
    with pytest.raises(ValueError, match="'bird' at position 1"):
        vocab.encode("the bird")
    assert vocab.decode(vocab.encode("the bird", unknown="<unk>")) == "the <unk>"


def test_char_vocab_with_eos_reads_newlines_as_eos():
    vocab = Vocab(("<eos>", "_", "a", "b"), "char")  # as ptb-char: no "\n" token
    ids = vocab.encode("ab_a\nb")
    np.testing.assert_array_equal(ids, [2, 3, 1, 2, 0, 3])
    assert vocab.decode(ids) == "ab_a\nb"
    with pytest.raises(ValueError, match="single characters"):
        Vocab(("ab",), "char")
    with pytest.raises(ValueError, match="unique"):
        Vocab(("a", "a"), "word")


# ---- the named corpora on the shared data ------------------------------------------------------


@pytest.fixture(scope="module")
def shared():
    """load_corpus on the shared data, each corpus loaded once."""
    cache = {}

    def load(name, **kw):
        key = (name, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = load_corpus(name, data_dir=SHARED_DATA, **kw)
        return cache[key]

    return load


@needs_shared
def test_ptb_word_counts(shared):
    corpus = shared("ptb")
    assert corpus.vocab.level == "word" and len(corpus.vocab) == 10_000
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (929_589, 73_760, 82_430)
    assert corpus.train.dtype == np.int32
    assert corpus.vocab.tokens[0] == "the" and "<unk>" in corpus.vocab.index
    first_line = (SHARED_DATA / "ptb.train.txt").read_text().split("\n")[0].split()
    assert corpus.vocab.decode(corpus.train[: len(first_line) + 1]) == " ".join(first_line) + "\n"
    assert not corpus.train.flags.writeable


@needs_shared
def test_ptb_char_has_50_symbols_with_eos(shared):
    corpus = shared("ptb-char")
    assert len(corpus.vocab) == 50 and EOS in corpus.vocab.index and corpus.vocab.level == "char"
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (
        5_017_482,
        393_042,
        442_423,
    )
    assert corpus.train.dtype == np.uint8
    line = (SHARED_DATA / "ptb.char.valid.txt").read_text().split("\n")[0]
    assert (
        corpus.vocab.decode(corpus.valid[: len(line.split()) + 1]) == "".join(line.split()) + "\n"
    )


@needs_shared
@pytest.mark.parametrize(
    "name, filename, size",
    [("tinyshakespeare", "tinyshakespeare.txt", 65), ("anna", "anna.txt", 83)],
)
def test_char_corpora_split_90_5_5(shared, name, filename, size):
    corpus = shared(name)
    text = (SHARED_DATA / filename).read_text()
    assert len(corpus.vocab) == size and corpus.train.dtype == np.uint8
    n = len(text)
    assert (len(corpus.train), len(corpus.valid)) == (n * 90 // 100, n * 5 // 100)
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) == n
    assert (
        corpus.vocab.decode(corpus.valid)
        == text[len(corpus.train) : len(corpus.train) + len(corpus.valid)]
    )
    assert corpus.vocab.decode(corpus.test[-100:]) == text[-100:]


@needs_shared
def test_anna_notes_the_characters_its_training_split_lacks(shared):
    assert "'$%&*/@'" in shared("anna").note


@needs_shared
def test_anna_upstream_crlf_copy_is_checked_and_converted(tmp_path, shared):
    lf = (SHARED_DATA / "anna.txt").read_bytes()
    (tmp_path / "anna.txt").write_bytes(lf.replace(b"\n", b"\r\n"))  # the upstream bytes
    corpus = load_corpus("anna", data_dir=tmp_path)
    np.testing.assert_array_equal(corpus.test, shared("anna").test)


@needs_shared
def test_text8_head_file_streams_into_uint8(monkeypatch):
    chunk = 1 << 18
    monkeypatch.setattr(sources, "CHUNK_BYTES", chunk)
    tracemalloc.start()
    try:
        corpus = load_corpus("text8", data_dir=SHARED_DATA)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert corpus.train.dtype == np.uint8 and len(corpus.vocab) == 27
    assert corpus.vocab.tokens == tuple(" " + ALPHABET)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (9_000_000, 500_000, 500_000)
    assert "head" in corpus.note and "90/5/5" in corpus.note
    # one uint8 array of the file's size plus a few chunks, never a second copy of the text
    assert peak < 10_000_000 + 8 * chunk, f"peak {peak:,} bytes for a 10 MB file"


@needs_shared
def test_text8_tutorial_split_validates_on_the_first_1000_chars():
    corpus = load_corpus("text8", data_dir=SHARED_DATA, split="tutorial")
    with open(SHARED_DATA / "text8.head10M.txt") as f:
        head = f.read(1100)
    assert corpus.vocab.decode(corpus.valid) == head[:1000]
    assert corpus.vocab.decode(corpus.train[:100]) == head[1000:1100]
    assert len(corpus.train) == 10_000_000 - 1000 and corpus.test is None


# ---- the default corpus ------------------------------------------------------------------------


def test_default_corpus_is_deterministic_real_english():
    from pydoc_data.topics import topics

    corpus = load_corpus("default")
    again = load_corpus("default")
    assert corpus.vocab == again.vocab
    np.testing.assert_array_equal(corpus.train, again.train)
    text = corpus.vocab.decode(np.concatenate([corpus.train, corpus.valid, corpus.test]))
    assert text == "\n\n".join(topics[k] for k in sorted(topics))
    assert len(text) > 200_000 and corpus.train.dtype == np.uint8
    words = text.lower().split()
    assert words.count("the") > 2000 and words.count("is") > 1000
    assert len(corpus.train) == len(text) * 90 // 100


# ---- unknown characters ------------------------------------------------------------------------


@pytest.fixture
def small_text8(tmp_path, monkeypatch):
    """A data dir with a 'text8' file of the given bytes (its expected size patched to match)."""

    def make(data: bytes) -> pathlib.Path:
        (tmp_path / "text8").write_bytes(data)
        patch_source(monkeypatch, "text8", size=len(data))
        return tmp_path

    return make


def test_text8_character_outside_the_alphabet_is_an_error_or_mapped(small_text8):
    data_dir = small_text8("abc deF gh\né ij".encode() * 100)
    with pytest.raises(FieldError, match=r"character 'F' \(U\+0046\) at offset 6 ") as err:
        load_corpus("text8", data_dir=data_dir)
    assert err.value.field == "data.unknown"
    assert 'Set data.unknown="map"' in str(err.value) and "as are 299 more" in str(err.value)
    assert "not the published" not in str(err.value)  # its (patched) size matches
    corpus = load_corpus("text8", data_dir=data_dir, unknown="map", split="tutorial")
    text = corpus.vocab.decode(np.concatenate([corpus.valid, corpus.train]))
    assert text == "abc de  gh   ij" * 100  # F, newline and é each become one space
    assert "300 characters outside a-z and space mapped to ' '" in corpus.note


def test_text8_full_file_of_the_wrong_size_is_an_error(tmp_path):
    (tmp_path / "text8").write_bytes(b"abc " * 10)
    with pytest.raises(ValueError, match="40 bytes with sha256 [0-9a-f]{64}, expected 100,000,000"):
        load_corpus("text8", data_dir=tmp_path)
    with pytest.raises(ValueError, match="40 bytes with sha256 [0-9a-f]{64}, expected 100,000,000"):
        load_corpus("text8", data_dir=tmp_path, unknown="map")  # nothing to map: still an error


def test_ptb_word_outside_the_training_vocabulary_is_an_error_or_unk(tmp_path, monkeypatch):
    texts = {"train": " a b <unk> \n b a \n", "valid": " a zebra \n", "test": " b \n"}
    for split, text in texts.items():
        filename = f"ptb.{split}.txt"
        (tmp_path / filename).write_text(text)
        patch_source(monkeypatch, filename, sha256=sha256(text.encode()))
    with pytest.raises(FieldError, match="'zebra' at position 1 .*set data.unknown=\"map\"") as err:
        load_corpus("ptb", data_dir=tmp_path)
    assert err.value.field == "data.unknown"
    corpus = load_corpus("ptb", data_dir=tmp_path, unknown="map")
    assert corpus.vocab.decode(corpus.valid) == "a <unk>\n"
    assert "1 valid/test words outside it mapped to <unk>" in corpus.note


# ---- files: missing, corrupt, downloaded ----------------------------------------------------------


def test_missing_file_in_the_data_dir_names_file_checksum_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("ptb", data_dir=tmp_path)
    message = str(err.value)
    source = source_of("ptb.train.txt")
    for part in ("ptb.train.txt", source.sha256, source.url, str(tmp_path), "LSTMJAX_DATA_DIR"):
        assert part in message


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"data dir {tmp_path} \\(from LSTMJAX_DATA_DIR\\)"):
        load_corpus("tinyshakespeare")


def test_offline_download_error_names_file_checksum_and_where_to_put_it(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("tinyshakespeare")  # the offline fixture makes every download fail
    message = str(err.value)
    source = source_of("tinyshakespeare.txt")
    for part in ("could not download", source.url, source.sha256, "LSTMJAX_DATA_DIR", str(cache)):
        assert part in message
    assert list(cache.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_corpus("anna", download=False)


def test_checksum_mismatch_in_the_data_dir_is_an_error(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\nBefore we proceed\n")
    with pytest.raises(ValueError) as err:
        load_corpus("tinyshakespeare", data_dir=tmp_path)
    expected = source_of("tinyshakespeare.txt").sha256
    got = sha256((tmp_path / "tinyshakespeare.txt").read_bytes())
    assert f"33 bytes with sha256 {got}, expected 1,115,394 bytes with sha256 {expected}" in str(
        err.value
    )
    assert "karpathy/char-rnn" in str(err.value) and "LSTMJAX_DATA_DIR" in str(err.value)
    assert f'set data.data_dir="{tmp_path}"' in str(err.value)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Serve bytes at the URL of the corpus file ``filename`` (its expected sha256 and size
    patched)."""

    def serve(filename: str, body: bytes, **expected) -> pathlib.Path:
        source = patch_source(monkeypatch, filename, **expected)

        def open_url(url):
            assert url == source.url
            return io.BytesIO(body)

        monkeypatch.setattr(sources, "_open_url", open_url)
        return tmp_path / "cache"

    return serve


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_of(filename: str) -> Source:
    """The registry's record of the corpus file ``filename``."""
    return next(s for entry in CORPORA.values() for alternatives in entry.files
                for s in alternatives if s.filename == filename)


def patch_source(monkeypatch, filename: str, **changes) -> Source:
    """For the test, the registry entry that holds the file ``filename`` with ``changes`` to its
    record; returns the new record."""
    entry = next(e for e in CORPORA.values()
                 if any(s.filename == filename for alternatives in e.files for s in alternatives))
    files = tuple(tuple(dataclasses.replace(s, **changes) if s.filename == filename else s
                        for s in alternatives) for alternatives in entry.files)
    monkeypatch.setitem(CORPORA, entry.name, dataclasses.replace(entry, files=files))
    return source_of(filename)


def test_download_from_a_local_file_url_is_verified_and_cached(tmp_path, monkeypatch):
    body = b"To be, or not to be, that is the question:\n" * 40
    origin = tmp_path / "input.txt"
    origin.write_bytes(body)
    patch_source(monkeypatch, "tinyshakespeare.txt", url=origin.as_uri(), sha256=sha256(body))
    monkeypatch.setattr(sources, "_open_url", urllib.request.urlopen)  # file:// only
    cache = tmp_path / "downloads"
    corpus = load_corpus("tinyshakespeare", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == ["tinyshakespeare.txt"]
    assert (cache / "tinyshakespeare.txt").read_bytes() == body
    assert corpus.vocab.decode(corpus.train[:12]) == "To be, or no"
    origin.unlink()  # the second load reads the cache
    again = load_corpus("tinyshakespeare", cache_dir=cache, download=False)
    np.testing.assert_array_equal(again.test, corpus.test)


def test_corrupt_download_is_never_left_in_the_cache(served):
    cache = served("ptb.train.txt", b"not the treebank\n", sha256="0" * 64)
    with pytest.raises(ValueError, match="expected 0000") as err:
        load_corpus("ptb")
    assert "nothing was saved" in str(err.value)
    assert list(cache.iterdir()) == []


def test_anna_download_checks_the_raw_crlf_bytes_then_stores_lf(served):
    lf = b"Chapter 1\n\n\nHappy families are all alike.\n" * 30
    crlf = lf.replace(b"\n", b"\r\n")
    cache = served("anna.txt", crlf, raw_sha256=sha256(crlf), sha256=sha256(lf))
    corpus = load_corpus("anna")
    assert (cache / "anna.txt").read_bytes() == lf and "\r" not in corpus.vocab.tokens
    served("anna.txt", lf, raw_sha256=sha256(crlf), sha256=sha256(lf))
    (cache / "anna.txt").unlink()
    with pytest.raises(ValueError, match="has sha256 .* expected " + sha256(crlf)):
        load_corpus("anna")  # the served bytes are not the upstream ones
    assert list(cache.iterdir()) == []


def zip_bytes(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
    return buffer.getvalue()


def test_text8_download_unzips_the_member_after_checking_sizes(served):
    text = b" anarchism originated as a term of abuse" * 100
    archive = zip_bytes("text8", text)
    cache = served("text8", archive, zip_size=len(archive), size=len(text))
    corpus = load_corpus("text8", split="tutorial")
    assert [p.name for p in cache.iterdir()] == ["text8"]
    assert corpus.vocab.decode(corpus.valid) == text[:1000].decode()
    assert sha256(text) in corpus.note  # no sha256 is known for text8: the note records it
    (cache / "text8").unlink()
    served("text8", archive, zip_size=len(archive) + 1, size=len(text))
    with pytest.raises(ValueError, match=f"{len(archive):,} bytes, expected {len(archive) + 1:,}"):
        load_corpus("text8")
    assert list(cache.iterdir()) == []


def test_bad_arguments_list_the_choices():
    with pytest.raises(FieldError, match=re.escape(
            "data.corpus='wikitext' is neither one of ('default', 'text8', 'tinyshakespeare', "
            "'anna', 'ptb', 'ptb-char', 'text') nor the path")) as err:
        load_corpus("wikitext")
    assert err.value.field == "data.corpus"
    with pytest.raises(FieldError, match=re.escape(
            'data.split="tutorial" exists only for data.corpus="text8", got data.corpus="ptb"; '
            'use data.split="standard"')) as err:
        load_corpus("ptb", split="tutorial")
    assert err.value.field == "data.split"
    with pytest.raises(FieldError, match="data.unknown must be one of") as err:
        load_corpus("text8", unknown="drop")
    assert err.value.field == "data.unknown"
    assert tuple(CORPORA) == ("default", "text8", "tinyshakespeare", "anna", "ptb", "ptb-char")


# ---- the registry: a corpus is one entry ---------------------------------------------------------


def test_a_new_corpus_is_one_registry_entry(tmp_path, monkeypatch):
    """An entry with a local file and its sha256 serves DataConfig and load_corpus, no other edit:
    the file is found, checked, read and split by the entry's reader."""
    text = "a toy corpus, one char a token\n" * 3  # 93 chars
    (tmp_path / "toy.txt").write_text(text)
    toy = NamedCorpus("toy", "a test's text", "char_text", files=((
        Source("toy.txt", sha256(text.encode()), len(text), None, derived_from="a test's text"),),))
    monkeypatch.setitem(CORPORA, "toy", toy)
    data = Config.from_dict({"data": {"corpus": "toy", "data_dir": str(tmp_path)}}).data
    corpus = load_corpus(data)
    assert corpus.name == "toy" and whole(corpus) == text and split_sizes(corpus) == (83, 4, 6)
    assert f"toy: read from {tmp_path / 'toy.txt'}" in corpus.note
    np.testing.assert_array_equal(load_corpus(**dataclasses.asdict(data)).test, corpus.test)
    with pytest.raises(FieldError, match='only for data.corpus="text8", got data.corpus="toy"'):
        DataConfig(corpus="toy", split="tutorial")
    with pytest.raises(FileNotFoundError, match=r"toy: toy.txt is not in the cache .* it has no "
                                                "download of its own: it is a test's text"):
        load_corpus("toy", download=False)
    (tmp_path / "toy.txt").write_text(text.upper())
    with pytest.raises(ValueError, match=f"93 bytes with sha256 .*, expected 93 bytes with sha256 "
                                         f"{sha256(text.encode())} for toy.txt"):
        load_corpus(data)


def test_every_entry_has_a_reader_and_the_files_it_reads():
    from lstmjax.data.catalog import Reader
    from lstmjax.data.corpora import READERS
    from lstmjax.data.options import SPLITS, CorpusName

    assert set(READERS) == set(get_args(Reader))
    files_read = {"pydoc_topics": 0, "char_text": 1, "ptb": 3, "text8": 1}
    filenames = []
    for entry in CORPORA.values():
        assert len(entry.files) == files_read[entry.reader], entry.name
        assert "standard" in entry.splits and entry.level in ("char", "word"), entry.name
        for alternatives in entry.files:
            assert alternatives and alternatives[0].url, entry.name  # the first is downloadable
            for source in alternatives:
                assert source.sha256 or source.size, source  # something to check
                assert source.url or source.derived_from, source  # somewhere to get it
                filenames.append(source.filename)
    assert len(filenames) == len(set(filenames))  # one data dir holds them all
    assert get_args(CorpusName) == (*CORPORA, "text") and SPLITS == ("standard", "tutorial")


# ---- your own text: corpus="text" ---------------------------------------------------------------

LINES = "the cat sat\nthe dog ran\n"  # 8 words with <eos>; 24 chars


def split_sizes(corpus):
    return len(corpus.train), len(corpus.valid), len(corpus.test)


def whole(corpus):
    return corpus.vocab.decode(np.concatenate([corpus.train, corpus.valid, corpus.test]))


def test_text_file_at_char_level_keeps_every_character_split_90_5_5(tmp_path, monkeypatch):
    text = LINES * 5 + "ünïcode\r\n"  # 129 chars, CRLF kept as it is, a BOM dropped
    (tmp_path / "my.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    monkeypatch.chdir(tmp_path)
    corpus = load_corpus("text", path="my.txt")  # relative: from the current directory
    assert corpus.name == "text" and corpus.vocab.level == "char"
    assert corpus.vocab.tokens == tuple(sorted(set(text))) and "\r" in corpus.vocab.tokens
    assert split_sizes(corpus) == (116, 6, 7)  # 129 * 90 // 100, 129 * 5 // 100, the rest
    assert whole(corpus) == text and corpus.train.dtype == np.uint8
    assert not corpus.train.flags.writeable
    assert str(tmp_path / "my.txt") in corpus.note and sha256(text.encode()) in corpus.note
    assert "3 seen only in valid/test: '\\rïü'" in corpus.note  # the last line is held out


def test_text_folder_reads_txt_files_recursively_in_path_order(tmp_path):
    files = {
        "b.txt": "b" * 20,  # no final newline: the next file starts on a new line
        "a.txt": "a" * 20 + "\n",
        "sub/c.txt": "c" * 20,
        "b.md": "not text",  # not *.txt
        ".hidden/d.txt": "dddd",  # hidden folder
        "sub/.e.txt": "eeee",  # hidden file
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "empty.txt").write_text("")  # adds nothing, not even a newline
    corpus = load_corpus("text", path=tmp_path)
    text = "a" * 20 + "\n" + "b" * 20 + "\n" + "c" * 20  # a, b, (empty), sub/c: 62 chars
    assert whole(corpus) == text
    assert corpus.vocab.tokens == ("\n", "a", "b", "c")
    assert split_sizes(corpus) == (55, 3, 4)  # 90% = 55, 5% = 3, the rest
    assert "4 *.txt files in path order: a.txt, b.txt, empty.txt, ... sub/c.txt" in corpus.note


def test_text_too_short_for_the_split_names_the_size_and_the_need(tmp_path):
    (tmp_path / "short.txt").write_text("a" * 39)
    with pytest.raises(FieldError, match="holds 39 characters: too short") as err:
        load_corpus("text", path=tmp_path / "short.txt")
    assert err.value.field == "data.path"
    for part in ("at least 40", "train.batch_size * (train.seq_len + 1)", 'data.path="'):
        assert part in str(err.value)
    (tmp_path / "short.txt").write_text("a" * 40)
    assert split_sizes(load_corpus("text", path=tmp_path / "short.txt")) == (36, 2, 2)
    (tmp_path / "short.txt").write_text(LINES * 4)  # 40 chars, but 32 words
    with pytest.raises(ValueError, match=r"holds 32 words \(<eos> included\): too short"):
        load_corpus("text", path=tmp_path / "short.txt", level="word")


def test_text_word_level_maps_rare_and_unseen_words_to_unk(tmp_path):
    train = "a a a b b c\n" * 6  # 42 tokens: a x18, b x12, c x6, <eos> x6
    held_out = "a d\nb\n"  # 5 tokens: d is seen only here
    (tmp_path / "words.txt").write_text(train + held_out)
    corpus = load_corpus("text", path=tmp_path / "words.txt", level="word")
    assert split_sizes(corpus) == (42, 2, 3)  # 47 tokens
    assert corpus.vocab.tokens == ("a", "b", EOS, "c", UNK)  # ties by word; <unk> counts 0
    assert corpus.vocab.decode(np.concatenate([corpus.valid, corpus.test])) == "a <unk>\nb\n"
    assert "words mapped to <unk>: train 0, valid 1, test 0" in corpus.note
    rare = load_corpus("text", path=tmp_path / "words.txt", level="word", min_count=7)
    assert rare.vocab.tokens == ("a", "b", EOS, UNK)  # <unk>: c (x6) and d; <eos> kept
    assert rare.vocab.decode(rare.train[:8]) == "a a a b b <unk>\na"
    assert "seen at least 7 times" in rare.note and "train 6, valid 1, test 0" in rare.note


def test_text_is_loaded_the_same_from_a_saved_config(tmp_path, monkeypatch):
    """What a resumed run does: read config.json back and load the corpus from the same dir."""
    (tmp_path / "books").mkdir()
    for i in range(3):
        (tmp_path / "books" / f"{i}.txt").write_text(f"book {i}\n" + LINES * (i + 1))
    monkeypatch.chdir(tmp_path)
    config = Config(data=DataConfig(corpus="text", path="books", level="word"))
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["data"]["path"] == "books"  # stored as given
    data = Config.from_dict(saved).data
    first = load_corpus(**dataclasses.asdict(config.data))
    again = load_corpus(**dataclasses.asdict(data))
    assert first.vocab == again.vocab and first.vocab.level == "word"
    for a, b in zip(split_sizes(first), split_sizes(again), strict=True):
        assert a == b
    np.testing.assert_array_equal(
        np.concatenate([first.train, first.valid, first.test]),
        np.concatenate([again.train, again.valid, again.test]),
    )
    assert sum(split_sizes(first)) == 3 * 3 + 6 * 8  # "book i <eos>" + LINES 1+2+3 times


def test_load_corpus_takes_a_data_config_or_its_fields(tmp_path):
    (tmp_path / "my.txt").write_text(LINES * 5)  # 40 words
    data = DataConfig(corpus="text", path=tmp_path / "my.txt", level="word")
    assert data.path == str(tmp_path / "my.txt")  # a Path is kept as a str, as config.json has it
    first = load_corpus(data)
    for again in (load_corpus(**dataclasses.asdict(data)),
                  load_corpus("text", path=tmp_path / "my.txt", level="word")):
        assert again.vocab == first.vocab and again.note == first.note
        np.testing.assert_array_equal(again.train, first.train)
    with pytest.raises(TypeError, match="unexpected keyword argument 'vocab'"):
        load_corpus("text", path=data.path, vocab="words")
    with pytest.raises(TypeError, match="a DataConfig or its fields, not both"):
        load_corpus(data, level="char")


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"corpus": "text"}, "path",
         'data.corpus="text" trains on your own text, named by data.path'),
        ({"corpus": "ptb", "path": "my.txt"}, "path", 'data.path="my.txt" is for your own text'),
        ({"corpus": "text8", "level": "word"}, "level",
         'data.level="word" applies to data.corpus="text"'),
        ({"corpus": "anna", "min_count": 3}, "min_count",
         'data.min_count=3 applies to data.corpus="text"'),
        ({"corpus": "text", "path": "x", "min_count": 2}, "min_count",
         "applies to word level only"),
        ({"corpus": "text", "path": "x", "unknown": "map"}, "unknown",
         'leave data.unknown="error"'),
        ({"corpus": "text", "path": "x", "data_dir": "d"}, "data_dir", "unset data.data_dir"),
        ({"corpus": "text", "path": "x", "level": "byte"}, "level", "data.level must be one of"),
        ({"corpus": "text", "path": "x", "level": "word", "min_count": 0}, "min_count",
         "data.min_count must"),
        ({"corpus": "text", "path": "x", "split": "tutorial"}, "split",
         'data.split="tutorial" exists only for data.corpus="text8", got data.corpus="text"'),
    ],
)
def test_data_options_are_checked_by_config_and_loader_alike(fields, field, message):
    for make in (DataConfig, load_corpus):
        with pytest.raises(FieldError, match=re.escape(message)) as err:
            make(**fields)
        assert err.value.field == f"data.{field}"


def test_text_path_errors_name_the_field_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match='data.path="missing.txt": no such file') as err:
        load_corpus("text", path="missing.txt")
    assert str(tmp_path / "missing.txt") in str(err.value) and str(tmp_path) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r'data.path="empty": the folder .* holds no'):
        load_corpus("text", path="empty")
    (tmp_path / "empty" / "notes.md").write_text(LINES * 10)
    (tmp_path / "empty" / ".hidden.txt").write_text(LINES * 10)
    with pytest.raises(FileNotFoundError, match=r"holds no \*.txt file"):
        load_corpus("text", path="empty")
    (tmp_path / "latin1.txt").write_bytes(LINES.encode() + "café\n".encode("latin-1"))
    with pytest.raises(ValueError) as err:
        load_corpus("text", path="latin1.txt")
    for part in (
        f"{tmp_path / 'latin1.txt'} is not UTF-8 text",
        "byte 0xe9 at byte offset 27 (line 3)",
        "iconv -f LATIN1 -t UTF-8 latin1.txt > latin1.utf8.txt",
    ):
        assert part in str(err.value)


# ---- text8's fixed alphabet: the character before the checksum -----------------------------------


def test_text8_head_file_with_a_foreign_character_names_it_not_the_checksum(tmp_path):
    """The head file has a known sha256: a copy with one stray character differs from it, and the
    character, not the checksum, is what the error reports."""
    text = "anarchism originated as a term of abuse " * 50
    (tmp_path / "text8.head10M.txt").write_text(text[:1234] + "é" + text[1235:])
    with pytest.raises(ValueError) as err:
        load_corpus("text8", data_dir=tmp_path)
    message = str(err.value)
    assert "character 'é' (U+00E9) at offset 1,234 is outside text8's 27-symbol" in message
    assert "as are" not in message  # the only one
    assert "the file is not the published one (2,001 bytes with sha256" in message
    assert 'Set data.unknown="map"' in message and 'data.corpus="text" with data.path="' in message
    corpus = load_corpus("text8", data_dir=tmp_path, unknown="map", split="tutorial")
    assert corpus.vocab.decode(np.concatenate([corpus.valid, corpus.train])) == (
        text[:1234] + " " + text[1235:]
    )
    assert "1 characters outside a-z and space mapped" in corpus.note
    assert "not the published file (2,001 bytes with sha256" in corpus.note
    (tmp_path / "text8.head10M.txt").write_text(text)  # only alphabet characters: the checksum
    with pytest.raises(ValueError, match="2,000 bytes with sha256 .* expected 10,000,000 bytes"):
        load_corpus("text8", data_dir=tmp_path, unknown="map")


def test_data_layer_messages_name_config_fields_not_python_arguments(tmp_path, monkeypatch):
    messages = []
    for call in (
        lambda: load_corpus("ptb", data_dir=tmp_path),  # missing file in a data dir
        lambda: load_corpus("anna", split="tutorial"),
        lambda: load_corpus("text"),
    ):
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            call()
        messages.append(str(err.value))
    assert "(from data.data_dir)" in messages[0] and f'data.data_dir="{tmp_path}"' in messages[0]
    for message in messages:
        for python_style in ("data_dir=", "unknown='", "split='", "name=", "load_corpus("):
            assert python_style not in message.replace("data.data_dir=", ""), message


def test_word_vocab_min_count_keeps_frequent_words_and_unk_stands_for_the_rest():
    tokens = ["x", "x", "x", "y", "z", EOS]
    # <unk> counts y and z: 2; <eos> is kept although it is rarer
    assert Vocab.build_words(tokens, min_count=2, unk=UNK).tokens == ("x", UNK, EOS)
    assert Vocab.build_words(tokens, unk=UNK).tokens == ("x", EOS, "y", "z", UNK)  # <unk>: 0
    with pytest.raises(ValueError, match="min_count=2 leaves words out"):
        Vocab.build_words(tokens, min_count=2)


def test_a_path_given_as_the_corpus_means_your_own_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("some text")
    for given in ("notes", "books/", "novel.txt", str(tmp_path / "notes")):
        data = DataConfig(corpus=given, level="word")
        assert (data.corpus, data.path, data.level) == ("text", given, "word")
    with pytest.raises(ValueError, match=r"data.corpus='ptbb' is neither one of \('default', "
                                         r".*\) nor the path of an existing text file or folder"):
        DataConfig(corpus="ptbb")
