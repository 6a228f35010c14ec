"""A refused checkpoint save: how often its partial directory is left behind, and what it costs.

Each trial saves step 1 of a small state, then saves step 2 while the file system refuses every
file that orbax opens for writing under the checkpoint directory (ENOSPC, as a full disk:
:func:`refused_writes`), which raises one ``CheckpointSaveError``. From the moment the error
returns, the trial watches the directory for ``--watch`` seconds: it counts as *left behind* if a
``*.orbax-checkpoint-tmp*`` directory is there at any time. A failed save abandons its array
writes, and TensorStore finishes them in its own threads, which recreate the directory they write
into; ``lstmjax.save_errors.remove_partial_saves`` waits for them to stop.

``--busy N`` runs N processes that spin on the CPU beside the trials, as a loaded machine (CI's
2 cores under two test workers), where the late writes come latest.

    python -m benchmarks.failed_saves                 # 40 trials beside 4 busy processes
    python -m benchmarks.failed_saves --busy 0        # on an idle machine
    python -m benchmarks.failed_saves --quick         # seconds
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from benchmarks import report
from lstmjax.save_errors import PARTIAL


@contextlib.contextmanager
def refused_writes(directory: pathlib.Path, code: int) -> Iterator[None]:
    """While open, every file that orbax opens for writing under ``directory`` fails with the
    OSError ``code``, as on a full disk (orbax writes its JSON and metadata files through epath,
    in its threads; TensorStore writes the arrays itself and is not refused)."""
    from etils import epath

    path_type = type(epath.Path("/"))
    real_open = path_type.open

    def refusing_open(self, mode="r", **kwargs):
        if "w" in mode and str(self).startswith(str(directory)):
            raise OSError(code, os.strerror(code), str(self))
        return real_open(self, mode, **kwargs)

    path_type.open = refusing_open
    try:
        yield
    finally:
        path_type.open = real_open


def trial(directory: pathlib.Path, *, watch: float) -> dict:
    """One refused save in ``directory``: seconds until the error, and whether a partial
    directory was there at any time in the ``watch`` seconds after it."""
    import jax.numpy as jnp

    from lstmjax.checkpoint import Checkpoints, CheckpointSaveError

    state = {"w": jnp.arange(3.0)}
    with Checkpoints(directory) as checkpoints:
        checkpoints.save(1, state, {"step": 1})
        checkpoints.wait_until_finished()
        with refused_writes(directory, errno.ENOSPC):
            start = time.perf_counter()
            try:
                checkpoints.save(2, state, {"step": 2})
                checkpoints.wait_until_finished()
            except CheckpointSaveError:
                pass
            else:
                raise AssertionError("the refused save did not raise CheckpointSaveError")
            error_s = time.perf_counter() - start
        left_behind = False
        while not left_behind and time.perf_counter() - start - error_s < watch:
            left_behind = any(directory.glob(PARTIAL))
            time.sleep(0.001)
    return {"error_s": error_s, "left_behind": left_behind}


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU while open."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--busy", type=int, default=4, help="processes spinning beside the trials")
    parser.add_argument("--watch", type=float, default=1.0,
                        help="seconds to watch the directory after each error")
    parser.add_argument("--quick", action="store_true", help="3 trials, no load: seconds")
    parser.add_argument("--out", help="JSON path (default: results/<backend>/failed_saves.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.busy, args.watch = 3, 0, 0.2
    with busy_processes(args.busy), tempfile.TemporaryDirectory() as scratch:
        trials = [trial(pathlib.Path(scratch) / str(k), watch=args.watch)
                  for k in range(args.trials)]
    row = {"trials": args.trials, "busy_processes": args.busy, "watch_s": args.watch,
           "left_behind": sum(t["left_behind"] for t in trials),
           "median_error_s": statistics.median(t["error_s"] for t in trials),
           "max_error_s": max(t["error_s"] for t in trials)}
    return report.save("failed_saves", {"rows": [row]}, quick=args.quick, out=args.out,
                       table=table)


def table(record: dict) -> str:
    return report.markdown_table(
        ["trials", "busy processes", "left behind", "seconds to the error (median, max)"],
        [[r["trials"], r["busy_processes"], r["left_behind"],
          f"{r['median_error_s']:.3f}, {r['max_error_s']:.3f}"] for r in record["rows"]])


if __name__ == "__main__":
    main()
