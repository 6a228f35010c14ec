"""Where corpus files come from: the data dir, the download cache, a verified download.

Each file of a named corpus is a :class:`~lstmjax.data.catalog.Source` of its registry entry: its
name, its sha256 (or, where none is known, its size), its public origin URL and how the download
becomes the stored file. :func:`locate` finds a file, looking in this order:

1. a data directory that the user names (``data.data_dir``, else the environment variable
   ``LSTMJAX_DATA_DIR``): the files must be there, under their names;
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

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple

from lstmjax.data.catalog import Source

ENV_DATA_DIR = "LSTMJAX_DATA_DIR"
ENV_CACHE_DIR = "LSTMJAX_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/lstmjax"
CHUNK_BYTES = 4 << 20  # bytes read at a time when streaming a large file


class CorpusFile(NamedTuple):
    """A corpus file found on disk: its path and the source it must match."""

    path: Path
    source: Source


def locate(
    name: str,
    alternatives: tuple[Source, ...],
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> CorpusFile:
    """The first of ``alternatives`` found on disk (the first of them downloaded if none is).

    Args:
      name: the corpus that wants the file, for the error messages.
      alternatives: the files that serve, in order of preference.
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
        found = _first_in(folder, alternatives)
        if found:
            return found
        via = "data.data_dir" if data_dir is not None else ENV_DATA_DIR
        filenames = " or ".join(s.filename for s in alternatives)
        raise FileNotFoundError(
            f"{name}: {filenames} not found in the data dir {folder} (from {via}). "
            + _where_to_put(alternatives[0], folder)
        )
    cache = _dir_from(cache_dir, ENV_CACHE_DIR) or Path(DEFAULT_CACHE_DIR).expanduser()
    found = _first_in(cache, alternatives)
    if found:
        return found
    source = alternatives[0]
    if not download:
        raise FileNotFoundError(
            f"{name}: {source.filename} is not in the cache {cache} and download=False. "
            + _where_to_put(source, None, cache)
        )
    return CorpusFile(_download(name, source, cache), source)


def _first_in(folder: Path, alternatives: tuple[Source, ...]) -> CorpusFile | None:
    """The first of ``alternatives`` that is a file in ``folder``, or None."""
    return next((CorpusFile(folder / s.filename, s) for s in alternatives
                 if (folder / s.filename).is_file()), None)


def read_text(file: CorpusFile) -> str:
    """The checked UTF-8 text of a corpus file (anna's CRLF upstream copy becomes LF)."""
    path, source = file
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
