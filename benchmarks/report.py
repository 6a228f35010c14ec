"""What every benchmark shares: the runner contract, timing, memory, one process per measurement,
the environment record, JSON and tables.

A *runner* is one implementation of one training step (lstmjax's engines or a peer library) on
one shape. Benchmarks time ``runner.step()``, which returns only once the device has finished.
Each measurement runs in a fresh process (:func:`run_measurement`), so that no compiled program,
cache or memory peak of one leaks into the next.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]  # where ``python -m benchmarks.x`` runs


class Unavailable(Exception):
    """This runner cannot run here (library missing, needs a GPU, ...); ``str()`` says why."""


@dataclasses.dataclass
class Runner:
    """One training step of one implementation, ready to call.

    Attributes:
      name: the row label, e.g. ``"lstmjax scan"`` or ``"torch nn.LSTM"``.
      step: runs one step (forward, backward, clip, Adam) on a fixed batch and blocks until the
        device is done.
      notes: how it ran, e.g. ``"cuDNN"``, ``"oneDNN"``, ``"unroll=8"``.
    """

    name: str
    step: Callable[[], None]
    notes: str = ""


def time_steps(step: Callable[[], None], *, warmup: int, steps: int) -> dict[str, Any]:
    """Seconds of the first call (compile included), then ``steps`` timed calls after ``warmup``."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first_call_s": first, "step_times_s": times, "median_step_s": statistics.median(times)}


def peak_memory_bytes() -> dict[str, int | None]:
    """Peak device memory of this process (JAX's allocator or torch's, when on a GPU) and peak
    host RSS. Run one measurement per process for a clean peak."""
    device_peak = None
    if "jax" in sys.modules:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        device_peak = stats.get("peak_bytes_in_use")
    if device_peak is None and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            device_peak = torch.cuda.max_memory_allocated()
    host_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"device_peak_bytes": device_peak, "host_peak_bytes": host_kib * 1024}


def peak_of(memory: dict[str, int | None]) -> tuple[int, str]:
    """``(bytes, kind)`` of a :func:`peak_memory_bytes` record (or a row holding one): the device
    peak (kind ``"device"``) where there is one, else the host's (``"host RSS"``)."""
    if memory.get("device_peak_bytes") is not None:
        return memory["device_peak_bytes"], "device"
    return memory["host_peak_bytes"], "host RSS"


class MeasurementFailed(RuntimeError):
    """A measurement's process exited with an error.

    ``str()`` says why in one line (the exception line of its stderr, or the signal that killed
    it); ``log`` is the tail of its stderr.
    """

    def __init__(self, summary: str, log: str):
        super().__init__(summary)
        self.log = log


def run_measurement(module: str, arguments: Sequence[str], *, timeout: float,
                    env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module *arguments`` in a fresh process, from the repository root, and return
    the JSON object on the last line of its stdout (a benchmark's ``--one`` mode prints one).
    ``env``: variables set in that process's environment on top of this one's.

    Raises:
      subprocess.TimeoutExpired: it ran past ``timeout`` seconds (and was killed).
      MeasurementFailed: it exited with an error, or was killed (e.g. out of memory).
    """
    command = [sys.executable, "-m", module, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise MeasurementFailed(_how_it_failed(done), done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _how_it_failed(done: subprocess.CompletedProcess) -> str:
    """The signal that killed the process, else the last exception line of its stderr (JAX prints
    a note after it), else its last line, else its exit status."""
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (exceptions or lines or [f"exit status {done.returncode}"])[-1]


_EXCEPTION_LINE = re.compile(r"[\w.]*(Error|Exception|Exit|Interrupt)\b")  # "ValueError: ..."


def measure_row(row: dict[str, Any], module: str, arguments: Sequence[str], *,
                timeout: float, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """:func:`run_measurement`'s row, or ``row`` saying why there is none: ``"unavailable": "did
    not finish in N s"`` if it timed out, ``"failed": ...`` (:class:`MeasurementFailed`) if it
    failed."""
    try:
        return run_measurement(module, arguments, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**row, "unavailable": f"did not finish in {timeout:g} s"}
    except MeasurementFailed as error:
        return {**row, "failed": str(error)}


def fastest_round(rounds: list[dict]) -> dict:
    """The round with the most tokens/s (or the first, if none ran), with every round's tokens/s
    (``round_tokens_per_s``): a benchmark measured in several rounds keeps each row's fastest."""
    ran = [row for row in rounds if "tokens_per_s" in row]
    if not ran:
        return rounds[0]
    best = max(ran, key=lambda row: row["tokens_per_s"])
    return {**best, "round_tokens_per_s": [row.get("tokens_per_s") for row in rounds]}


def environment() -> dict[str, Any]:
    """Device, backend and library versions, for the JSON record."""
    import jax

    device = jax.devices()[0]
    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "torch", "keras", "tensorflow", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "versions": versions,
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
    }


def write_json(path: str | pathlib.Path, record: dict[str, Any]) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats get 3 significant digits, None prints as a dash."""

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(benchmark: str, fields: Mapping[str, Any], *, quick: bool,
         out: str | pathlib.Path | None, table: Callable[[dict[str, Any]], str]
         ) -> dict[str, Any]:
    """A benchmark's record, ``{"benchmark", "environment": environment(), **fields}``, written
    to ``out`` or by default to ``benchmarks/results/<backend>/<benchmark>.json``
    (``<benchmark>_quick.json`` for a ``--quick`` run), with its Markdown ``table(record)``
    printed. Returns the record."""
    import jax

    record = {"benchmark": benchmark, "environment": environment(), **fields}
    suffix = "_quick" if quick else ""
    out = out or f"benchmarks/results/{jax.default_backend()}/{benchmark}{suffix}.json"
    write_json(out, record)
    print(f"\n{table(record)}\n\nwrote {out}")
    return record
