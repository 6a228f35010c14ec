"""Stopping a trainer process: SIGINT and SIGTERM save a checkpoint and exit 130 / 143 with one
line; a second signal exits at once; one trainer per run directory, its lock naming the holder."""

import os
import re
import selectors
import signal
import subprocess
import sys
import time

import pytest
from helpers import trainer_env

from lstmjax.checkpoint import Checkpoints
from lstmjax.presets import PRESETS
from lstmjax.runlock import RunDirectoryError, RunLock
from lstmjax.train import train

_ENV = trainer_env()


def _spawn_trainer(workdir) -> subprocess.Popen:
    """``lstmjax train`` on the tiny preset, long enough to be stopped, a progress line per 5 steps."""
    command = [sys.executable, "-m", "lstmjax", "train", "--preset", "tiny", "--workdir",
               str(workdir), "--train.max-steps", "100000", "--train.eval-every", "100000",
               "--train.log-every", "5", "--train.sample-length", "0"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ENV)


def _wait_for_progress(process, timeout=120.0) -> str:
    """Read the trainer's stdout until its first progress line (``step 5/100000: ...``)."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    output, deadline = b"", time.time() + timeout
    while time.time() < deadline:
        if selector.select(timeout=1.0):
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            output += chunk
            if re.search(rb"^step \d+/100000: loss", output, re.MULTILINE):
                return output.decode()
    process.kill()
    _, err = process.communicate()
    raise AssertionError(f"no progress line from the trainer: {output.decode()!r} {err.decode()!r}")


def _stop(process, signum) -> tuple[int, str]:
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    return process.returncode, err.decode()


@pytest.mark.usefixtures("standard_promotion")
def test_signals_save_and_exit_and_the_run_resumes(tmp_path):
    workdir = tmp_path / "run"
    with _spawn_trainer(workdir) as process:
        header = _wait_for_progress(process)
        assert f"run directory: {workdir} (new run)" in header
        with pytest.raises(RunDirectoryError, match=rf"in use by another lstmjax train \(pid "
                                                    rf"{process.pid}\).*kill {process.pid}"):
            train(PRESETS["tiny"], workdir, progress=False, print_fn=lambda *a: None)
        code, err = _stop(process, signal.SIGINT)
    first = re.fullmatch(r"lstmjax train: interrupted by SIGINT at step (\d+): checkpoint \1 is "
                         r"saved in .*; run the same command again to resume\n", err)
    assert code == 130 and first, err
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        assert checkpoints.latest_step() == int(first.group(1))

    with _spawn_trainer(workdir) as process:  # resumes, then SIGTERM as a scheduler sends it
        header = _wait_for_progress(process)
        assert f"(resuming at step {first.group(1)}: " in header
        code, err = _stop(process, signal.SIGTERM)
    second = re.fullmatch(r"lstmjax train: interrupted by SIGTERM at step (\d+): .*\n", err)
    assert code == 143 and second and int(second.group(1)) > int(first.group(1)), err
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        assert checkpoints.latest_step() == int(second.group(1))


def test_a_second_signal_exits_at_once():
    snippet = (
        "import os, signal, time\n"
        "from lstmjax.preemption import StopRequests\n"
        "with StopRequests(lambda signum: f'{signal.Signals(signum).name} again') as stop:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    assert stop.requested and stop.name() == 'SIGTERM'\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)\n"
    )
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                            env=_ENV, timeout=60)
    assert result.returncode == 130 and result.stderr == "SIGINT again\n"


def test_lock_is_exclusive_and_released(tmp_path):
    workdir = tmp_path / "run"
    with RunLock(workdir):
        assert (workdir / "train.lock").read_text() == f"{os.getpid()}\n"
        # flock locks belong to an open file: a second open, even in this process, is refused
        with pytest.raises(RunDirectoryError, match=rf"pid {os.getpid()}"), RunLock(workdir):
            pass
    with RunLock(workdir):  # released on exit
        pass


def test_a_refused_request_leaves_no_new_directory(tmp_path):
    with pytest.raises(ZeroDivisionError), RunLock(tmp_path / "new"):
        1 / 0  # noqa: B018
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ZeroDivisionError), RunLock(tmp_path / "kept"):
        1 / 0  # noqa: B018
    assert (tmp_path / "kept").is_dir()


def test_unusable_run_directories_are_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirectoryError, match=r"workdir .*file is a file, not a directory"):
        RunLock(tmp_path / "file").__enter__()
    with pytest.raises(RunDirectoryError, match=r"cannot be created: .*file is a file"):
        RunLock(tmp_path / "file" / "run").__enter__()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunDirectoryError, match=r"cannot write to workdir .*Read-only file "
                                                r"system; pass a writable --workdir"):
        RunLock(tmp_path / "ro").__enter__()
