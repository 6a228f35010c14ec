"""Checkpoints: bit-exact round trips (optax state, typed PRNG key, LSTMState carry), retention of
the last K plus the best, restoring a given step or the best, clear errors, saves that survive
donation, quiet logs, SIGKILL in a subprocess between and during saves, checkpoints written by an
earlier lstmjax, and a save that the file system refuses."""

import errno
import json
import logging
import os
import pathlib
import random
import re
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from benchmarks.failed_saves import refused_writes
from lstmjax import LSTMState, save_errors
from lstmjax.checkpoint import Checkpoints, CheckpointSaveError, DamagedCheckpointError
from lstmjax.orbax_compat import io_errno


@flax.struct.dataclass
class _TrainState:
    """Like train.TrainState: a dataclass pytree."""

    params: dict
    opt_state: tuple
    step: jax.Array
    rng: jax.Array


def _state(step: int, rng: np.random.Generator | None = None, *, hidden: int = 5):
    """A training state like train.py's: params, adam state after one update, step, key, carry."""
    rng = rng or np.random.default_rng(step)
    params = {"layer_0": {"kernel": jnp.asarray(rng.normal(size=(4, 4 * hidden)), jnp.float32),
                          "bias": jnp.asarray(rng.normal(size=(4 * hidden,)), jnp.float32)},
              "head": {"kernel": jnp.asarray(rng.normal(size=(hidden, 7)), jnp.float32)}}
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        opt_state = optimizer.update(grads, optimizer.init(params), params)[1]
    carry = (LSTMState(c=jnp.asarray(rng.normal(size=(2, hidden)), jnp.float32),
                       h=jnp.asarray(rng.normal(size=(2, hidden)), jnp.float32)),)
    train_state = _TrainState(params=params, opt_state=opt_state, step=jnp.int32(step),
                              rng=jax.random.fold_in(jax.random.key(17), step))
    return {"state": train_state, "carry": carry}


def _bits(leaf) -> np.ndarray:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    array = np.asarray(leaf)
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.kind == "f" else array


def _assert_identical(actual, expected):
    """Same structure, dtypes, shapes and bits; the restored leaves are jax.Arrays."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        where = jax.tree_util.keystr(path)
        assert isinstance(a, jax.Array), where
        assert (a.dtype, a.shape) == (b.dtype, b.shape), where
        np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=where)


def _entries(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_is_bit_exact(tmp_path, rng):
    state = _state(3, rng)
    params = state["state"].params
    params["head"]["kernel"] = params["head"]["kernel"].at[0, :3].set(
        jnp.array([jnp.nan, -0.0, 1e-42], jnp.float32))  # NaN, negative zero and a subnormal
    extra = {"position": {"epoch": 1, "window": 37}, "valid_loss": 4.25, "note": None}
    target = jax.eval_shape(lambda: state)
    with Checkpoints(tmp_path / "ckpt") as checkpoints:
        assert checkpoints.save(3, state, extra, metric=4.25)
        restored, restored_extra = checkpoints.restore(target)  # waits for the async write
    _assert_identical(restored, state)
    assert restored_extra == extra
    assert isinstance(restored["carry"][0], LSTMState)
    assert jax.random.key_impl(restored["state"].rng) == jax.random.key_impl(state["state"].rng)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    assert all(leaf.sharding == device for leaf in jax.tree.leaves(restored))

    with Checkpoints(tmp_path / "ckpt") as checkpoints:  # a fresh manager, concrete-array target
        again, _ = checkpoints.restore(_state(0))
    _assert_identical(again, state)
    # The key and the data drawn from it continue exactly.
    np.testing.assert_array_equal(jax.random.normal(again["state"].rng, (4,)),
                                  jax.random.normal(state["state"].rng, (4,)))


def test_save_is_safe_to_donate_after(tmp_path):
    """save() returns after the device-to-host copy, so the training step may donate at once.

    (On CPU that host copy can be a view of the device buffer; JAX then copies instead of donating
    until the write is done. On GPU the donated buffers are reused at once.)"""
    state = _state(5)
    train_step = jax.jit(lambda tree: jax.tree.map(lambda a: a + 1, tree), donate_argnums=0)
    with Checkpoints(tmp_path) as checkpoints:
        checkpoints.save(5, state, {})
        arrays = {"train": state["state"].replace(rng=None), "carry": state["carry"]}
        updated = train_step(arrays)  # while the files are being written
        restored, _ = checkpoints.restore(jax.eval_shape(lambda: _state(0)))
    _assert_identical(restored, _state(5))
    assert int(updated["train"].step) == 6


def test_saving_donated_arrays_raises(tmp_path):
    donated = jnp.ones(3)
    jax.jit(lambda a: a + 1, donate_argnums=0)(donated)
    assert donated.is_deleted()
    with Checkpoints(tmp_path) as checkpoints, pytest.raises(ValueError, match="state leaf w was "
                                                                   "donated"):
        checkpoints.save(1, {"w": donated}, {})


@pytest.mark.parametrize("keep_best", [True, False])
def test_keeps_last_k_plus_best(tmp_path, keep_best):
    metrics = {10: 5.0, 20: 1.0, 30: 4.0, 40: 3.0, 50: 0.5, 60: None, 70: float("nan"), 80: 2.0}
    # keep=2: the two newest, plus the lowest metric so far (NaN and None never count as best).
    best = {10: 10, 20: 20, 30: 20, 40: 20, 50: 50, 60: 50, 70: 50, 80: 50}
    small = {"w": jnp.arange(3.0)}
    with Checkpoints(tmp_path, keep=2, keep_best=keep_best) as checkpoints:
        for step, metric in metrics.items():
            assert checkpoints.save(step, small, {"step": step}, metric=metric)
            checkpoints.wait_until_finished()
            newest = [s for s in metrics if s <= step][-2:]
            expected = sorted({best[step], *newest}) if keep_best else newest
            assert checkpoints.all_steps() == expected, step
            assert _entries(tmp_path) == sorted(map(str, expected)), step
            ranked = [s for s in expected if metrics[s] is not None and not np.isnan(metrics[s])]
            assert checkpoints.best_step() == min(ranked, key=metrics.get, default=None), step
    with Checkpoints(tmp_path, keep=2, keep_best=keep_best) as reopened:  # metrics read from disk
        assert reopened.all_steps() == (sorted({50, 70, 80}) if keep_best else [70, 80])
        assert reopened.best_step() == (50 if keep_best else 80)
        assert reopened.metric(80) == 2.0 and reopened.metric(70) is None
        reopened.save(90, small, {}, metric=0.75)
        reopened.save(100, small, {}, metric=9.0)
        reopened.wait_until_finished()
        assert reopened.all_steps() == ([50, 90, 100] if keep_best else [90, 100])


def test_restore_given_step_best_and_latest(tmp_path):
    target = jax.eval_shape(lambda: _state(0))
    with Checkpoints(tmp_path, keep=5) as checkpoints:
        for step, metric in [(1, 3.0), (2, 1.5), (3, 2.0)]:
            checkpoints.save(step, _state(step), {"step": step}, metric=metric)
        for step, expected in [(1, 1), (3, 3), ("best", 2), ("latest", 3), (None, 3)]:
            restored, extra = checkpoints.restore(target, step=step)
            assert extra == {"step": expected}
            _assert_identical(restored, _state(expected))


def test_save_every_and_force(tmp_path):
    small = {"w": jnp.ones(2)}
    with Checkpoints(tmp_path, save_every=10) as checkpoints:
        assert not checkpoints.save(5, small, {})
        assert checkpoints.save(10, small, {})
        assert checkpoints.save(15, small, {}, force=True)  # e.g. the last step of training
        assert not checkpoints.save(15, small, {}, force=True)  # already saved
        with pytest.raises(ValueError, match="step 12 .* older than the latest checkpoint, step 15"):
            checkpoints.save(12, small, {}, force=True)
        assert checkpoints.all_steps() == [10, 15]


def test_missing_or_empty_directory_raises(tmp_path):
    missing = tmp_path / "nowhere"
    with Checkpoints(missing) as checkpoints:
        assert checkpoints.latest_step() is None and checkpoints.best_step() is None
        with pytest.raises(FileNotFoundError, match=f"{re.escape(str(missing))}.*does not exist.*start fresh"):
            checkpoints.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)})
    assert not missing.exists()  # opening does not create it; the first save does
    with Checkpoints(tmp_path) as checkpoints:
        with pytest.raises(FileNotFoundError, match="is empty"):
            checkpoints.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)})
        checkpoints.save(4, {"w": jnp.ones(2)}, {})
        with pytest.raises(FileNotFoundError, match=r"step 5 .* holds steps \[4\]"):
            checkpoints.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)}, step=5)
        with pytest.raises(ValueError, match="no checkpoint .* has a finite metric"):
            checkpoints.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)}, step="best")


def test_mismatched_target_raises(tmp_path):
    with Checkpoints(tmp_path) as checkpoints:
        checkpoints.save(20, _state(20), {})
        wider = jax.eval_shape(lambda: _state(0, hidden=10))
        with pytest.raises(ValueError, match=r"checkpoint at step 20 .* has "
                           r"state/params/layer_0/kernel float32\[4, 20\], the target makes "
                           r"float32\[4, 40\].*config\.json"):
            checkpoints.restore(wider)
        target = jax.eval_shape(lambda: _state(0))
        target["state"] = target["state"].replace(step=jax.ShapeDtypeStruct((), jnp.float32))
        with pytest.raises(ValueError, match=r"state/step int32\[\], the target makes float32\[\]"):
            checkpoints.restore(target)
        target = jax.eval_shape(lambda: _state(0))
        target["state"] = target["state"].replace(rng=None)
        target["extra_param"] = jax.ShapeDtypeStruct((3,), jnp.float32)
        with pytest.raises(ValueError, match=r"no extra_param .*state/rng key<fry>\[\], which "
                           "the target lacks"):
            checkpoints.restore(target)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="keep must be a positive int"):
        Checkpoints(tmp_path, keep=0)
    with Checkpoints(tmp_path) as checkpoints:
        with pytest.raises(ValueError, match="extra must be a dict of JSON values"):
            checkpoints.save(1, {"w": jnp.ones(2)}, {"bad": object()})
        with pytest.raises(ValueError, match="state leaf w is a str"):
            checkpoints.save(1, {"w": "text"}, {})
        with pytest.raises(ValueError, match="step must be an int >= 0"):
            checkpoints.save(-1, {"w": jnp.ones(2)}, {})
    with pytest.raises(ValueError, match="is closed"):
        checkpoints.save(1, {"w": jnp.ones(2)}, {})


def test_orbax_info_logs_are_dropped(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="absl")
    with Checkpoints(tmp_path) as checkpoints:
        checkpoints.save(1, {"w": jnp.ones(2)}, {}, metric=1.0)
        checkpoints.restore({"w": jax.ShapeDtypeStruct((2,), jnp.float32)})
    assert not [r for r in caplog.records if "orbax" in r.pathname and r.levelno < logging.WARNING]


# ------------------------------------------------------------------------------------------------
# SIGKILL: a child process saves in a loop; it is killed between saves or while one is written.
# ------------------------------------------------------------------------------------------------

CHILD = '''
import os, sys, time
import jax, jax.numpy as jnp, numpy as np


def make_state(step):
    """A few MB that are a deterministic function of the step, so a save takes a while."""
    bits = np.random.default_rng(step).integers(0, 2**32, (768, 1024), dtype=np.uint32)
    return {"big": jnp.asarray(bits[:512].view(np.float32)), "also": jnp.asarray(bits[512:]),
            "rng": jax.random.key(step), "step": jnp.int32(step)}


if __name__ == "__main__":
    from lstmjax.checkpoint import Checkpoints
    directory, mode = sys.argv[1], sys.argv[2]
    progress = open(os.path.join(os.path.dirname(directory), "progress"), "a", buffering=1)
    checkpoints = Checkpoints(directory, keep=2)
    step = checkpoints.latest_step() or 0
    while True:
        step += 1
        checkpoints.save(step, make_state(step), {"step": step}, metric=float(step % 3))
        progress.write(f"saved {step}\\n")  # step - 1 is complete once save(step) returns
        if mode == "pause" and step % 4 == 0:
            checkpoints.wait_until_finished()
            progress.write(f"committed {step}\\n")
            time.sleep(60)
'''


def _run_child(tmp_path: pathlib.Path, mode: str, kill_when) -> int:
    """Start the child, SIGKILL it when ``kill_when(progress_lines)`` says so; return the last
    step known complete (``committed N``, or ``saved N`` minus one)."""
    script, directory, progress = tmp_path / "child.py", tmp_path / "ckpt", tmp_path / "progress"
    script.write_text(CHILD)
    with open(tmp_path / "child.log", "ab") as log:
        child = subprocess.Popen([sys.executable, str(script), str(directory), mode],
                                 stdout=log, stderr=log,  # on CPU: leave an accelerator to us
                                 env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine starts jax slowly
        while True:
            lines = progress.read_text().split() if progress.exists() else []
            if child.poll() is not None:
                raise AssertionError(f"child exited: {(tmp_path / 'child.log').read_text()}")
            if kill_when(lines, directory):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"child made no progress: {lines}")
            time.sleep(0.001)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lines = progress.read_text().split()
    committed = [int(n) for word, n in zip(lines[::2], lines[1::2]) if word == "committed"]
    saved = [int(n) for word, n in zip(lines[::2], lines[1::2]) if word == "saved"]
    return max([*committed, max(saved, default=1) - 1])


def _check_resumes(tmp_path: pathlib.Path, known_complete: int) -> int:
    """The latest step restores exactly; a new manager keeps saving and retiring old steps."""
    make_state = runpy.run_path(str(tmp_path / "child.py"))["make_state"]
    target = jax.eval_shape(lambda: make_state(0))
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        latest = checkpoints.latest_step()
        assert latest is not None and latest >= known_complete
        restored, extra = checkpoints.restore(target)
        assert extra == {"step": latest}
        _assert_identical(restored, make_state(latest))
        best = checkpoints.best_step()
        _assert_identical(checkpoints.restore(target, step=best)[0], make_state(best))
        assert checkpoints.save(latest + 1, make_state(latest + 1), {"step": latest + 1}, metric=9.0)
    with Checkpoints(tmp_path / "ckpt", keep=2) as checkpoints:
        _assert_identical(checkpoints.restore(target)[0], make_state(latest + 1))
        assert len(checkpoints.all_steps()) <= 3
    leftovers = [name for name in _entries(tmp_path / "ckpt") if not name.isdigit()]
    assert not leftovers, leftovers  # tmp dirs of killed saves and the deletion trash are gone
    return latest


def test_sigkill_between_saves_keeps_the_last_checkpoint(tmp_path):
    committed = _run_child(tmp_path, "pause", lambda lines, _: "committed" in lines)
    assert committed == 4
    assert _check_resumes(tmp_path, committed) == 4


def _kill_while_writing(saves: int, delay: float):
    """A ``kill_when``: once ``saves`` saves returned, ``delay`` s after a temporary dir shows."""
    seen_at = []

    def kill_when(lines, directory):
        if lines.count("saved") < saves or not directory.is_dir():
            return False
        if not seen_at and any(".orbax-checkpoint-tmp" in name for name in os.listdir(directory)):
            seen_at.append(time.monotonic())
        return bool(seen_at) and time.monotonic() >= seen_at[0] + delay

    return kill_when


def test_sigkill_during_saves_keeps_the_last_complete_checkpoint(tmp_path):
    """Kill while a step is being written: the first time as soon as its temporary directory
    appears, then at random delays up to 0.1 s (a write takes about that long, so some kills land
    in finalizing or retiring old steps). Each time, resume from what is left and kill again."""
    chooser = random.Random(0)
    killed_mid_write = 0
    for attempt in range(3):
        delay = 0.0 if attempt == 0 else chooser.uniform(0.0, 0.1)
        known_complete = _run_child(tmp_path, "loop", _kill_while_writing(chooser.randint(2, 5), delay))
        killed_mid_write += any(".orbax-checkpoint-tmp" in name
                                for name in os.listdir(tmp_path / "ckpt"))
        _check_resumes(tmp_path, known_complete)
        (tmp_path / "progress").unlink()
    assert killed_mid_write >= 1


# ------------------------------------------------------------------------------------------------
# Damaged checkpoints: verified on restore, skipped with one warning line, moved aside on request.
# ------------------------------------------------------------------------------------------------


def _payload(step: int) -> dict:
    """A small state whose kernel (64 KB of random float32, which zstd hardly shrinks) fills the
    largest data file of its step."""
    rng = np.random.default_rng(step)
    return {"params": {"kernel": jnp.asarray(rng.normal(size=(128, 128)), jnp.float32),
                       "bias": jnp.asarray(rng.normal(size=(128,)), jnp.float32)},
            "rng": jax.random.key(step), "step": jnp.int32(step)}


_TARGET = jax.eval_shape(lambda: _payload(0))
_METRICS = {100: 3.0, 200: 1.0, 300: 2.0}  # best: 200


@pytest.fixture(scope="module")
def _saved(tmp_path_factory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("saved") / "ckpt"
    with Checkpoints(directory, keep=3) as checkpoints:
        for step, metric in _METRICS.items():
            checkpoints.save(step, _payload(step), {"step": step}, metric=metric)
    return directory


@pytest.fixture
def ckpt(_saved, tmp_path) -> pathlib.Path:
    """A fresh copy of steps 100, 200 and 300 to damage."""
    return pathlib.Path(shutil.copytree(_saved, tmp_path / "ckpt"))


def _data_file(ckpt: pathlib.Path, step: int) -> pathlib.Path:
    """The largest OCDBT data file of ``step``: the one holding the kernel's bytes."""
    return max((ckpt / str(step) / "state").glob("**/d/*"), key=lambda path: path.stat().st_size)


def _truncate(ckpt, step):
    path = _data_file(ckpt, step)
    os.truncate(path, path.stat().st_size // 2)


_FAULTS = {  # name: (how to damage a step, the reason given)
    "state removed": (lambda ckpt, step: shutil.rmtree(ckpt / str(step) / "state"),
                      "state item missing"),
    "data truncated": (_truncate, r"state item unreadable \(ValueError: OUT_OF_RANGE: .*\)"),
    "manifest removed": (lambda ckpt, step: (ckpt / str(step) / "state/manifest.ocdbt").unlink(),
                         r"state item unreadable \(ValueError: NOT_FOUND: .*\)"),
    "extra file removed": (lambda ckpt, step: (ckpt / str(step) / "extra/metadata").unlink(),
                           r"extra item unreadable \(FileNotFoundError: File .*/metadata not "
                           r"found\.\)"),
    "layout file removed": (lambda ckpt, step: (ckpt / str(step) / "layout/metadata").unlink(),
                            r"layout item unreadable \(FileNotFoundError: .*"),
}


def _restore(ckpt, **kwargs):
    """``(state, extra, warnings)`` of a restore in a fresh manager."""
    warnings = []
    with Checkpoints(ckpt, keep=3) as checkpoints:
        state, extra = checkpoints.restore(_TARGET, on_warning=warnings.append, **kwargs)
    return state, extra, warnings


@pytest.mark.parametrize("fault", _FAULTS)
def test_damaged_latest_step_falls_back_with_one_line(ckpt, fault):
    damage, reason = _FAULTS[fault]
    damage(ckpt, 300)
    before = sorted(str(p.relative_to(ckpt)) for p in ckpt.rglob("*"))
    state, extra, warnings = _restore(ckpt)
    _assert_identical(state, _payload(200))
    assert extra == {"step": 200}
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert re.fullmatch(f"damaged checkpoint in {re.escape(str(ckpt))}: step 300: {reason}; "
                        "restored step 200 instead, the newest intact one", warnings[0]), warnings
    assert len(warnings[0]) < 400
    assert sorted(str(p.relative_to(ckpt)) for p in ckpt.rglob("*")) == before  # nothing moved


def test_overwritten_bytes_fail_the_checksum(ckpt):
    """8 bytes flipped in the middle of the data file: orbax reads other numbers without an error,
    the checksum catches it."""
    path = _data_file(ckpt, 300)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))
    with ocp.StandardCheckpointer() as raw:  # orbax alone, no verification
        unverified = raw.restore(ckpt / "300" / "state")
    assert not np.array_equal(_bits(unverified["params"]["kernel"]),
                              _bits(_payload(300)["params"]["kernel"])), "the bytes hit no array"
    state, _, warnings = _restore(ckpt)
    _assert_identical(state, _payload(200))
    assert warnings == [f"damaged checkpoint in {ckpt}: step 300: checksum mismatch in "
                        "params/kernel; restored step 200 instead, the newest intact one"]


def test_quarantine_moves_damaged_steps_aside(ckpt):
    """As a trainer resumes: restore, move the damaged steps aside, save their numbers again."""
    shutil.rmtree(ckpt / "300" / "state")
    _truncate(ckpt, 200)
    warnings = []
    with Checkpoints(ckpt, keep=1) as checkpoints:
        state, _ = checkpoints.restore(_TARGET, quarantine=True, on_warning=warnings.append)
        _assert_identical(state, _payload(100))
        assert re.fullmatch(
            rf"damaged checkpoints in {re.escape(str(ckpt))}: step 300: state item missing "
            r"\(moved to _damaged/300\); step 200: state item unreadable \(.*\) \(moved to "
            r"_damaged/200\); restored step 100 instead, the newest intact one", warnings[0])
        assert checkpoints.all_steps() == [100] and checkpoints.best_step() == 100
        for step in (200, 300):
            assert checkpoints.save(step, _payload(step), {"step": step}, metric=9.0)
        checkpoints.wait_until_finished()
        assert checkpoints.all_steps() == [100, 300]  # keep=1 plus the best; _damaged untouched
        shutil.rmtree(ckpt / "300" / "state")  # damaged again: a second copy, not overwritten
        checkpoints.restore(_TARGET, quarantine=True, on_warning=warnings.append)
    assert len(warnings) == 2
    assert "step 300: state item missing (moved to _damaged/300-2)" in warnings[1]
    assert _entries(ckpt) == ["100", "_damaged"]
    assert _entries(ckpt / "_damaged") == ["200", "300", "300-2"]
    assert _entries(ckpt / "_damaged" / "200") == ["_CHECKPOINT_METADATA", "commit_success.txt",
                                                   "extra", "layout", "metrics", "state"]
    with Checkpoints(ckpt) as reopened:
        assert reopened.all_steps() == [100]


def test_best_falls_back_to_the_best_intact_step(ckpt):
    (ckpt / "200" / "extra" / "metadata").unlink()
    state, _, warnings = _restore(ckpt, step="best")
    _assert_identical(state, _payload(300))  # metric 2.0, next after 200's 1.0
    assert re.fullmatch(r"damaged checkpoint in .*: step 200: extra item unreadable \(.*\); "
                        "restored step 300 instead, the best intact one", warnings[0]), warnings


def test_damaged_explicit_step_raises_and_moves_nothing(ckpt):
    shutil.rmtree(ckpt / "300" / "state")
    with Checkpoints(ckpt) as checkpoints:
        with pytest.raises(DamagedCheckpointError, match=r"checkpoint step 300 in .* is damaged: "
                           r"state item missing\. Restore step='latest' to fall back"):
            checkpoints.restore(_TARGET, step=300, quarantine=True, on_warning=pytest.fail)
        _assert_identical(checkpoints.restore(_TARGET, step=100, on_warning=pytest.fail)[0],
                          _payload(100))
    assert _entries(ckpt) == ["100", "200", "300"]


def test_no_intact_step_lists_every_step(ckpt):
    shutil.rmtree(ckpt / "300" / "state")
    _truncate(ckpt, 200)
    (ckpt / "100" / "layout" / "metadata").unlink()
    with Checkpoints(ckpt) as checkpoints:
        with pytest.raises(DamagedCheckpointError, match=r"no intact checkpoint in .* \(every step "
                           r"is damaged\): step 300: state item missing; step 200: state item "
                           r"unreadable \(.*\); step 100: layout item unreadable \(.*\)\. Nothing "
                           "was moved or deleted") as raised:
            checkpoints.restore(_TARGET, quarantine=True, on_warning=pytest.fail)
    assert list(raised.value.reasons) == [300, 200, 100]
    assert _entries(ckpt) == ["100", "200", "300"]


def test_layout_entry_without_an_array_is_damage_and_a_mismatch_is_not(ckpt):
    layout_file = ckpt / "300" / "layout" / "metadata"
    layout = json.loads(layout_file.read_text())
    layout["arrays"]["params/scale"] = {**layout["arrays"]["params/bias"]}
    layout_file.write_text(json.dumps(layout))
    target = {**_TARGET, "params": {**_TARGET["params"], "scale": _TARGET["params"]["bias"]}}
    with Checkpoints(ckpt) as checkpoints:
        with pytest.raises(DamagedCheckpointError, match="step 300 .* is damaged: state item has "
                           "no array for layout entry params/scale"):
            checkpoints.restore(target, step=300)
        # The layout matches no target of steps 100-200: the configuration's error, no fallback.
        with pytest.raises(ValueError, match=r"checkpoint at step 300 .* it has params/scale "
                           r"float32\[128\], which the target lacks") as raised:
            checkpoints.restore(_TARGET, on_warning=pytest.fail)
    assert not isinstance(raised.value, DamagedCheckpointError)


def test_checkpoint_without_checksums_restores_unverified(ckpt, capsys):
    """Layout format 1, written before checksums: restored, said once on stderr."""
    layout_file = ckpt / "300" / "layout" / "metadata"
    layout = json.loads(layout_file.read_text())
    assert layout["format"] == 2 and all(len(e["sha256"]) == 64 for e in layout["arrays"].values())
    for entry in layout["arrays"].values():
        del entry["sha256"]
    layout_file.write_text(json.dumps({**layout, "format": 1}))
    with Checkpoints(ckpt) as checkpoints:
        state, _ = checkpoints.restore(_TARGET)  # on_warning: stderr by default
    _assert_identical(state, _payload(300))
    assert capsys.readouterr().err == (f"warning: checkpoint step 300 in {ckpt} was saved "
                                       "without checksums (by an older lstmjax) and is restored "
                                       "unverified\n")


def test_corrupt_metrics_file_leaves_the_step_unranked(ckpt):
    """orbax 0.12 raises on it while listing steps; here the step only loses its rank."""
    (ckpt / "200" / "metrics" / "metrics").write_text('{"metr')
    with Checkpoints(ckpt) as checkpoints:
        assert checkpoints.all_steps() == [100, 200, 300]
        assert checkpoints.metric(200) is None and checkpoints.best_step() == 300
        _assert_identical(checkpoints.restore(_TARGET, step=200, on_warning=pytest.fail)[0],
                          _payload(200))


# ------------------------------------------------------------------------------------------------
# Checkpoints written by an earlier lstmjax still restore.
# ------------------------------------------------------------------------------------------------

_FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "checkpoint_v2"


def _fixture_state(step: int) -> dict:
    """The state that tests/fixtures/checkpoint_v2 holds for steps 1 and 2 (metrics 2.0 and 1.0),
    written by lstmjax at commit 5083f79 (layout format 2) with ``Checkpoints(..., keep=2)``."""
    return {"params": {"kernel": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) / (step + 1)},
            "rng": jax.random.key(step), "step": jnp.int32(step)}


def test_checkpoints_of_layout_format_2_restore(tmp_path):
    directory = shutil.copytree(_FIXTURE, tmp_path / "ckpt")
    target = jax.eval_shape(lambda: _fixture_state(0))
    with Checkpoints(directory, keep=2) as checkpoints:
        assert checkpoints.all_steps() == [1, 2] and checkpoints.best_step() == 2
        for step in (1, 2):
            state, extra = checkpoints.restore(target, step=step, on_warning=pytest.fail)
            _assert_identical(state, _fixture_state(step))
            assert extra == {"position": {"epoch": 0, "window": step}}


# ------------------------------------------------------------------------------------------------
# A save that the file system refuses: one error naming the file system and the fix.
# ------------------------------------------------------------------------------------------------


def test_a_refused_save_is_one_error(tmp_path, capfd):
    directory = tmp_path / "ckpt"
    small = {"w": jnp.arange(3.0)}
    with Checkpoints(directory) as checkpoints:
        checkpoints.save(1, small, {"step": 1})
        checkpoints.wait_until_finished()
        with refused_writes(directory, errno.ENOSPC):
            with pytest.raises(CheckpointSaveError) as raised:
                checkpoints.save(2, small, {"step": 2})  # raises here or, from the thread, below
                checkpoints.wait_until_finished()
            mount = save_errors.mount_point(directory)
            assert re.fullmatch(
                rf"cannot save checkpoint step 2 in {re.escape(str(directory))}: no space left "
                rf"on device \(ENOSPC\) on the file system mounted at {re.escape(str(mount))} "
                rf"\(\S+ \S+ free of \S+ \S+\); free space on {re.escape(str(mount))}, then run "
                "the same command to resume from step 1", str(raised.value))
            assert isinstance(raised.value, OSError) and raised.value.errno == errno.ENOSPC
            assert _entries(directory) == ["1"]  # the partial save is removed
            assert checkpoints.all_steps() == [1]
        assert checkpoints.save(2, small, {"step": 2})  # space is freed
        restored, extra = checkpoints.restore(jax.eval_shape(lambda: small), step=1)
    np.testing.assert_array_equal(restored["w"], small["w"])
    assert extra == {"step": 1}
    with Checkpoints(directory) as reopened:
        assert reopened.all_steps() == [1, 2]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # no traceback from orbax, asyncio or threads


def test_a_partial_save_written_again_late_is_removed_too(tmp_path):
    """TensorStore finishes a failed save's abandoned writes after orbax raised, recreating the
    directory they write into (seen in CI): the removal waits until none has come back."""
    partial = tmp_path / "2.orbax-checkpoint-tmp"
    (partial / "state.orbax-checkpoint-tmp").mkdir(parents=True)
    (tmp_path / "1").mkdir()
    written_late = threading.Event()

    def write_late():
        while partial.exists():  # until the first removal
            time.sleep(0.001)
        time.sleep(0.05)
        partial.mkdir()  # one mkdir: it cannot meet a removal half way
        written_late.set()

    late_writer = threading.Thread(target=write_late)
    late_writer.start()
    save_errors.remove_partial_saves(tmp_path, quiet_for=1.0)  # slack for a loaded machine
    late_writer.join()
    assert written_late.is_set()
    assert _entries(tmp_path) == ["1"]


def test_an_unwritable_directory_is_one_error(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(save_errors.os, "access", lambda path, mode: False)
    with Checkpoints(tmp_path / "ckpt") as checkpoints:
        with pytest.raises(CheckpointSaveError, match=r"cannot save checkpoint step 3 in .*ckpt: "
                           r"permission denied \(EACCES\) .*; make .*ckpt writable for this user, "
                           r"then run the same command to start again \(no checkpoint was written "
                           r"yet\)$"):
            checkpoints.save(3, {"w": jnp.ones(2)}, {})
        assert checkpoints.all_steps() == []
    assert capfd.readouterr() == ("", "")


def test_io_errno_reads_orbax_errors():
    assert io_errno(OSError(errno.EROFS, "Read-only file system")) == errno.EROFS
    tensorstore = ValueError('RESOURCE_EXHAUSTED: Failed writing: "/x/d/a5": Failed to write 3252 '
                             "bytes to file 7: No space left on device [os_error_code='28']")
    assert io_errno(tensorstore) == errno.ENOSPC
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = tensorstore
    assert io_errno(wrapped) == errno.ENOSPC
    assert io_errno(ValueError("NOT_FOUND: no such key")) is None
    assert io_errno(TimeoutError("no errno")) is None
