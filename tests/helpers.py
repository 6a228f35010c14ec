"""Random inputs for equivalence tests (nothing at its default value, nothing zero), and the
environment of the trainer subprocesses."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np


def randomize(tree, rng: np.random.Generator, scale: float = 0.5):
    """The same pytree with every float leaf replaced by normal(0, scale) float32 values."""
    return jax.tree.map(
        lambda a: jnp.asarray(rng.normal(0.0, scale, np.shape(a)), jnp.float32), tree
    )


def random_cell_inputs(cell, rng: np.random.Generator, *, batch: int, steps: int, features: int):
    """``(params, carry, xs)`` for ``cell``: random params and carry, ``xs: float32[T, B, I]``."""
    params = randomize(cell.init(jax.random.key(0), features), rng)
    carry = randomize(cell.zero_carry(batch), rng)
    xs = jnp.asarray(rng.normal(size=(steps, batch, features)), jnp.float32)
    return params, carry, xs


def to_numpy(tree):
    """float64 NumPy copy of a pytree, for the NumPy references."""
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def assert_trees_close(actual, expected, *, rtol=1e-5, atol=1e-6, err_msg=""):
    """Leaf-by-leaf ``assert_allclose`` with the leaf's path in the message."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        f"{err_msg}: structures differ: {jax.tree.structure(actual)} vs "
        f"{jax.tree.structure(expected)}"
    )
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=rtol, atol=atol,
            err_msg=f"{err_msg} at {jax.tree_util.keystr(path)}",
        )


COMPILATION_CACHE = pathlib.Path(__file__).parents[1] / ".pytest_cache" / "jax-compilation"
"""XLA's persistent compilation cache of the test processes (conftest.py sets it)."""


def trainer_env() -> dict[str, str]:
    """The environment of an ``lstmjax train`` subprocess: the CPU, XLA's optimizations turned
    down and the persistent compilation cache of the tests, so that it compiles as the test
    processes do, and engine="auto" from the committed table (nothing measured)."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",
            "LSTMJAX_AUTO": "table",
            "JAX_COMPILATION_CACHE_DIR": str(COMPILATION_CACHE),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
