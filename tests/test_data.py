"""The data layer: exact truncated-BPTT windows and resume, vocabularies, the named corpora on the
shared data (skipped where it is absent), and the download path, served locally (no network)."""

import dataclasses
import hashlib
import io
import itertools
import json
import pathlib
import tracemalloc
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from lstmjax.data import (
    CORPORA,
    EOS,
    Position,
    Vocab,
    load_corpus,
    num_windows,
    sources,
    stream,
    windows,
)

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
    assert [p for p, _, _ in got] == [Position(e, w) for e in range(2) for w in range(4)]
    first, second = got[:4], got[4:]
    for (_, x0, y0), (_, x1, y1) in zip(first, second):  # each epoch reads the same windows
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(second[0][1], [[0, 1, 2], [13, 14, 15]])


def test_resume_from_a_saved_position_continues_exactly():
    ids = np.arange(1000) % 37
    n = num_windows(len(ids), 3, 7)
    uninterrupted = list(stream(ids, 3, 7, num_epochs=3))
    k = n + 5  # stop in the second epoch
    saved = json.dumps(uninterrupted[k - 1][0].next(n).to_dict())
    resumed = list(stream(ids, 3, 7, Position.from_dict(json.loads(saved)), num_epochs=3))
    assert len(resumed) == len(uninterrupted) - k
    for (p0, x0, y0), (p1, x1, y1) in zip(uninterrupted[k:], resumed):
        assert p0 == p1
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    tail = list(windows(ids, 3, 7, start=5))  # windows(start=) agrees with the full epoch
    for (x0, y0), (x1, y1) in zip(list(windows(ids, 3, 7))[5:], tail, strict=True):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)


def test_window_longer_than_the_corpus_is_an_error_that_names_the_fix():
    with pytest.raises(ValueError, match="window longer than the corpus") as err:
        next(windows(np.arange(20), 4, 5))
    message = str(err.value)
    for part in ("batch_size=4", "seq_len=5", "has 20", "smaller batch_size or seq_len"):
        assert part in message
    assert num_windows(20, 4, 5) == 0
    assert num_windows(24, 4, 5) == 1  # B*(T+1) tokens give exactly one window
    with pytest.raises(ValueError, match="seq_len"):
        num_windows(100, 2, 0)
    with pytest.raises(ValueError, match="start"):
        next(windows(np.arange(26), 2, 3, start=5))
    with pytest.raises(ValueError, match="epoch"):
        Position.from_dict({"epoch": -1, "window": 0})


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
        source = dataclasses.replace(sources.SOURCES["text8"], size=len(data))
        monkeypatch.setitem(sources.SOURCES, "text8", source)
        return tmp_path

    return make


def test_text8_character_outside_the_alphabet_is_an_error_or_mapped(small_text8):
    data_dir = small_text8("abc deF gh\né ij".encode() * 100)
    with pytest.raises(ValueError, match=r"character 'F' \(byte 0x46\) at offset 6") as err:
        load_corpus("text8", data_dir=data_dir)
    assert "unknown='map'" in str(err.value)
    corpus = load_corpus("text8", data_dir=data_dir, unknown="map", split="tutorial")
    text = corpus.vocab.decode(np.concatenate([corpus.valid, corpus.train]))
    assert text == "abc de  gh   ij" * 100  # F, newline and é each become one space
    assert "300 characters outside a-z and space mapped to ' '" in corpus.note


def test_text8_full_file_of_the_wrong_size_is_an_error(tmp_path):
    (tmp_path / "text8").write_bytes(b"abc " * 10)
    with pytest.raises(ValueError, match="40 bytes, expected 100,000,000"):
        load_corpus("text8", data_dir=tmp_path)


def test_ptb_word_outside_the_training_vocabulary_is_an_error_or_unk(tmp_path, monkeypatch):
    texts = {"train": " a b <unk> \n b a \n", "valid": " a zebra \n", "test": " b \n"}
    for split, text in texts.items():
        filename = f"ptb.{split}.txt"
        (tmp_path / filename).write_text(text)
        source = dataclasses.replace(sources.SOURCES[filename], sha256=sha256(text.encode()))
        monkeypatch.setitem(sources.SOURCES, filename, source)
    with pytest.raises(ValueError, match="'zebra' at position 1.*unknown='map'"):
        load_corpus("ptb", data_dir=tmp_path)
    corpus = load_corpus("ptb", data_dir=tmp_path, unknown="map")
    assert corpus.vocab.decode(corpus.valid) == "a <unk>\n"
    assert "1 valid/test words outside it mapped to <unk>" in corpus.note


# ---- files: missing, corrupt, downloaded ----------------------------------------------------------


def test_missing_file_in_the_data_dir_names_file_checksum_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_corpus("ptb", data_dir=tmp_path)
    message = str(err.value)
    source = sources.SOURCES["ptb.train.txt"]
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
    source = sources.SOURCES["tinyshakespeare.txt"]
    for part in ("could not download", source.url, source.sha256, "LSTMJAX_DATA_DIR", str(cache)):
        assert part in message
    assert list(cache.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_corpus("anna", download=False)


def test_checksum_mismatch_in_the_data_dir_is_an_error(tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("First Citizen:\nBefore we proceed\n")
    with pytest.raises(ValueError, match="does not match the expected 86c4e6aa") as err:
        load_corpus("tinyshakespeare", data_dir=tmp_path)
    assert "karpathy/char-rnn" in str(err.value) and "LSTMJAX_DATA_DIR" in str(err.value)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Serve bytes at the URL of SOURCES[filename] (its expected sha256 and size patched)."""

    def serve(filename: str, body: bytes, **expected) -> pathlib.Path:
        source = dataclasses.replace(sources.SOURCES[filename], **expected)
        monkeypatch.setitem(sources.SOURCES, filename, source)

        def open_url(url):
            assert url == source.url
            return io.BytesIO(body)

        monkeypatch.setattr(sources, "_open_url", open_url)
        return tmp_path / "cache"

    return serve


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_from_a_local_file_url_is_verified_and_cached(tmp_path, monkeypatch):
    body = b"To be, or not to be, that is the question:\n" * 40
    origin = tmp_path / "input.txt"
    origin.write_bytes(body)
    source = dataclasses.replace(
        sources.SOURCES["tinyshakespeare.txt"], url=origin.as_uri(), sha256=sha256(body)
    )
    monkeypatch.setitem(sources.SOURCES, "tinyshakespeare.txt", source)
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
    with pytest.raises(ValueError, match="name must be one of"):
        load_corpus("wikitext")
    with pytest.raises(ValueError, match="only for text8"):
        load_corpus("ptb", split="tutorial")
    with pytest.raises(ValueError, match="unknown must be one of"):
        load_corpus("text8", unknown="drop")
    assert CORPORA == ("default", "text8", "tinyshakespeare", "anna", "ptb", "ptb-char")
