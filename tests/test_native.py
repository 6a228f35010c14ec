"""Engine "native" (one FFI call per direction), what the registry-wide tests do not cover: equal
to "scan" under jax.vmap and with remat chunks; what it does not run falls back to "fused" with
the reason, also when the kernel was not built; the kernel checks every array at its FFI boundary.
Equality with "scan" on every cell it runs and its float64 finite-difference check are
tests/test_layer_engines.py's (T in {1, 7, 35} on the model: tests/test_model.py); the TF1
fixtures run through it in tests/test_convert.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs
from test_layer_engines import BATCH, CELLS, FEATURES, _options, _problem, _value_and_grad

import lstmjax
from lstmjax import LSTM, LayerNormLSTM
from lstmjax.engines import native

needs_kernel = pytest.mark.skipif(
    native.available() is not None or jax.default_backend() != "cpu",
    reason=f"the native engine runs on the CPU backend, with its kernel built "
           f"({native.available() or 'built'}, backend {jax.default_backend()})")


@needs_kernel
@pytest.mark.parametrize(("name", "options"), [("lstm-clip", "resets-reverse-regularized"),
                                               ("gru-reset-after", "plain")])
def test_native_under_vmap_equals_scan(name, options, rng):
    """Two independent problems under jax.vmap (the calls run once per element), parameters
    shared."""
    cell, reverse, arrays = _options(options, CELLS[name], rng, engine="native")
    params, carry, xs, weights = _problem(cell, rng)
    carries = jax.tree.map(lambda a: jnp.stack([a, -a]), carry)
    xs, weights = jnp.stack([xs, xs[::-1]]), jnp.stack([weights, weights])

    def run(engine):
        return jax.vmap(_value_and_grad(cell, engine, reverse), in_axes=(None, 0, 0, 0, None))(
            params, carries, xs, weights, arrays)

    assert lstmjax.resolve(cell, "native", num_steps=7, batch_size=BATCH).engine == "native"
    assert_trees_close(run("native"), run("scan"), rtol=1e-5, atol=2e-6,
                       err_msg=f"{name} {options}")


@needs_kernel
def test_native_remat_chunks_change_nothing(rng):
    cell, reverse, arrays = _options("resets-lengths", CELLS["lstm-clip"], rng, steps=6)
    problem = _problem(cell, rng, steps=6)
    expected = _value_and_grad(cell, "native", reverse)(*problem, arrays)
    actual = _value_and_grad(cell, "native", reverse, remat_chunk=4)(*problem, arrays)
    assert_trees_close(actual, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("cell", "why"), [
    (LSTM(4, use_peepholes=True), "no peepholes or projection"),
    (LSTM(4, proj_size=2), "no peepholes or projection"),
    (LayerNormLSTM(4), "no native kernel for LayerNormLSTM"),
    (LSTM(4, dtype=jnp.bfloat16), "float32 or float64, not bfloat16"),
])
def test_what_native_cannot_run_falls_back_to_fused(cell, why):
    choice = lstmjax.resolve(cell, "native", num_steps=5, batch_size=2, backend="cpu")
    assert choice.engine == "fused" and why in choice.reason and "fused instead" in choice.reason
    gpu = lstmjax.resolve(LSTM(4), "native", num_steps=5, batch_size=2, backend="gpu")
    assert gpu.engine == "fused" and "a CPU kernel" in gpu.reason


def test_unbuilt_kernel_is_listed_and_says_why(monkeypatch, rng):
    """Without the compiled kernel (no C++ compiler at install), "native" stays a valid engine
    name, resolves to "fused" with the reason, and runs."""
    monkeypatch.setattr(native, "_library",
                        lambda: native._Library(None, "the native kernel was not built"))
    cell = LSTM(4)
    choice = lstmjax.resolve(cell, "native", num_steps=3, batch_size=BATCH, backend="cpu")
    assert choice.engine == "fused" and "the native kernel was not built" in choice.reason
    params, carry, xs = random_cell_inputs(cell, rng, batch=BATCH, steps=3, features=FEATURES)
    assert_trees_close(lstmjax.run_layer(cell, params, carry, xs, engine="native"),
                       lstmjax.run_layer(cell, params, carry, xs, engine="fused"), rtol=0, atol=0)


def _kernel_call(direction, operands, results, **wrong):
    """One direct call of the kernel's FFI target ``direction`` for an LSTM layer, with the
    operand or result shapes and dtypes of ``wrong`` (name -> ``(shape, dtype)``) instead."""
    def array(name, spec):
        shape, dtype = wrong.get(name, spec)
        return jnp.zeros(shape, dtype)

    def result(name, spec):
        shape, dtype = wrong.get(name, spec)
        return jax.ShapeDtypeStruct(shape, dtype)

    call = jax.ffi.ffi_call(direction, [result(name, spec) for name, spec in results.items()])
    attributes = {"cell": np.int32(0), "reverse": np.int32(0), "cell_clip": np.float64(-1.0)}
    if direction == native._FORWARD:
        attributes["forget_bias"] = np.float64(1.0)
    return jax.block_until_ready(
        call(*(array(name, spec) for name, spec in operands.items()), **attributes))


F32, PRED = jnp.float32, jnp.bool_
_STATE, _SEQUENCE, _GATES, _EMPTY = ((1, 2), F32), ((2, 1, 2), F32), ((2, 8), F32), ((0,), F32)
KERNEL_CALLS = {  # T=2, B=1, H=2 (G=8): (operands, results) of each direction
    native._FORWARD: (
        {"x_proj": _GATES, "bias": ((8,), F32), "w1": ((2, 8), F32), "w2": _EMPTY,
         "rbias": _EMPTY, "h0": _STATE, "c0": _STATE, "valid": ((0,), PRED),
         "resets": ((2, 1), PRED), "mask": _EMPTY},
        {"acts": _GATES, "ys": _SEQUENCE, "h": _STATE, "c": _STATE, "h_in": _SEQUENCE,
         "aux": _SEQUENCE}),
    native._BACKWARD: (
        {"acts": _GATES, "h_in": _SEQUENCE, "aux": _SEQUENCE, "w1": ((2, 8), F32), "w2": _EMPTY,
         "d_ys": _SEQUENCE, "d_h": _STATE, "d_c": _STATE, "valid": ((2, 1), PRED),
         "resets": ((0,), PRED), "mask": ((1, 2), F32)},
        {"d_gates": _GATES, "d_h0": _STATE, "d_c0": _STATE, "d_aux": _EMPTY}),
}


@needs_kernel
@pytest.mark.parametrize(("direction", "name", "wrong"), [
    (native._FORWARD, "x_proj", ((2, 7), F32)),
    (native._FORWARD, "w1", ((3, 8), F32)),
    (native._FORWARD, "h0", ((1, 3), F32)),
    (native._FORWARD, "valid", ((2, 1), F32)),
    (native._FORWARD, "bias", ((8,), jnp.int32)),
    (native._FORWARD, "acts", ((2, 9), F32)),
    (native._FORWARD, "c", ((0,), F32)),
    (native._FORWARD, "h_in", ((2, 1, 3), F32)),
    (native._BACKWARD, "aux", ((2, 2, 2), F32)),
    (native._BACKWARD, "mask", ((2, 1), F32)),
    (native._BACKWARD, "d_gates", ((1, 8), F32)),
    (native._BACKWARD, "d_h0", ((2, 2), F32)),
    (native._BACKWARD, "d_aux", _SEQUENCE),
    (native._BACKWARD, "d_ys", ((2, 1, 2), jnp.int32)),
])
def test_kernel_checks_every_operand_and_result_at_its_boundary(direction, name, wrong):
    """A call of the FFI targets with one array of the wrong shape or type is an error that names
    the kernel, not a read or write out of bounds; the same call with every array right runs."""
    operands, results = KERNEL_CALLS[direction]
    native._library()  # registers the targets
    _kernel_call(direction, operands, results)
    with pytest.raises(Exception, match="lstmjax native kernel: "):
        _kernel_call(direction, operands, results, **{name: wrong})
