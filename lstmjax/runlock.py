"""One trainer per run directory: check that the directory can hold a run, create it, lock it.

:class:`RunLock` holds an exclusive ``fcntl.flock`` on ``<workdir>/train.lock``, whose text is
the holder's pid. The kernel releases the lock when the holder exits or dies (SIGKILL included),
so a lock is never stale: a later trainer takes it over at once. A second trainer on the same
directory fails immediately, naming the holder's pid. (``flock`` is per host: two trainers on
different machines sharing one network file system are not kept apart.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import shutil

from lstmjax.rundir import LOCK_FILE


class RunDirectoryError(ValueError):
    """The run directory cannot be used: a file in its place, not writable, or locked."""


def check_writable_directory(workdir: pathlib.Path) -> None:
    """Raise :class:`RunDirectoryError` unless ``workdir`` is, or can be made, a writable directory.

    Creates nothing: the nearest existing ancestor must be a writable directory.
    """
    if workdir.exists() and not workdir.is_dir():
        raise RunDirectoryError(f"workdir {workdir} is a file, not a directory; pass a directory "
                                "(a new one is created)")
    existing = workdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirectoryError(f"workdir {workdir} cannot be created: {existing} is a file; pass "
                                "a path whose parents are directories")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "workdir" if existing == workdir else f"workdir {workdir} cannot be created:"
        raise RunDirectoryError(f"{what} {existing} is not writable; fix its permissions or pass "
                                "another --workdir")


class RunLock:
    """Context manager: create ``workdir`` if needed and hold its trainer lock.

    On an exception inside the block, a directory that this lock created and that holds nothing
    but the lock file is removed again, so a refused request leaves no trace.

    Raises:
      RunDirectoryError: ``workdir`` (or a parent) is a file, is not writable, or another process
        holds the lock (the message names its pid).
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = pathlib.Path(workdir)
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        check_writable_directory(self.workdir)
        self._created = not self.workdir.exists()
        path = self.workdir / LOCK_FILE
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:  # a read-only file system, or permissions that root ignores
            if self._created and self.workdir.is_dir():
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise RunDirectoryError(f"cannot write to workdir {self.workdir}: {error.strerror}; "
                                    "pass a writable --workdir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirectoryError(
                f"workdir {self.workdir} is in use by another lstmjax train (pid {holder}); wait "
                f"for it to finish, stop it (kill {holder}), or pass another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self._fd is None:
            return
        os.close(self._fd)  # releases the lock
        self._fd = None
        leftovers = [p.name for p in self.workdir.iterdir()] if self.workdir.is_dir() else []
        if exc_type is not None and self._created and leftovers == [LOCK_FILE]:
            shutil.rmtree(self.workdir, ignore_errors=True)
