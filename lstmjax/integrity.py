"""What a checkpoint step must hold to be restored: its layout, checksums and the damaged-step rules.

Each step that :class:`lstmjax.checkpoint.Checkpoints` saves has a ``layout`` item beside its
arrays::

    {"format": 2, "arrays": {path: {"dtype", "shape", "sha256"[, "key_impl"]}}}

with the dtype, shape and sha256 of every saved array (of its C-order bytes; of the key data for
a typed PRNG key, whose implementation ``key_impl`` names). ``path`` is the leaf's pytree path
(``state/params/layer_0/kernel``: dict keys, attributes and indices joined by ``/``), which is also
where the array sits in the nested dict that orbax saves. Format 1, written before checksums, has
no "sha256"; such a step is restored unverified.

A step is *damaged* (:class:`DamagedStep`, with a one-line reason) when an item is missing or
unreadable, an array of its layout is absent from its arrays, or an array's sha256 differs from
the layout's. A layout that does not match the restore target is not damage but another
configuration: :func:`check_layout` raises a ValueError. :func:`quarantine` moves a damaged step
aside into ``_damaged/``, never to be emptied.

The functions here are pure, except :func:`quarantine` (a rename) and :func:`sha256` and
:func:`to_saved` (which copy device arrays to the host).
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

LAYOUT_FORMAT = 2  # 2: a sha256 per array; 1 (older checkpoints): none, restored unverified
QUARANTINE = "_damaged"  # damaged steps moved aside by quarantine(); never emptied

Spec = tuple[tuple[int, ...], np.dtype, Any]  # (shape, dtype, sharding or None) of a target leaf


class DamagedStep(Exception):
    """One step is damaged; the message is the one-line reason."""


# -- names of pytree leaves -----------------------------------------------------------------------


def path_name(path: tuple) -> str:
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


def insert(nested: dict, name: str, leaf: Any) -> None:
    """Put ``leaf`` at ``name`` (``a/b/c``) in ``nested``, creating the dicts on the way."""
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


def lookup(nested: Mapping, name: str) -> Any:
    """The leaf at ``name`` (``a/b/c``) in ``nested``; KeyError or TypeError when it is absent."""
    for part in name.split("/"):
        nested = nested[part]
    return nested


def is_key(dtype: Any) -> bool:
    """Whether ``dtype`` is a typed PRNG key's (saved as its key data)."""
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def describe(shape, dtype) -> str:
    """``float32[4, 20]``."""
    return f"{dtype}[{', '.join(str(int(d)) for d in shape)}]"


# -- saving ---------------------------------------------------------------------------------------


def to_saved(state: Any) -> tuple[dict, dict]:
    """The nested dict of arrays that orbax saves, and the layout item (dtype, shape, sha256 by
    path).

    The checksums are of the host copy of each array: all transfers start before the first is
    waited on, and a single-device array keeps its copy, which orbax then writes (no second
    transfer). A sharded array is gathered to the host here, once more than orbax does.
    """
    arrays, layout = {}, {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        name = path_name(path)
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
        if is_key(leaf.dtype):
            entry["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            raise ValueError(f"state leaf {name} is split over the devices of several processes; "
                             "checkpoints save whole arrays: replicate it first")
        if leaf.is_fully_addressable:
            leaf.copy_to_host_async()
        insert(arrays, name, leaf)
        layout[name] = entry
    if not layout:
        raise ValueError("the state to save has no arrays")
    for name, entry in layout.items():
        entry["sha256"] = sha256(lookup(arrays, name))
    return arrays, {"format": LAYOUT_FORMAT, "arrays": layout}


def sha256(array: jax.Array | np.ndarray) -> str:
    """Hex sha256 of an array's bytes in C order, from its host copy."""
    data = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(data.reshape(-1).view(np.uint8)).hexdigest()


# -- restoring ------------------------------------------------------------------------------------


def shape_dtype_sharding(leaf: Any) -> Spec:
    """(shape, dtype, sharding or None) of a restore target's leaf: ShapeDtypeStruct, array or
    scalar."""
    if isinstance(leaf, (jax.ShapeDtypeStruct, jax.Array)):
        return tuple(leaf.shape), leaf.dtype, leaf.sharding
    if isinstance(leaf, (np.ndarray, np.generic, int, float, complex)):
        return np.shape(leaf), jnp.result_type(leaf), None  # the dtype jnp.asarray gives
    raise ValueError(f"restore target leaf is a {type(leaf).__name__}; pass jax.eval_shape of "
                     "the state (ShapeDtypeStructs) or arrays")


def layout_entries(layout: Any) -> tuple[int, Mapping[str, Mapping]]:
    """``(format, {path: entry})`` of a step's layout item; DamagedStep when it is not one."""
    version = layout.get("format") if isinstance(layout, Mapping) else None
    entries = layout.get("arrays") if isinstance(layout, Mapping) else None
    if version not in (1, LAYOUT_FORMAT) or not isinstance(entries, Mapping):
        raise DamagedStep(f"layout item is not an lstmjax layout (format {version!r})")
    return version, entries


def check_layout(entries: Mapping[str, Mapping], wanted: Mapping[str, Spec], *, partial: bool,
                 where: str) -> None:
    """Raise a ValueError naming what differs when the saved arrays (``entries``) do not match
    the target's (``wanted``, by path): another configuration, not damage. With ``partial``, saved
    arrays that the target lacks are fine. ``where``: ``step 20 in /run/checkpoints``."""
    problems = []
    for name, (shape, dtype, _) in wanted.items():
        entry = entries.get(name)
        if entry is None:
            text = f"it has no {name} (the target expects {describe(shape, dtype)})"
            problems.append((name, text))
        elif (tuple(entry["shape"]), entry["dtype"]) != (tuple(shape), str(dtype)):
            text = (f"it has {name} {describe(entry['shape'], entry['dtype'])}, the target "
                    f"makes {describe(shape, dtype)}")
            problems.append((name, text))
    for name, entry in entries.items():
        if name not in wanted and not partial:
            text = f"it has {name} {describe(entry['shape'], entry['dtype'])}, which the target lacks"
            problems.append((name, text))
    if problems:
        problems.sort(key=lambda item: (item[0].count("/"), item[0]))  # shallowest first
        texts = [text for _, text in problems]
        shown = "; ".join(texts[:5])
        more = f"; and {len(texts) - 5} more" if len(texts) > 5 else ""
        raise ValueError(
            f"checkpoint at {where} does not match the target: {shown}{more}. Restore with the "
            "configuration the run was saved with (its config.json), or start a new run in an "
            "empty directory")


def saved_abstract(wanted: Mapping[str, Spec], default_sharding: jax.sharding.Sharding) -> dict:
    """The nested dict of ``jax.ShapeDtypeStruct`` that orbax reads for the target ``wanted``:
    a typed PRNG key as its key data (uint32[..., 2] for threefry), a leaf without a sharding on
    ``default_sharding``."""
    abstract = {}
    for name, (shape, dtype, sharding) in wanted.items():
        if is_key(dtype):
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(shape, dtype))
            shape, dtype = data.shape, data.dtype
        insert(abstract, name, jax.ShapeDtypeStruct(shape, dtype,
                                                    sharding=sharding or default_sharding))
    return abstract


def verified_leaves(state: Mapping, wanted: Mapping[str, Spec], entries: Mapping[str, Mapping], *,
                    verify: bool) -> list[jax.Array]:
    """The leaves of ``wanted`` read from ``state`` (orbax's nested dict), typed PRNG keys
    wrapped again; with ``verify``, DamagedStep unless each one's sha256 is the layout's."""
    leaves, mismatched = [], []
    for name, (_, dtype, _) in wanted.items():
        leaf = lookup(state, name)
        if verify and sha256(leaf) != entries[name].get("sha256"):
            mismatched.append(name)
        if is_key(dtype):
            leaf = jax.random.wrap_key_data(leaf, impl=entries[name]["key_impl"])
        leaves.append(leaf)
    if mismatched:
        more = f" and {len(mismatched) - 1} more arrays" if len(mismatched) > 1 else ""
        raise DamagedStep(f"checksum mismatch in {mismatched[0]}{more}")
    return leaves


def absent_arrays(tree: Mapping, names: Any) -> list[str]:
    """The names (paths) that the nested ``tree`` (orbax's metadata of a state item) lacks."""
    absent = []
    for name in names:
        try:
            lookup(tree, name)
        except (KeyError, TypeError):
            absent.append(name)
    return absent


def one_line(error: BaseException) -> str:
    """``Type: first line`` of the innermost cause of ``error``, at most 200 characters
    (TensorStore's errors run to hundreds of lines; the innermost names the file and the fault)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    lines = str(error).strip().splitlines() or [""]
    text = f"{type(error).__name__}: {lines[0].split(' [tensorstore_spec')[0]}"
    return text if len(text) <= 200 else text[:197] + "..."


def quarantine(directory: pathlib.Path, step: int) -> str:
    """Move the damaged ``directory/<step>`` into ``directory/_damaged/`` (``<step>-2``, ... when
    that name is taken by a step damaged before); its path there, relative to ``directory``."""
    folder = directory / QUARANTINE
    folder.mkdir(exist_ok=True)
    name, copy = str(step), 1
    while (folder / name).exists():
        copy += 1
        name = f"{step}-{copy}"
    (directory / str(step)).rename(folder / name)
    return f"{QUARANTINE}/{name}"
