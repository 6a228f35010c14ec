"""Workarounds for orbax-checkpoint 0.12 (written against 0.12.8), each deletable on its own.

Each entry says what orbax does, why :mod:`lstmjax.checkpoint` cannot live with it, and how to
tell, after an upgrade, that it is no longer needed (then delete it and its call):

- :class:`Manager`: ``CheckpointManager`` reads every step's ``metrics`` file while it lists the
  steps, and only a missing file is tolerated; a truncated one raises JSONDecodeError and would
  stop every open of the directory. No longer needed when ``test_corrupt_metrics_file_leaves_the_
  step_unranked`` passes with ``ocp.CheckpointManager`` in its place.
- :func:`quiet_orbax_logs`: orbax logs each save and restore step by step at INFO through absl (a
  dozen lines per save in any program that configures logging). No longer needed when
  ``test_orbax_info_logs_are_dropped`` passes without it.
- :func:`quiet_failures`: when a save fails (a full disk) orbax logs the same exception with its
  traceback from each of its threads (four to eight tracebacks) before it raises it, and when a
  read or write fails it abandons the other reads or writes of the step in an event loop it has
  closed, which print through ``sys.unraisablehook`` ("Event loop is closed", or "Exception
  ignored in <coroutine ...>" with a TensorStore spec of 50 lines), tens to hundreds of lines.
  No longer needed when ``test_a_refused_save_is_one_error`` and the damaged-step tests pass,
  with nothing on stderr, without it.
- :func:`wait_for_failed_writes`: when one write of a save fails, orbax raises at once and leaves
  the save's other threads running; each logs the failure with a traceback when it ends, and the
  next two ``wait_until_finished`` (or ``save``) raise it again (the save's error, then its
  ``_CHECKPOINT_METADATA`` write's). No longer needed when, after a failed save,
  ``threading.enumerate()`` holds no orbax thread and ``wait_until_finished`` returns.
- :func:`io_errno`: orbax raises TensorStore's I/O failures as ``ValueError("RESOURCE_EXHAUSTED:
  ... [os_error_code='28']")`` rather than an OSError. No longer needed when a full disk during
  a save raises an OSError with ``errno.ENOSPC`` (then read ``error.errno``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import orbax.checkpoint as ocp

_ORBAX_FILES = f"{os.sep}orbax{os.sep}"


class Manager(ocp.CheckpointManager):
    """orbax's manager, reading a corrupt metrics file as no metrics (the step is unranked)."""

    def metrics(self, step: int) -> Any:
        try:
            return super().metrics(step)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            return None


def io_errno(error: BaseException) -> int | None:
    """The errno of an I/O failure as orbax raises it (an OSError, or TensorStore's ValueError
    carrying ``os_error_code``), looking through explicit causes; None for any other error."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        found = re.search(r"\[os_error_code='(\d+)'\]", str(seen))
        if isinstance(seen, ValueError) and found:
            return int(found.group(1))
        seen = seen.__cause__
    return None


_failures_expected = 0  # how many quiet_failures() are open, in any thread


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO and DEBUG records, and, inside :func:`quiet_failures`, its records of
    an I/O error (which the caller raises itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _ORBAX_FILES not in record.pathname:
            return True
        if record.levelno < logging.WARNING:
            return False
        error = record.exc_info[1] if record.exc_info else None
        return not (_failures_expected and error is not None and io_errno(error) is not None)


def quiet_orbax_logs() -> None:
    """Install the filter of orbax's records on the ``absl`` logger (once per process)."""
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietOrbax())


def _is_abandoned(unraisable: Any) -> bool:
    """An orbax read or write abandoned in a closed event loop."""
    code = getattr(unraisable.object, "cr_code", None)
    return (str(unraisable.exc_value) == "Event loop is closed"
            or _ORBAX_FILES in getattr(code, "co_filename", ""))


_hook_before: Callable[[Any], None] | None = None


def _drop_abandoned(unraisable: Any) -> None:
    if not _is_abandoned(unraisable):
        (_hook_before or sys.__unraisablehook__)(unraisable)


_excepthook_before: Callable[..., None] | None = None


def _drop_closed_loop(kind: type, value: BaseException, traceback: Any) -> None:
    """TensorStore prints an abandoned write's callback into a closed loop through
    ``sys.excepthook`` (``PyErr_Print``), not the unraisable hook."""
    if str(value) != "Event loop is closed":
        (_excepthook_before or sys.__excepthook__)(kind, value, traceback)


def _collect_abandoned() -> None:
    """Collect garbage now, closing the abandoned coroutines in reference cycles, without
    Python's "coroutine ... was never awaited" warning for the writes a failed save never began."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
        gc.collect()


@contextlib.contextmanager
def quiet_failures(failed: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Silence orbax's reports of a failure that the caller reports itself: its log records that
    carry an I/O error, and the abandoned reads and writes that print through
    ``sys.unraisablehook`` (other unraisable errors pass through). On the way out, when
    ``failed()`` or an exception leaves the block, collect garbage first, so that abandoned
    coroutines in reference cycles are closed while the hook is still in place."""
    global _failures_expected, _hook_before, _excepthook_before
    quiet_orbax_logs()
    if _failures_expected == 0:
        _hook_before, sys.unraisablehook = sys.unraisablehook, _drop_abandoned
        _excepthook_before, sys.excepthook = sys.excepthook, _drop_closed_loop
    _failures_expected += 1
    try:
        yield
    except BaseException:
        _collect_abandoned()
        raise
    else:
        if failed():
            _collect_abandoned()
    finally:
        _failures_expected -= 1
        if _failures_expected == 0:
            sys.unraisablehook, _hook_before = _hook_before, None
            sys.excepthook, _excepthook_before = _excepthook_before, None


def wait_for_failed_writes(manager: ocp.CheckpointManager, timeout: float = 2.0) -> None:
    """After a save of ``manager`` failed: take the errors its other writes raise, and wait up to
    ``timeout`` seconds for orbax's threads of it to end (call inside :func:`quiet_failures`)."""
    for _ in range(4):  # the save's error, then its other writes' (each one raised once)
        try:
            manager.wait_until_finished()
            manager._checkpointer.wait_until_finished()  # raises what the manager's did not
            break
        except Exception:
            continue
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if type(thread).__module__.startswith("orbax.") and thread is not threading.current_thread():
            with contextlib.suppress(Exception):  # orbax's threads raise their error in join
                thread.join(max(0.0, deadline - time.monotonic()))
