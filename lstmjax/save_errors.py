"""A save that the file system refused (a full disk, no permission, a read-only mount) as one error.

:class:`CheckpointSaveError` is an OSError with the errno of the failure and a one-line message
that names the checkpoint directory, the file system it is on (its mount point and the space
left there) and the fix: what to change, then run the same command to resume from the newest
checkpoint. :func:`remove_partial_saves` removes what the failed save left behind.
"""

from __future__ import annotations

import errno as errnos
import os
import pathlib
import shutil
import time

PARTIAL = "*.orbax-checkpoint-tmp*"  # a save in progress (orbax writes there, then renames)


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; ``errno`` says why, ``step`` is the step that was not
    saved and ``resume_step`` the newest one on disk (None when there is none)."""

    def __init__(self, message: str, errno: int, step: int, resume_step: int | None):
        super().__init__(message)
        self.errno, self.step, self.resume_step = errno, step, resume_step


def mount_point(path: pathlib.Path) -> pathlib.Path:
    """The mount point of the file system that holds ``path`` (or would: its nearest existing
    ancestor's)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def _size(count: int) -> str:
    """``512 B``, ``600.0 KiB``, ``2.5 GiB``."""
    size, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def save_error(errno: int, directory: pathlib.Path, step: int, resume_step: int | None
               ) -> CheckpointSaveError:
    """The error for saving ``step`` into ``directory`` failing with ``errno``, naming the file
    system and the fix (``resume_step``: the newest step on disk, or None)."""
    mount = mount_point(directory)
    usage = shutil.disk_usage(mount)
    name = errnos.errorcode.get(errno, f"errno {errno}")
    what = f"{os.strerror(errno).lower()} ({name})"
    where = f"the file system mounted at {mount} ({_size(usage.free)} free of {_size(usage.total)})"
    fix = {
        errnos.ENOSPC: f"free space on {mount}",
        errnos.EDQUOT: f"free space within your disk quota on {mount}",
        errnos.EACCES: f"make {directory} writable for this user",
        errnos.EPERM: f"make {directory} writable for this user",
        errnos.EROFS: f"remount {mount} read-write",
    }.get(errno, f"fix {where.split(' (')[0]}")
    then = (f"run the same command to resume from step {resume_step}" if resume_step is not None
            else "run the same command to start again (no checkpoint was written yet)")
    return CheckpointSaveError(f"cannot save checkpoint step {step} in {directory}: {what} on "
                               f"{where}; {fix}, then {then}", errno, step, resume_step)


def require_writable(directory: pathlib.Path) -> None:
    """Raise an OSError (EROFS or EACCES) unless this process may create files in ``directory``:
    checked before a save starts, since orbax creates a step's directory in a background thread
    whose failure leaves the save's other threads waiting."""
    if not os.access(directory, os.W_OK):
        code = errnos.EROFS if os.statvfs(directory).f_flag & os.ST_RDONLY else errnos.EACCES
        raise OSError(code, os.strerror(code), str(directory))


def remove_partial_saves(directory: pathlib.Path, *, quiet_for: float = 0.2,
                         timeout: float = 5.0) -> None:
    """Remove the temporary directories of unfinished saves from ``directory``, again and again
    until none has reappeared for ``quiet_for`` seconds (or ``timeout`` seconds have passed).

    A failed save abandons its other writes, and TensorStore finishes those in its own threads,
    which Python cannot join: each recreates the directories it writes into. Removed once, the
    directory was back after 2 of 40 refused saves on a loaded 2-core machine, and never with
    this wait (``python -m benchmarks.failed_saves``).
    """
    start = quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_for and time.monotonic() - start < timeout:
        partial = list(directory.glob(PARTIAL))
        for path in partial:
            shutil.rmtree(path, ignore_errors=True)
        if partial:
            quiet_since = time.monotonic()
        time.sleep(0.01)
