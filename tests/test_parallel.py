"""Data parallelism (lstmjax.parallel): 8 simulated CPU devices train as one device does, and
checkpoints move between device counts bit for bit; two ``lstmjax train`` processes on
localhost train as one process does, log once, and leave checkpoints that one process resumes;
when one of the two is killed, the other fails at once with one clear line, and the last
checkpoint resumes.

The ``test_mesh_*`` tests need 8 devices: :func:`test_on_eight_simulated_devices` runs them in a
pytest subprocess started with ``--xla_force_host_platform_device_count=8`` (the rest of the
suite keeps one device); elsewhere they are skipped, and a host with 8 devices runs them as is.
"""

import dataclasses
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import assert_trees_close, trainer_env

from lstmjax import rundir
from lstmjax.build import build_trainer
from lstmjax.checkpoint import Checkpoints
from lstmjax.data import Position
from lstmjax.metrics import MetricsLog
from lstmjax.parallel import initialize, make_placement
from lstmjax.presets import PRESETS
from lstmjax.train import train

pytestmark = pytest.mark.usefixtures("standard_promotion")

EIGHT = pytest.mark.skipif(jax.device_count() < 8,
                           reason="needs 8 devices: test_on_eight_simulated_devices runs it")
TINY = PRESETS["tiny"]
VOCAB_SIZE = 103  # of the embedded default corpus, which the tiny preset trains on


def _config(**train):
    """The tiny preset with 2 layers and dropout between them (the masks must not depend on
    the device count), batch 8, one log record per step, no sample; and SGD, whose parameters
    differ as the gradients do (Adam divides each gradient by its own running magnitude, so
    that the rounding of a near-zero gradient moves a parameter by up to the learning rate)."""
    settings = {"batch_size": 8, "max_steps": 6, "log_every": 1, "eval_every": 3,
                "eval_batch_size": 8, "sample_length": 0, **train}
    return dataclasses.replace(
        TINY, model=dataclasses.replace(TINY.model, num_layers=2, dropout=0.3),
        optim=dataclasses.replace(TINY.optim, optimizer="sgd", learning_rate=1.0),
        train=dataclasses.replace(TINY.train, **settings))


def _train(config, workdir):
    return train(config, workdir, progress=False, print_fn=lambda line: None)


def _curve(workdir, split="train"):
    """The losses of the run's ``split`` records, in step order."""
    records = [r for r in MetricsLog(workdir / "metrics.jsonl").read() if r["split"] == split]
    return [r["step"] for r in records], np.array([r["loss"] for r in records])


def _restore(workdir, config):
    with Checkpoints(workdir / "checkpoints") as checkpoints:
        return build_trainer(dataclasses.replace(config, model=dataclasses.replace(
            config.model, vocab_size=VOCAB_SIZE)), steps_per_epoch=10, checkpoints=checkpoints)


# -- 8 simulated devices, in a subprocess -------------------------------------------------------

def test_on_eight_simulated_devices():
    env = {**trainer_env(), "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             __file__, "-k", "test_mesh_"], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout[-2000:]


@EIGHT
def test_mesh_eight_devices_train_as_one_and_resume_on_one(tmp_path):
    """The loss curve (dropout included) and parameters of 6 steps on 8 devices are those of 1
    device to float32 tolerance, and so are those of a run saved on 8 at step 3, resumed on 1."""
    for name, num_devices in (("on8", 8), ("on1", 1), ("8then1", 8)):
        _train(_config(num_devices=num_devices, max_steps=3 if name == "8then1" else 6),
               tmp_path / name)
    _train(_config(num_devices=1), tmp_path / "8then1")
    steps, eight = _curve(tmp_path / "on8")
    assert steps == [1, 2, 3, 4, 5, 6]
    for other in ("on1", "8then1"):
        assert _curve(tmp_path / other)[0] == steps
        np.testing.assert_allclose(_curve(tmp_path / other)[1], eight, rtol=1e-5, err_msg=other)
        np.testing.assert_allclose(_curve(tmp_path / other, "valid")[1],
                                   _curve(tmp_path / "on8", "valid")[1], rtol=1e-5, err_msg=other)
        assert_trees_close(_restore(tmp_path / other, _config(num_devices=1)).state.params,
                           _restore(tmp_path / "on8", _config(num_devices=1)).state.params,
                           rtol=1e-4, atol=1e-6, err_msg=other)


@EIGHT
@pytest.mark.parametrize(("saved_on", "restored_on"), [(8, 1), (1, 8)])
def test_mesh_checkpoints_move_between_device_counts_bit_for_bit(tmp_path, saved_on,
                                                                   restored_on):
    """Two steps on ``saved_on`` devices, saved; restored on ``restored_on`` devices, every array
    of the state and the carry is the saved one, bit for bit, placed on the new mesh."""
    config = _config(num_devices=saved_on)
    run = _restore_or_fresh(config)
    state, carry = run.state, run.carry
    rows = np.random.default_rng(0).integers(0, VOCAB_SIZE, (2, 8, 9)).astype(np.int32)
    for window in rows:
        state, carry, _ = run.train_step(state, carry, run.placement.shard_batch(window[:, :-1]),
                                         run.placement.shard_batch(window[:, 1:]))
    with Checkpoints(tmp_path / "checkpoints") as checkpoints:
        rundir.save(checkpoints, 2, state, run.placement.put(carry, run.placement.replicated),
                    Position(0, 2), config, _vocab(), force=True)
    restored = _restore(tmp_path, _config(num_devices=restored_on))
    assert restored.step == 2 and restored.placement.num_devices == restored_on
    saved, loaded = (jax.tree.leaves(jax.tree.map(_bits, (s, c)))
                     for s, c in ((state, carry), (restored.state, restored.carry)))
    assert len(saved) == len(loaded)
    for a, b in zip(saved, loaded, strict=True):
        np.testing.assert_array_equal(a, b)
    assert {len(leaf.sharding.device_set) for leaf in jax.tree.leaves(restored.carry)} == {
        restored_on}


def _restore_or_fresh(config):
    return build_trainer(dataclasses.replace(config, model=dataclasses.replace(
        config.model, vocab_size=VOCAB_SIZE)), steps_per_epoch=10)


def _bits(array):
    """The array's bytes on the host (a PRNG key's key data)."""
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        array = jax.random.key_data(array)
    return np.asarray(array).reshape(-1).view(np.uint8)


def _vocab():
    from lstmjax.data import load_corpus

    return load_corpus(**dataclasses.asdict(TINY.data)).vocab


@EIGHT
def test_mesh_a_batch_that_does_not_split_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"train\.batch_size=6 does not split over the 8 devices.*"
                                         r"train\.num_devices 6"):
        _train(_config(batch_size=6), tmp_path)
    assert not (tmp_path / "config.json").exists()


# -- one process, checks before any device is used -----------------------------------------------

def test_more_devices_than_visible_and_bad_launch_settings_are_errors(monkeypatch):
    with pytest.raises(ValueError, match=rf"train.num_devices={jax.device_count() + 1}, but "
                                         rf"{jax.device_count()} cpu device"):
        make_placement(jax.device_count() + 1)
    monkeypatch.setenv("LSTMJAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="LSTMJAX_NUM_PROCESSES='two' must be a non-negative"):
        initialize()
    monkeypatch.setenv("LSTMJAX_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match=r"process id 2 is outside \[0, 2\)"):
        initialize(process_id=2)
    monkeypatch.delenv("LSTMJAX_NUM_PROCESSES")
    assert initialize() is False  # nothing set: one process, nothing initialized


# -- two processes on localhost ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_pair(workdir, *flags) -> list[subprocess.Popen]:
    """Processes 0 and 1 of one ``lstmjax train`` run on localhost, one CPU device each."""
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "lstmjax", "train", "--preset", "tiny", "--workdir",
               str(workdir), "--train.batch-size", "8", "--train.log-every", "1",
               "--train.eval-batch-size", "8", "--train.sample-length", "0",
               "--coordinator-address", address, "--num-processes", "2", *flags]
    return [subprocess.Popen([*command, "--process-id", str(k)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=trainer_env())
            for k in (0, 1)]


def _finish(processes, timeout) -> list[tuple[int, str, str]]:
    """``(returncode, stdout, stderr)`` of each process; all are killed after ``timeout`` s."""
    deadline, results = time.time() + timeout, []
    try:
        for process in processes:
            out, err = process.communicate(timeout=max(1.0, deadline - time.time()))
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            process.kill()
    return results


def test_two_processes_train_as_one_and_one_process_resumes(tmp_path):
    pair = tmp_path / "pair"
    results = _finish(_spawn_pair(pair, "--train.max-steps", "6", "--train.eval-every", "3"), 240)
    for k, (code, out, err) in enumerate(results):
        assert code == 0, f"process {k}: {out[-2000:]}\n{err[-3000:]}"
    (_, out0, _), (_, out1, _) = results
    assert "devices: 2 processes x 1 cpu device, 4 streams each" in out0
    assert "step 6: valid loss" in out0 and "test perplexity" in out0
    assert "step" not in out1  # process 0 alone prints
    steps, losses = _curve(pair)
    assert steps == [1, 2, 3, 4, 5, 6]  # one record per step: process 0 alone writes the log

    alone = tmp_path / "alone"
    _train(_pair_config(6), alone)
    np.testing.assert_allclose(losses, _curve(alone)[1], rtol=1e-5)
    np.testing.assert_allclose(_curve(pair, "valid")[1], _curve(alone, "valid")[1], rtol=1e-5)
    np.testing.assert_allclose(_curve(pair, "test")[1], _curve(alone, "test")[1], rtol=1e-5)

    _train(_pair_config(8), pair)  # one process resumes the pair's checkpoint at step 6
    _train(_pair_config(8), alone)
    assert _curve(pair)[0] == [1, 2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(_curve(pair)[1], _curve(alone)[1], rtol=1e-5)


def _pair_config(max_steps):
    """The config of the pair's command line, for one process."""
    return dataclasses.replace(TINY, train=dataclasses.replace(
        TINY.train, batch_size=8, log_every=1, eval_batch_size=8, sample_length=0,
        max_steps=max_steps, eval_every=3))


def _wait_for(condition, processes, timeout=180.0):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline and processes[0].poll() is None, _finish(processes, 1)
        time.sleep(0.2)


def test_a_signal_to_one_process_stops_both_and_a_killed_one_fails_the_other(tmp_path):
    """SIGTERM to process 1 alone: both stop at the same step with a checkpoint (exit 143).
    The pair resumes it; SIGKILL of process 1: process 0 fails at once with one line, and the
    newest checkpoint is intact: one process resumes it."""
    flags = ("--train.max-steps", "100000", "--train.eval-every", "100000")
    processes = _spawn_pair(tmp_path, *flags)
    _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and len(_curve(tmp_path)[0]) >= 2,
              processes)
    processes[1].send_signal(signal.SIGTERM)
    results = _finish(processes, 120)
    for k, (code, out, err) in enumerate(results):
        assert code == 128 + signal.SIGTERM, f"process {k}: {out[-2000:]}\n{err[-3000:]}"
    (_, _, err0), (_, _, err1) = results
    stopped = int(re.search(r"interrupted by SIGTERM \(received by another process of the run\) "
                            r"at step (\d+): checkpoint \1 is saved", err0).group(1))
    assert f"process 1 of 2): interrupted by SIGTERM at step {stopped}: checkpoint" in err1

    processes = _spawn_pair(tmp_path, *flags)  # resumes at `stopped`
    _wait_for(lambda: len(_curve(tmp_path)[0]) >= stopped + 2, processes)
    processes[1].send_signal(signal.SIGKILL)
    start = time.time()
    (code, out, err), _ = _finish(processes, 60)
    assert time.time() - start < 60
    assert f"resuming at step {stopped}" in out
    assert code == 1, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("lstmjax train (process 0 of 2): error: "), err[-3000:]
    assert f"start them all again with the same commands to resume from the newest checkpoint " \
           f"in {tmp_path}" in line
    assert "Traceback" not in err
    with Checkpoints(tmp_path / "checkpoints") as saved:
        last = saved.latest_step()
    assert last == stopped
    lines = []
    summary = train(_pair_config(last + 2), tmp_path, progress=False, print_fn=lines.append)
    assert summary["step"] == last + 2
    assert f"resuming at step {last}" in lines[0]  # the newest checkpoint, intact
    assert not [line for line in lines if "damaged" in line]
