"""SIGINT and SIGTERM as stop requests that the training loop honours between steps.

A cluster scheduler or a preemptible accelerator sends SIGTERM before it takes the machine; a
user presses Ctrl-C (SIGINT). Inside :class:`StopRequests`, the first of either only records the
request: the loop finishes its step, saves a checkpoint, waits for it to be written and raises
:class:`Interrupted`, whose exit code is the shell's ``128 + signal`` (130 for SIGINT, 143 for
SIGTERM). A second signal exits at once with that code (``os._exit``): orbax writes each
checkpoint into a temporary directory and renames it when complete, so an exit at any moment
leaves the saved steps intact and a half-written one is removed by the next open.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped on a signal after saving; ``exit_code`` is ``128 + signum``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequests:
    """Context manager: while active, SIGINT and SIGTERM set :attr:`signum` instead of stopping.

    ``requested`` turns true at the first signal; a second one prints ``second_signal_message``
    to stderr and exits the process at once. Outside the main thread (where Python cannot install
    handlers) it does nothing and signals keep their default behaviour. The previous handlers are
    restored on exit.
    """

    def __init__(self, second_signal_message: Callable[[int], str] = lambda signum: ""):
        self.signum: int | None = None
        self.elsewhere = False  # the request reached another process of the run (adopt)
        self._second_signal_message = second_signal_message
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def name(self) -> str:
        """``"SIGTERM"`` or ``"SIGINT"`` for the request received (empty when none), and where it
        was received if not here."""
        if self.signum is None:
            return ""
        where = " (received by another process of the run)" if self.elsewhere else ""
        return signal.Signals(self.signum).name + where

    def adopt(self, signum: int) -> None:
        """Take on the request ``signum`` that another process of a multi-process run received
        (nothing when this one has its own)."""
        if self.signum is None:
            self.signum, self.elsewhere = signum, True

    def agreed(self, at_log_step: bool, num_processes: int, agree: Callable[[int], int]) -> bool:
        """Whether a stop request ends the run after this step.

        In one process: any request received. With ``num_processes`` > 1: one that any process
        received, only at log steps, where every process calls ``agree(signum or 0)`` (a
        collective that returns the largest: ``lstmjax.parallel.max_over_processes``) and adopts
        its answer. The agreed answer counts, not the local flag: a signal may land during the
        collective.
        """
        if num_processes == 1:
            return self.requested
        if not at_log_step:
            return False
        signum = agree(self.signum or 0)
        if signum:
            self.adopt(signum)
        return bool(signum)

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        message = self._second_signal_message(signum)
        if message:
            print(message, file=sys.stderr, flush=True)
        os._exit(128 + signum)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
