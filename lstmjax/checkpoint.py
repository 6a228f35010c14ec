"""Checkpoints: save a training run every few steps and resume it exactly, with orbax.

:class:`Checkpoints` wraps one orbax ``CheckpointManager``. Each step it saves holds a pytree of
arrays (params, optimizer state, step, PRNG key, the carried RNN state: anything made of arrays,
NamedTuples, dicts, lists and dataclass pytrees) and a small JSON dict (the data position, metrics).
It keeps the last ``keep`` steps plus the one with the lowest metric (the validation loss), and
restores into a target from ``jax.eval_shape``, bit for bit, with the target's dtypes, shapes and
shardings. The run's config and vocabulary are JSON files beside the checkpoint directory, written
by the training code.

Layout of ``directory``::

    <step>/state    the arrays (orbax StandardSave: OCDBT + zarr); typed PRNG keys as key data
    <step>/extra    the caller's JSON dict
    <step>/layout   JSON: {"format": 2, "arrays": {path: {"dtype", "shape", "sha256"}}}, the
                    dtype, shape and sha256 of every saved array (of its C-order bytes; of the key
                    data for a PRNG key). Format 1, written before checksums, has no "sha256".
    <step>/metrics  orbax's record of the ranking metric: {"metric": float or null}
    <step>.orbax-checkpoint-tmp*   a save in progress, or killed: never restored, removed on open
    _deleted/       steps being removed: ignored, emptied on open, before each save and on close
    _damaged/<step> damaged steps moved aside by ``restore(..., quarantine=True)`` (``<step>-2``,
                    ... when that name is taken): ignored by the step listing, never emptied

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
66M float32 x 3 (params and two Adam moments, 792 MB), takes 0.56 s on one core of this project's
CPU (1.4 GB/s, with SHA instructions; ``python -m timeit -s "import hashlib, numpy as np;
a = np.ones(198_000_000, np.float32)" "hashlib.sha256(a).hexdigest()"``) and 2.3 s with them
masked off (``OPENSSL_ia32cap``); a
restore hashes what it read once more (after a device-to-host copy on an accelerator).

What restore verifies, for each step it tries: the three items are present; the layout, the JSON
dict and every array read back without error (a missing file, a truncated OCDBT or zarr file: any
orbax or TensorStore exception); every array of the layout is in the state item; and each array's
sha256 matches the layout's. A step that fails any of these is *damaged*, with a one-line reason
("state item missing", "checksum mismatch in state/opt_state/1/0/mu/kernel"). A layout that does
not match the target (another configuration) is not damage: it raises a ValueError as before.
A step saved without checksums (layout format 1) is restored unverified, said in one line.

Fallback rules of :meth:`Checkpoints.restore`: for "latest" it tries the steps newest first and
restores the first intact one; for "best" it tries the steps with a finite metric, lowest first.
Steps skipped as damaged are named in one warning line (``on_warning``, by default stderr). An
explicit int step that is damaged raises :class:`DamagedCheckpointError` (no fallback), and so
does finding no intact step, listing every step tried and its reason. Nothing is ever deleted
for being damaged; with ``quarantine=True`` (the trainer, which must save those step numbers
again) the damaged steps skipped on the way to an intact one are moved into ``_damaged/``.

orbax 0.12 quirks this relies on: its step listing (``all_steps``, ``latest_step``) lists any
directory named by a number, whatever it holds (a step missing ``state``, ``_CHECKPOINT_METADATA``
or ``commit_success.txt`` is listed, and restores if its items read), and skips ``_damaged/`` and
any other name; its retention (LatestN + BestN) only ever sees listed steps, so it never deletes
a quarantined step, while a damaged step left in place counts as one of the last ``keep`` (and is
retired like any old one). A step without a ``metrics`` item reads as unranked; a corrupt metrics
file makes orbax raise while listing the steps, so this module reads it as unranked too.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from lstmjax._checks import require_positive_int

PyTree = Any

_ITEMS = ("state", "extra", "layout")
_TRASH = "_deleted"  # steps being removed are renamed here first (atomic), then deleted
_QUARANTINE = "_damaged"  # damaged steps moved aside by restore(quarantine=True); never emptied
_LAYOUT_FORMAT = 2  # 2: a sha256 per array; 1 (older checkpoints): none, restored unverified


class DamagedCheckpointError(ValueError):
    """No intact checkpoint to restore; ``reasons`` maps each damaged step tried to why."""

    def __init__(self, message: str, reasons: Mapping[int, str]):
        super().__init__(message)
        self.reasons = dict(reasons)


class _Damaged(Exception):
    """One step is damaged; the message is the one-line reason."""


class _Manager(ocp.CheckpointManager):
    """orbax's manager, reading a corrupt metrics file as no metrics (the step is unranked).

    orbax 0.12 reads every step's metrics while it lists the steps, and only a missing file is
    tolerated there: a truncated one raises JSONDecodeError and would stop every open."""

    def metrics(self, step: int) -> Any:
        try:
            return super().metrics(step)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            return None


def _rank(metrics: Any) -> float:
    """Orbax's ranking key for a step's metrics: the metric, with a missing or NaN one worst."""
    value = metrics.get("metric") if isinstance(metrics, Mapping) else None
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO and DEBUG records (it logs each save step by step through absl)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def _quiet_orbax() -> None:
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietOrbax())


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
        _quiet_orbax()
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
        self._manager = _Manager(self.directory, options=options, item_names=_ITEMS)

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
        except _Damaged:
            return None

    def _metric(self, step: int) -> float | None:
        if step not in self._metrics:
            metrics = self._manager.metrics(step)
            value = _rank(metrics)
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
        """
        self._check_open()
        step = _as_step(step)
        if not force and self.save_every is not None and step % self.save_every:
            return False
        latest = self.latest_step()
        if latest is not None and step <= latest:
            if step in self.all_steps():
                return False
            raise ValueError(f"cannot save step {step} in {self.directory}: it is older than the "
                             f"latest checkpoint, step {latest}. Resume from the latest step, or "
                             "save into a new directory")
        arrays, layout = _to_saved(state)
        extra = _json_copy(extra, "extra")
        value = None if metric is None else float(metric)
        value = value if value is not None and math.isfinite(value) else None
        self._settle()
        self.directory.mkdir(parents=True, exist_ok=True)
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
        return saved

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
        """
        self._check_open()
        self._settle()  # a step still being written is complete before it is listed and read
        path_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
        wanted = {_path_name(path): _abstract(leaf) for path, leaf in path_leaves}
        candidates = self._candidates(step)
        damaged: dict[int, str] = {}
        with _drop_abandoned_read_errors(damaged):
            for candidate in candidates:
                try:
                    leaves, extra, verified = self._restore_step(candidate, wanted, partial)
                    break
                except _Damaged as error:
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
        step = _as_step(step)
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

    def _restore_step(self, step: int, wanted: Mapping[str, tuple], partial: bool
                      ) -> tuple[list[jax.Array], dict[str, Any], bool]:
        """``(leaves in the order of wanted, extra, verified)`` of one step, read and checked;
        with ``partial``, only the arrays of ``wanted``.

        Raises _Damaged with the reason, or ValueError if the layout does not match ``wanted``.
        """
        missing = [item for item in _ITEMS if not (self.directory / str(step) / item).is_dir()]
        if missing:
            raise _Damaged(f"{' and '.join(missing)} item{'s' * (len(missing) > 1)} missing")
        layout = self._read(step, "layout", ocp.args.JsonRestore())
        version = layout.get("format") if isinstance(layout, Mapping) else None
        entries = layout.get("arrays") if isinstance(layout, Mapping) else None
        if version not in (1, _LAYOUT_FORMAT) or not isinstance(entries, Mapping):
            raise _Damaged(f"layout item is not an lstmjax layout (format {version!r})")
        self._check_layout(step, entries, wanted, partial)
        extra = self._read(step, "extra", ocp.args.JsonRestore())
        abstract = {}
        for name, (shape, dtype, sharding) in wanted.items():
            if _is_key(dtype):  # stored as key data: uint32[..., 2] for threefry
                data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
                shape, dtype = data.shape, data.dtype
            leaf = jax.ShapeDtypeStruct(shape, dtype, sharding=sharding or _default_sharding())
            _insert(abstract, name, leaf)
        try:
            if partial:  # orbax's StandardRestore reads the whole tree or fails
                restore_args = jax.tree.map(
                    lambda leaf: ocp.ArrayRestoreArgs(sharding=leaf.sharding,
                                                      global_shape=leaf.shape, dtype=leaf.dtype),
                    abstract)
                args = ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args,
                                              partial_restore=True)
            else:
                args = ocp.args.StandardRestore(abstract)
            state = self._read(step, "state", args)
        except _Damaged as error:
            absent = self._absent_arrays(step, wanted)
            if not absent:
                raise
            more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
            raise _Damaged(f"state item has no array for layout entry {absent[0]}{more}") from error
        verified = version == _LAYOUT_FORMAT
        leaves, mismatched = [], []
        for name, (_, dtype, _) in wanted.items():
            leaf = _lookup(state, name)
            if verified and _sha256(leaf) != entries[name].get("sha256"):
                mismatched.append(name)
            if _is_key(dtype):
                leaf = jax.random.wrap_key_data(leaf, impl=entries[name]["key_impl"])
            leaves.append(leaf)
        if mismatched:
            more = f" and {len(mismatched) - 1} more arrays" if len(mismatched) > 1 else ""
            raise _Damaged(f"checksum mismatch in {mismatched[0]}{more}")
        return leaves, dict(extra), verified

    def _read(self, step: int, item: str, args: ocp.args.CheckpointArgs) -> Any:
        """One item of ``step``; any error reading it (orbax and TensorStore raise many kinds
        for missing, truncated or garbled files) makes the step damaged."""
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except MemoryError:
            raise
        except Exception as error:
            raise _Damaged(f"{item} item unreadable ({_one_line(error)})") from error

    def _absent_arrays(self, step: int, wanted: Mapping[str, tuple]) -> list[str]:
        """The names in ``wanted`` that the state item of ``step`` lacks, per orbax's metadata of
        it (empty when that metadata cannot be read either)."""
        try:
            tree = self._manager.item_metadata(step)["state"].tree
        except Exception:  # the metadata file may be as damaged as the rest
            return []
        absent = []
        for name in wanted:
            try:
                _lookup(tree, name)
            except (KeyError, TypeError):
                absent.append(name)
        return absent

    def _quarantine_all(self, steps: Mapping[int, str]) -> dict[int, str]:
        """Move each damaged step into ``_damaged/``: by process 0 alone, the others waiting
        (several processes share the directory); the paths where they went, relative."""
        if jax.process_index() == 0:
            moved = {step: self._quarantine(step) for step in steps}
        else:
            moved = {step: f"{_QUARANTINE}/ by process 0" for step in steps}
            for step in steps:
                self._metrics.pop(step, None)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("lstmjax checkpoint quarantine")
        self._manager.reload()
        return moved

    def _quarantine(self, step: int) -> str:
        """Move damaged ``step`` into ``_damaged/`` (never emptied); its path there, relative."""
        folder = self.directory / _QUARANTINE
        folder.mkdir(exist_ok=True)
        name, copy = str(step), 1
        while (folder / name).exists():  # the same step number damaged before
            copy += 1
            name = f"{step}-{copy}"
        (self.directory / str(step)).rename(folder / name)
        self._metrics.pop(step, None)
        return f"{_QUARANTINE}/{name}"

    def _check_layout(self, step: int, saved: Mapping, wanted: Mapping, partial: bool) -> None:
        problems = []
        for name, (shape, dtype, _) in wanted.items():
            entry = saved.get(name)
            if entry is None:
                text = f"it has no {name} (the target expects {_describe(shape, dtype)})"
                problems.append((name, text))
            elif (tuple(entry["shape"]), entry["dtype"]) != (tuple(shape), str(dtype)):
                text = (f"it has {name} {_describe(entry['shape'], entry['dtype'])}, the target "
                        f"makes {_describe(shape, dtype)}")
                problems.append((name, text))
        for name, entry in saved.items():
            if name not in wanted and not partial:
                text = f"it has {name} {_describe(entry['shape'], entry['dtype'])}, which the target lacks"
                problems.append((name, text))
        if problems:
            problems.sort(key=lambda item: (item[0].count("/"), item[0]))  # shallowest first
            problems = [text for _, text in problems]
            shown = "; ".join(problems[:5])
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise ValueError(
                f"checkpoint at step {step} in {self.directory} does not match the target: {shown}"
                f"{more}. Restore with the configuration the run was saved with (its config.json), "
                "or start a new run in an empty directory")

    # -- lifetime ------------------------------------------------------------------------------

    def wait_until_finished(self) -> None:
        """Block until the last save is written and old steps are deleted."""
        self._check_open()
        self._settle()

    def close(self) -> None:
        """Wait for the last save to be written, then release orbax's threads. Idempotent."""
        if self._closed:
            return
        try:
            self._settle()
        finally:
            self._closed = True
            self._manager.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoints({str(self.directory)!r}, keep={self.keep}, keep_best={self.keep_best})"

    def _settle(self) -> None:
        """Wait for the save in flight (its old steps then sit in the trash) and empty the trash."""
        self._manager.wait_until_finished()
        self._empty_trash()

    def _empty_trash(self) -> None:
        # Only called when no save is finalizing, since the finalizer moves steps in here.
        trash = self.directory / _TRASH
        if trash.is_dir():
            shutil.rmtree(trash, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed; open a new Checkpoints on the directory")


# -- pytree <-> saved arrays ---------------------------------------------------------------------


def _as_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    return int(step)


def _path_name(path: tuple) -> str:
    """``params/layer_0/kernel`` for a pytree key path (dict keys, attributes, indices)."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return "/".join(parts) or "value"


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _describe(shape, dtype) -> str:
    return f"{dtype}[{', '.join(str(int(d)) for d in shape)}]"


def _insert(nested: dict, name: str, leaf: Any) -> None:
    *parents, last = name.split("/")
    node = nested
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"two leaves of the state map to the checkpoint name {name!r}; "
                             "rename a key so that no path is a prefix of another")
    if last in node:
        raise ValueError(f"two leaves of the state map to the checkpoint name {name!r} (keys "
                         "that print alike, such as 0 and '0'); rename one")
    node[last] = leaf


def _lookup(nested: Mapping, name: str) -> Any:
    for part in name.split("/"):
        nested = nested[part]
    return nested


def _to_saved(state: PyTree) -> tuple[dict, dict]:
    """The nested dict of arrays that orbax saves, and the layout (dtype, shape, sha256 by path).

    The checksums are of the host copy of each array: all transfers start before the first is
    waited on, and a single-device array keeps its copy, which orbax then writes (no second
    transfer). A sharded array is gathered to the host here, once more than orbax does.
    """
    arrays, layout = {}, {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = _path_name(path)
        if isinstance(leaf, jax.Array):
            if leaf.is_deleted():
                raise ValueError(f"state leaf {name} was donated (deleted) before the save; save "
                                 "the state that the donating step returned, not its input")
        elif isinstance(leaf, (np.ndarray, np.generic, int, float, complex)):
            leaf = jnp.asarray(leaf)  # the dtype jax.eval_shape gives it
        else:
            raise ValueError(f"state leaf {name} is a {type(leaf).__name__}; checkpoints save "
                             "arrays only (put JSON values in `extra`)")
        entry = {"dtype": str(leaf.dtype), "shape": list(leaf.shape)}
        if _is_key(leaf.dtype):
            entry["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            raise ValueError(f"state leaf {name} is split over the devices of several processes; "
                             "checkpoints save whole arrays: replicate it first")
        if leaf.is_fully_addressable:
            leaf.copy_to_host_async()
        _insert(arrays, name, leaf)
        layout[name] = entry
    if not layout:
        raise ValueError("the state to save has no arrays")
    for name, entry in layout.items():
        entry["sha256"] = _sha256(_lookup(arrays, name))
    return arrays, {"format": _LAYOUT_FORMAT, "arrays": layout}


def _sha256(array: jax.Array | np.ndarray) -> str:
    """Hex sha256 of an array's bytes in C order, from its host copy."""
    data = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(data.reshape(-1).view(np.uint8)).hexdigest()


def _one_line(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause of ``error``, at most 200 characters
    (TensorStore's errors run to hundreds of lines; the innermost names the file and the fault)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    lines = str(error).strip().splitlines() or [""]
    text = f"{type(error).__name__}: {lines[0].split(' [tensorstore_spec')[0]}"
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _drop_abandoned_read_errors(damaged: Mapping[int, str]):
    """Silence the array reads that orbax abandons when a damaged step fails to read.

    orbax 0.12 reads all arrays of a step concurrently in one event loop and ends it at the first
    failure; the other reads then fail into the closed loop and print, through
    ``sys.unraisablehook``, a traceback each ("Event loop is closed", or "Exception ignored in
    <coroutine _read_array_index_and_device_put>" with a TensorStore spec of 50 lines), tens to
    hundreds of lines per damaged step. Other unraisable errors pass through. ``damaged``: the
    steps found damaged so far (filled in while this runs).
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if not (str(unraisable.exc_value) == "Event loop is closed"
                or f"{os.sep}orbax{os.sep}" in getattr(code, "co_filename", "")):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        if damaged:
            gc.collect()  # abandoned reads in reference cycles are closed here, not later
        sys.unraisablehook = previous


def _print_warning(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _abstract(leaf: Any) -> tuple[tuple[int, ...], np.dtype, Any]:
    """(shape, dtype, sharding or None) of a target leaf: ShapeDtypeStruct, array or scalar."""
    if isinstance(leaf, (jax.ShapeDtypeStruct, jax.Array)):
        return tuple(leaf.shape), leaf.dtype, leaf.sharding
    if isinstance(leaf, (np.ndarray, np.generic, int, float, complex)):
        return np.shape(leaf), jnp.result_type(leaf), None  # the dtype jnp.asarray gives
    raise ValueError(f"restore target leaf is a {type(leaf).__name__}; pass jax.eval_shape of "
                     "the state (ShapeDtypeStructs) or arrays")


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
