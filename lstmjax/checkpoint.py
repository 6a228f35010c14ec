"""Checkpoints: save a training run every few steps and resume it exactly, with orbax.

:class:`Checkpoints` drives one orbax ``CheckpointManager`` as orbax's documentation shows it: each
step is a ``Composite`` of a pytree of arrays (``StandardSave``: params, optimizer state, step,
PRNG key, the carried RNN state) and two JSON items (``JsonSave``: the caller's dict, such as the
data position, and the layout that :mod:`lstmjax.integrity` checks on restore). It keeps the
last ``keep`` steps plus the one with the lowest metric (the validation loss), and restores into
a target from ``jax.eval_shape``, bit for bit, with the target's dtypes, shapes and shardings.
The run's config and vocabulary are JSON files beside the checkpoint directory, written by the
training code.

Layout of ``directory``::

    <step>/state    the arrays (orbax StandardSave: OCDBT + zarr); typed PRNG keys as key data
    <step>/extra    the caller's JSON dict
    <step>/layout   JSON: dtype, shape and sha256 of every saved array (lstmjax.integrity)
    <step>/metrics  orbax's record of the ranking metric: {"metric": float or null}
    <step>.orbax-checkpoint-tmp*   a save in progress, or killed: never restored, removed on open
                    and when a save fails
    _deleted/       steps being removed: ignored, emptied on open, before each save and on close
    _damaged/<step> damaged steps moved aside by ``restore(..., quarantine=True)``: ignored by the
                    step listing (orbax lists only names that are numbers), never emptied

Crash safety: orbax writes a step into a temporary directory and renames it when complete, so a
process killed at any moment (SIGKILL included) leaves only complete steps under their own names.
Old steps are retired only after the newer step is complete, by renaming them into ``_deleted/``
(``todelete_subdir``), so a kill during deletion never leaves a half-deleted step either.

Saves are asynchronous: :meth:`Checkpoints.save` returns once the arrays are copied to host
memory (orbax's blocking device-to-host transfer), and files are written in a background thread.
So the caller may donate or overwrite the saved buffers (``train_step`` donates its state) as soon
as ``save`` returns; :meth:`Checkpoints.close` (or leaving the ``with`` block) waits for the last
write to finish. ``save`` hashes that host copy before it returns (a single-device array caches
it, and orbax writes from the same copy, so no second transfer). sha256 of ptb-large's state,
66M float32 x 3 (params and two Adam moments, 792 MB), takes 0.56 s on one core of a 2-core
x86-64 VM with SHA instructions (1.4 GB/s; ``python -m timeit -s "import hashlib, numpy as np;
a = np.ones(198_000_000, np.float32)" "hashlib.sha256(a).hexdigest()"``) and 2.3 s with them
masked off (``OPENSSL_ia32cap``); a restore hashes what it read once more.

A save that the file system refuses (a full disk, no permission, a read-only mount), in ``save``
itself or in the background write, raises one :class:`CheckpointSaveError` (an OSError) from that
``save``, or from the next ``save``, ``wait_until_finished`` or ``close``: its one-line message
names the file system, the space left and the fix, and the partial save is removed. orbax's own
reports of it (a traceback from each of its threads) are silenced.

Fall-back rules of :meth:`Checkpoints.restore`: for "latest" it tries the steps newest first and
restores the first intact one (:mod:`lstmjax.integrity` says what intact means); for "best" it
tries the steps with a finite metric, lowest first. Steps skipped as damaged are named in one
warning line (``on_warning``, by default stderr). An explicit int step that is damaged raises
:class:`DamagedCheckpointError` (no fallback), and so does finding no intact step, listing every
step tried and its reason. Nothing is ever deleted for being damaged; with ``quarantine=True``
(the trainer, which must save those step numbers again) the damaged steps skipped on the way to
an intact one are moved into ``_damaged/``. A step saved without checksums (layout format 1) is
restored unverified, said in one line.

orbax's step listing (``all_steps``, ``latest_step``) lists any directory named by a number,
whatever it holds, so a damaged step is listed and its retention (LatestN + BestN) counts it as
one of the last ``keep`` (and retires it like any old one); it never sees a quarantined step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Self

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from lstmjax import integrity, orbax_compat
from lstmjax._checks import require_int, require_positive_int
from lstmjax.integrity import DamagedStep
from lstmjax.save_errors import (
    CheckpointSaveError,
    remove_partial_saves,
    require_writable,
    save_error,
)

__all__ = ["CheckpointSaveError", "Checkpoints", "DamagedCheckpointError"]

PyTree = Any

_ITEMS = ("state", "extra", "layout")
_TRASH = "_deleted"  # steps being removed are renamed here first (atomic), then deleted


class DamagedCheckpointError(ValueError):
    """No intact checkpoint to restore; ``reasons`` maps each damaged step tried to why."""

    def __init__(self, message: str, reasons: Mapping[int, str]):
        super().__init__(message)
        self.reasons = dict(reasons)


def _rank(metrics: Any) -> float:
    """Orbax's ranking key for a step's metrics: the metric, with a missing or NaN one worst."""
    value = metrics.get("metric") if isinstance(metrics, Mapping) else None
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


class Checkpoints:
    """Saves and restores a run's checkpoints in ``directory``; keeps the last K plus the best.

    Example::

        with Checkpoints(workdir / "checkpoints", keep=3) as checkpoints:
            if checkpoints.latest_step() is not None:
                target = jax.eval_shape(lambda: {"state": state, "carry": carry})
                # the newest intact step; damaged newer ones are moved aside, saved again later
                restored, extra = checkpoints.restore(target, quarantine=True)
            ...
            checkpoints.save(step, {"state": state, "carry": carry},
                             {"position": {"epoch": 1, "window": 37}}, metric=valid_loss)

    Args:
      directory: where the step directories go; created by the first save, not before.
      keep: how many of the newest steps to keep (>= 1). The newest complete step is never deleted.
      keep_best: also keep the step with the lowest ``metric``, however old.
      save_every: with a number N, ``save`` skips steps that are not multiples of N unless
        ``force=True``; with None (default) every call saves and the caller decides when.
      asynchronous: write files in a background thread (default). ``save`` still blocks until
        the arrays are on the host, so donating them afterwards is safe.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, keep_best: bool = True,
                 save_every: int | None = None, asynchronous: bool = True):
        require_positive_int("keep", keep)
        if save_every is not None:
            require_positive_int("save_every", save_every)
        self.directory = pathlib.Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"checkpoint directory {self.directory} is a file; pass a "
                                     "directory (it is created by the first save)")
        self.keep, self.keep_best, self.save_every = keep, keep_best, save_every
        self._metrics: dict[int, float | None] = {}
        self._closed = False
        self._writing: int | None = None  # the step whose background write is in flight
        self._write_failed = False  # a save failed: orbax stays quiet until close()
        self._quiet_write = contextlib.ExitStack()  # quiet_failures() while a write is in flight
        orbax_compat.quiet_orbax_logs()
        self._empty_trash()  # left by a process killed while deleting old steps
        policies = [checkpoint_managers.LatestN(n=keep)]
        if keep_best:
            policies.append(checkpoint_managers.BestN(
                get_metric_fn=_rank, reverse=True, n=1, keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            create=False,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=asynchronous,
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            best_fn=_rank,  # makes orbax store each step's metrics
            best_mode="min",
            todelete_subdir=_TRASH,
        )
        self._manager = orbax_compat.Manager(self.directory, options=options, item_names=_ITEMS)

    # -- steps ---------------------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        """The steps kept, oldest first (with a save in progress in this process)."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest step, or None when there is none."""
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The kept step with the lowest finite metric (the newest on ties), or None."""
        ranked = self._ranked_steps()
        return ranked[0] if ranked else None

    def _ranked_steps(self) -> list[int]:
        """The steps with a finite metric, best first (the newest first on ties)."""
        ranked = [step for step in self.all_steps() if self._metric(step) is not None]
        return sorted(ranked, key=lambda step: (self._metric(step), -step))

    def metric(self, step: int) -> float | None:
        """The metric saved with ``step`` (None when it had none, or it was not finite)."""
        if step not in self.all_steps():
            raise FileNotFoundError(self._no_step_message(step))
        return self._metric(step)

    def extra(self, step: int) -> dict[str, Any] | None:
        """The JSON dict saved with ``step``, read alone (no arrays); None when it cannot be read
        (a damaged step: :meth:`restore` says what is wrong with it)."""
        if step not in self.all_steps():
            raise FileNotFoundError(self._no_step_message(step))
        try:
            return dict(self._read(step, "extra", ocp.args.JsonRestore()))
        except DamagedStep:
            return None

    def _metric(self, step: int) -> float | None:
        if step not in self._metrics:
            value = _rank(self._manager.metrics(step))
            self._metrics[step] = value if math.isfinite(value) else None
        return self._metrics[step]

    # -- save ----------------------------------------------------------------------------------

    def save(self, step: int, state: PyTree, extra: Mapping[str, Any], *,
             metric: float | None = None, force: bool = False) -> bool:
        """Save ``state`` (a pytree of arrays) and ``extra`` (a JSON dict) as ``step``.

        Returns True if it saved; False if ``save_every`` skips this step (and not ``force``) or
        ``step`` is already saved. Returns once the arrays are copied to the host, so the caller
        may donate them next; the files are written in the background. ``metric`` (lower is
        better; None or NaN never counts as best) ranks the step for ``keep_best``. Older steps
        beyond the last ``keep`` and the best are deleted once this one is complete.

        Raises:
          CheckpointSaveError: the file system refused this save, or the background write of
            the previous one (module docstring).
        """
        self._check_open()
        step = require_int("step", step)
        if not force and self.save_every is not None and step % self.save_every:
            return False
        latest = self.latest_step()
        if latest is not None and step <= latest:
            if step in self.all_steps():
                return False
            raise ValueError(f"cannot save step {step} in {self.directory}: it is older than the "
                             f"latest checkpoint, step {latest}. Resume from the latest step, or "
                             "save into a new directory")
        arrays, layout = integrity.to_saved(state)
        extra = _json_copy(extra, "extra")
        value = None if metric is None else float(metric)
        value = value if value is not None and math.isfinite(value) else None
        self._settle()
        if not self._write_failed:
            self._quiet_write.enter_context(
                orbax_compat.quiet_failures(lambda: self._write_failed))
        with self._save_errors(step):
            self.directory.mkdir(parents=True, exist_ok=True)
            require_writable(self.directory)
            saved = self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(arrays),
                    extra=ocp.args.JsonSave(extra),
                    layout=ocp.args.JsonSave(layout),
                ),
                metrics={"metric": value},
                force=True,  # when to save is decided above
            )
        if saved:
            self._metrics[step] = value
            self._writing = step
        elif not self._write_failed:
            self._quiet_write.close()
        return saved

    @contextlib.contextmanager
    def _save_errors(self, step: int | None) -> Iterator[None]:
        """Turn an I/O error of saving ``step`` (orbax raises a few kinds) into one
        CheckpointSaveError, after removing the partial save; any other error passes as it is."""
        try:
            yield
        except Exception as error:
            code = orbax_compat.io_errno(error)
            self._write_failed = True
            if code is None:
                self._quiet_write.close()  # with the abandoned writes collected first
                self._write_failed = False
                raise
            # Quiet until close(): TensorStore finishes the abandoned writes later.
            orbax_compat.wait_for_failed_writes(self._manager)
            self._metrics.pop(step, None)
            if jax.process_index() == 0:
                remove_partial_saves(self.directory)
            self._manager.reload()  # orbax still lists the step it failed to write
            raise save_error(code, self.directory, step, self.latest_step()) from error

    # -- restore -------------------------------------------------------------------------------

    def restore(self, target: PyTree, *, step: int | Literal["latest", "best"] | None = None,
                on_warning: Callable[[str], None] | None = None, quarantine: bool = False,
                partial: bool = False) -> tuple[PyTree, dict[str, Any]]:
        """Restore a verified step into the structure of ``target``; return ``(state, extra)``.

        "latest" and "best" fall back past damaged steps (module docstring) to the newest, or the
        best, intact one, and say so in one line.

        Args:
          target: a pytree like the saved state, of ``jax.ShapeDtypeStruct`` (from
            ``jax.eval_shape``) or arrays. The restored arrays get its dtypes, shapes and
            shardings (the default device where a leaf has none); the values are the saved bits.
          step: an int; "latest" or None for the newest intact step; "best" for the intact step
            with the lowest metric.
          on_warning: called with one line when damaged steps were skipped (each step, its
            reason, and where it was moved) or the step restored has no checksums (saved before
            they were recorded); default: print the line to stderr.
          quarantine: move each damaged step skipped into ``directory/_damaged/``, so that its
            step number can be saved again (a trainer resuming). Readers (eval, sample) leave it
            False. Nothing is moved when no step is intact.
          partial: restore only the arrays that ``target`` holds (a reader's
            ``{"state": {"params": ..., "step": ...}}``, without the optimizer state): the step's
            other arrays are neither read, nor verified, nor compared with the target.

        Raises:
          FileNotFoundError: no checkpoint in the directory, or none for ``step``.
          ValueError: the target's structure, shapes or dtypes differ from the saved ones, or
            "best" was asked and no step has a finite metric.
          DamagedCheckpointError: the int ``step`` is damaged, or no step tried is intact.
          CheckpointSaveError: the background write of the last save failed.
        """
        self._check_open()
        self._settle()  # a step still being written is complete before it is listed and read
        path_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
        wanted = {integrity.path_name(path): integrity.shape_dtype_sharding(leaf)
                  for path, leaf in path_leaves}
        candidates = self._candidates(step)
        damaged: dict[int, str] = {}
        with orbax_compat.quiet_failures(lambda: bool(damaged)):  # a damaged step's abandoned reads
            for candidate in candidates:
                try:
                    leaves, extra, verified = self._restore_step(candidate, wanted, partial)
                    break
                except DamagedStep as error:
                    damaged[candidate] = str(error)
            else:
                raise DamagedCheckpointError(self._damaged_message(step, damaged), damaged)
        notes = []
        if damaged:
            moved = self._quarantine_all(damaged) if quarantine else {}
            skipped = "; ".join(f"step {s}: {reason}" + (f" (moved to {moved[s]})" if moved else "")
                                for s, reason in damaged.items())
            which = "best" if step == "best" else "newest"
            notes.append(f"damaged checkpoint{'s' * (len(damaged) > 1)} in {self.directory}: "
                         f"{skipped}; restored step {candidate} instead, the {which} intact one")
        if not verified:
            notes.append(f"checkpoint step {candidate} in {self.directory} was saved without "
                         "checksums (by an older lstmjax) and is restored unverified")
        if notes:
            (on_warning or _print_warning)("; ".join(notes))
        return jax.tree_util.tree_unflatten(treedef, leaves), extra

    def _candidates(self, step: int | str | None) -> list[int]:
        """The steps to try for ``step``, in order."""
        steps = self.all_steps()
        if not steps:
            state = "is empty" if self.directory.is_dir() else "does not exist"
            raise FileNotFoundError(
                f"no checkpoint to restore in {self.directory}: the directory {state}. Check the "
                "path, or start fresh by training into it (a run directory without checkpoints "
                "starts at step 0)")
        if step is None or step == "latest":
            return steps[::-1]
        if step == "best":
            ranked = self._ranked_steps()
            if not ranked:
                raise ValueError(f"no checkpoint in {self.directory} has a finite metric to rank "
                                 f"it as best; restore step='latest' or one of {steps}")
            return ranked
        step = require_int("step", step)
        if step not in steps:
            raise FileNotFoundError(self._no_step_message(step))
        return [step]

    def _no_step_message(self, step: int) -> str:
        return (f"no checkpoint for step {step} in {self.directory}; it holds steps "
                f"{self.all_steps()} (pass one of them, 'latest' or 'best')")

    def _damaged_message(self, step: int | str | None, damaged: Mapping[int, str]) -> str:
        if step not in (None, "latest", "best"):
            return (f"checkpoint step {step} in {self.directory} is damaged: {damaged[step]}. "
                    "Restore step='latest' to fall back to the newest intact step, or another "
                    f"of the steps {self.all_steps()}")
        tried = "" if step == "best" else " (every step is damaged)"
        listing = "; ".join(f"step {s}: {reason}" for s, reason in damaged.items())
        fix = "step='latest', " if step == "best" else ""
        return (f"no intact {'ranked ' if step == 'best' else ''}checkpoint in {self.directory}"
                f"{tried}: {listing}. Nothing was moved or deleted; restore {fix}a backup of the "
                "directory, or train from scratch into a new one")

    def _restore_step(self, step: int, wanted: Mapping[str, integrity.Spec], partial: bool
                      ) -> tuple[list[jax.Array], dict[str, Any], bool]:
        """``(leaves in the order of wanted, extra, verified)`` of one step, read and checked;
        with ``partial``, only the arrays of ``wanted``.

        Raises DamagedStep with the reason, or ValueError if the layout does not match ``wanted``.
        """
        missing = [item for item in _ITEMS if not (self.directory / str(step) / item).is_dir()]
        if missing:
            raise DamagedStep(f"{' and '.join(missing)} item{'s' * (len(missing) > 1)} missing")
        version, entries = integrity.layout_entries(
            self._read(step, "layout", ocp.args.JsonRestore()))
        integrity.check_layout(entries, wanted, partial=partial,
                               where=f"step {step} in {self.directory}")
        extra = self._read(step, "extra", ocp.args.JsonRestore())
        abstract = integrity.saved_abstract(wanted, _default_sharding())
        if partial:  # orbax's StandardRestore reads the whole tree or fails
            restore_args = jax.tree.map(
                lambda leaf: ocp.ArrayRestoreArgs(sharding=leaf.sharding, global_shape=leaf.shape,
                                                  dtype=leaf.dtype),
                abstract)
            args = ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args,
                                          partial_restore=True)
        else:
            args = ocp.args.StandardRestore(abstract)
        try:
            state = self._read(step, "state", args)
        except DamagedStep as error:
            absent = self._absent_arrays(step, wanted)
            if not absent:
                raise
            more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
            raise DamagedStep(f"state item has no array for layout entry {absent[0]}{more}"
                              ) from error
        verified = version == integrity.LAYOUT_FORMAT
        leaves = integrity.verified_leaves(state, wanted, entries, verify=verified)
        return leaves, dict(extra), verified

    def _read(self, step: int, item: str, args: ocp.args.CheckpointArgs) -> Any:
        """One item of ``step``; any error reading it (orbax and TensorStore raise many kinds
        for missing, truncated or garbled files) makes the step damaged."""
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except MemoryError:
            raise
        except Exception as error:
            raise DamagedStep(f"{item} item unreadable ({integrity.one_line(error)})") from error

    def _absent_arrays(self, step: int, wanted: Mapping[str, integrity.Spec]) -> list[str]:
        """The names in ``wanted`` that the state item of ``step`` lacks, per orbax's metadata of
        it (empty when that metadata cannot be read either)."""
        try:
            tree = self._manager.item_metadata(step)["state"].tree
        except Exception:  # the metadata file may be as damaged as the rest
            return []
        return integrity.absent_arrays(tree, wanted)

    def _quarantine_all(self, steps: Mapping[int, str]) -> dict[int, str]:
        """Move each damaged step into ``_damaged/``: by process 0 alone, the others waiting
        (several processes share the directory); the paths where they went, relative."""
        if jax.process_index() == 0:
            moved = {step: integrity.quarantine(self.directory, step) for step in steps}
        else:
            moved = {step: f"{integrity.QUARANTINE}/ by process 0" for step in steps}
        for step in steps:
            self._metrics.pop(step, None)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("lstmjax checkpoint quarantine")
        self._manager.reload()
        return moved

    # -- lifetime ------------------------------------------------------------------------------

    def wait_until_finished(self) -> None:
        """Block until the last save is written and old steps are deleted.

        Raises:
          CheckpointSaveError: the file system refused the last save's background write.
        """
        self._check_open()
        self._settle()

    def close(self) -> None:
        """Wait for the last save to be written, then release orbax's threads. Idempotent.

        Raises:
          CheckpointSaveError: the file system refused the last save's background write.
        """
        if self._closed:
            return
        try:
            self._settle()
        finally:
            self._closed = True
            self._manager.close()
            self._quiet_write.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoints({str(self.directory)!r}, keep={self.keep}, keep_best={self.keep_best})"

    def _settle(self) -> None:
        """Wait for the save in flight (its old steps then sit in the trash) and empty the trash;
        a CheckpointSaveError when its write failed. After a failed save, remove again what its
        late writes left."""
        step, self._writing = self._writing, None
        with self._save_errors(step):
            self._manager.wait_until_finished()
        if not self._write_failed:
            self._quiet_write.close()
        elif jax.process_index() == 0:  # a failed save's writes that TensorStore finished late
            remove_partial_saves(self.directory)
        self._empty_trash()

    def _empty_trash(self) -> None:
        # Only called when no save is finalizing, since the finalizer moves steps in here.
        trash = self.directory / _TRASH
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed; open a new Checkpoints on the directory")


def _print_warning(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _default_sharding() -> jax.sharding.Sharding:
    """Where ``jnp.asarray`` puts new arrays: ``jax_default_device``, else the first device."""
    device = getattr(jax.config, "jax_default_device", None)
    if isinstance(device, str):
        device = jax.devices(device)[0]
    return jax.sharding.SingleDeviceSharding(device if isinstance(device, jax.Device)
                                             else jax.devices()[0])


def _json_copy(value: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A deep copy through JSON (so later changes by the caller cannot reach the file)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a dict of JSON values, got {type(value).__name__}")

    def scalar(x):
        if isinstance(x, (np.generic, np.ndarray, jax.Array)) and np.size(x) == 1:
            return np.asarray(x).item()
        raise TypeError(f"{type(x).__name__} is not JSON serializable")

    try:
        return json.loads(json.dumps(value, default=scalar))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a dict of JSON values: {error}") from None
