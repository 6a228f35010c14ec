"""Shared fixtures. Strict dtype promotion and rank promotion that raises catch silent casts and
broadcasts in the library; every test gets its own seed, derived from its name (set
LSTMJAX_TEST_SEED to draw a different family of inputs). XLA's optimizations are turned down, as
in flax's example tests, and compiled programs are cached on disk: compiling dominates this
suite's time on a CPU. engine="auto" takes the committed table (LSTMJAX_AUTO=table): no test
measures engines unless it asks to (tests/test_auto.py)."""

import os
import zlib

import jax
import numpy as np
import pytest
from helpers import COMPILATION_CACHE

os.environ["LSTMJAX_AUTO"] = "table"  # read at each choice; trainer subprocesses inherit it

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_disable_most_optimizations", True)
# Many tests compile the same tiny programs (a train step of the tiny preset, its evaluation):
# XLA's persistent cache (in .pytest_cache, shared by the xdist workers) compiles each once.
# Tracing and lowering still run every time. Trainer subprocesses share it (helpers.trainer_env);
# the benchmarks' measurement processes compile from scratch.
jax.config.update("jax_compilation_cache_dir", str(COMPILATION_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def seed(request) -> int:
    return zlib.crc32(request.node.nodeid.encode()) + int(os.environ.get("LSTMJAX_TEST_SEED", "0"))


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """NumPy generator for inputs."""
    return np.random.default_rng(seed)


@pytest.fixture
def key(seed) -> jax.Array:
    """JAX key for parameters."""
    return jax.random.key(seed)


@pytest.fixture
def standard_promotion():
    """Standard dtype promotion, for tests that run optax: its Adam bias correction (optax 0.2.8,
    ``decay ** count``) mixes a Python float with an int32 step, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield
