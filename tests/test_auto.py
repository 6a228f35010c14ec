"""engine="auto": a fresh cache measures once and a warm one never again, new candidates alone are
timed, the off switch and failures take the committed table and say so, a corrupt cache file is
measured over and rewritten, measuring while jax.jit traces stages nothing into the trace, and a
resumed training run reuses the choices it saved (unless an engine is named)."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from helpers import assert_trees_close, random_cell_inputs

import lstmjax
from lstmjax import GRU, LSTM
from lstmjax.engines import auto
from lstmjax.presets import PRESETS
from lstmjax.train import train

TIMES = {"scan": 3.0, "scan unroll=4": 1.0, "fused": 2.0, "native": 0.5}
"""Milliseconds per step that the fake probe reports."""


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Measuring on, with a cache in ``tmp_path`` and an empty in-process memo."""
    monkeypatch.delenv(auto.MODE_VARIABLE, raising=False)
    monkeypatch.setenv("LSTMJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(auto, "_MEMO", {})
    return tmp_path / "auto.json"


@pytest.fixture
def probes(monkeypatch):
    """A fake probe reporting :data:`TIMES`; the list of the options each call timed."""
    calls = []

    def fake(cell, backend, input_size, batch_size, steps, options):
        calls.append(options)
        return {auto._label(*option): TIMES[auto._label(*option)] for option in options}

    monkeypatch.setattr(auto, "_measure", fake)
    return calls


SMALL = LSTM(8)


def _choose(cell=SMALL, candidates=("scan", "static", "fused"), **shape):
    shape = {"backend": "cpu", "num_steps": 20, "batch_size": 4, **shape}
    return auto.choose(cell, candidates=list(candidates), **shape)


def test_a_fresh_cache_measures_once_and_a_warm_one_reuses_it(measuring, probes, monkeypatch):
    engine, unroll, reason = _choose()
    assert (engine, unroll) == ("scan", 4)
    assert probes == [[("scan", 1), ("scan", 4), ("fused", 1)]]  # static is never timed
    assert reason.startswith("scan unroll=4 (measured on cpu ")
    assert "LSTM H=8 I=8 B=4 T~16, per step: scan unroll=4 1 ms, fused 2 ms, scan 3 ms" in reason
    assert reason.endswith(f"; cached in {measuring})")
    [(key, entry)] = json.loads(measuring.read_text())["entries"].items()
    assert key.startswith("cpu | ") and key.endswith("| I=8 B=4 T~16")
    assert "LSTM(hidden_size=8, param_dtype=float32, dtype=float32, forget_bias=1.0" in key
    assert entry["engine"] == "scan" and entry["unroll"] == 4 and entry["probe_steps"] == 16
    assert entry["ms_per_step"] == {"scan": 3.0, "scan unroll=4": 1.0, "fused": 2.0}
    assert entry["jax"] == jax.__version__ and entry["jaxlib"]

    monkeypatch.setattr(auto, "_MEMO", {})  # as a new process: the file alone
    for num_steps in (20, 13, 100):  # one key: T rounds to a power of two, at most 16
        again = _choose(num_steps=num_steps)
        assert again[:2] == ("scan", 4)
        assert again[2].startswith(f"scan unroll=4 (cached in {measuring}")
    assert len(probes) == 1
    assert _choose(num_steps=3)[:2] == ("scan", 3)  # T~4: another key, and unroll <= T
    assert probes[1] == [("scan", 1), ("scan", 4), ("fused", 1)]
    assert _choose(num_steps=1)[2].startswith("scan unroll=1 (table, one step: no loop to time")
    assert len(probes) == 2


def test_a_new_engine_alone_is_timed_and_joins_the_entry(measuring, probes):
    _choose()
    engine, unroll, reason = _choose(candidates=("scan", "fused", "native"))
    assert probes[1] == [("native", 1)] and (engine, unroll) == ("native", 1)
    assert "per step: native 0.5 ms, scan unroll=4 1 ms" in reason
    [entry] = json.loads(measuring.read_text())["entries"].values()
    assert entry["ms_per_step"] == TIMES and entry["engine"] == "native"
    assert _choose()[:2] == ("scan", 4) and len(probes) == 2  # without native: from the entry


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": 1, "entries": {"k": 3}}'])
def test_a_corrupt_cache_file_is_measured_over_and_rewritten(measuring, probes, content):
    measuring.write_text(content)
    assert _choose()[2].startswith("scan unroll=4 (measured on cpu ")
    assert len(probes) == 1
    assert len(json.loads(measuring.read_text())["entries"]) == 1
    assert not list(measuring.parent.glob(".auto.json*"))  # no temporary file left behind


def test_the_off_switch_and_failures_take_the_table_and_say_why(measuring, probes, monkeypatch):
    monkeypatch.setenv(auto.MODE_VARIABLE, "table")
    assert _choose(LSTM(1500)) == ("fused", 1, "fused unroll=1 (table, LSTMJAX_AUTO=table: cpu "
                                                 "LSTM H=1500)")
    assert _choose(LSTM(8), candidates=["scan", "native"]) == (
        "native", 1, "native unroll=1 (table, LSTMJAX_AUTO=table: cpu LSTM H=8)")
    engine, _, reason = _choose(LSTM(8))  # the table's native cannot run it: scan
    assert engine == "scan" and "native cannot run LSTM(" in reason
    assert _choose(GRU(650), backend="tpu")[2] == ("scan unroll=1 (table, LSTMJAX_AUTO=table: no "
                                                   "row for GRU on tpu)")
    assert _choose(LSTM(1500), candidates=["scan"])[:2] == ("scan", 1)  # fused cannot run it
    monkeypatch.setenv(auto.MODE_VARIABLE, "sometimes")
    with pytest.raises(ValueError, match=r"LSTMJAX_AUTO='sometimes' is not one of \('measure', "
                                         r"'table'\)"):
        _choose()
    monkeypatch.delenv(auto.MODE_VARIABLE)
    engine, _, reason = _choose(backend="tpu")  # measuring on a backend that is not here
    assert engine == "scan" and reason.startswith("scan unroll=1 (table, measuring failed: ")
    assert reason.endswith("no row for LSTM on tpu)")
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert "table, 2 processes, which must agree: nothing timed" in _choose()[2]
    assert not probes and not measuring.exists()


def test_a_cache_that_cannot_be_written_still_chooses_and_says_so(measuring, probes, monkeypatch):
    measuring.parent.joinpath("file").write_text("")
    monkeypatch.setenv("LSTMJAX_CACHE_DIR", str(measuring.parent / "file" / "dir"))
    for _ in range(2):  # measured, then remembered by this process
        engine, unroll, reason = _choose()
        assert (engine, unroll) == ("scan", 4) and reason.startswith("scan unroll=4 (")
        assert "not cached: NotADirectoryError: [Errno 20] Not a directory: " in reason
    assert len(probes) == 1


def test_measuring_inside_jit_stages_nothing_into_the_trace(measuring, monkeypatch, rng):
    """A real probe (tiny shape), started while jax.jit traces run_layer: the trace equals the
    one of the chosen engine named outright, and the jitted call runs."""
    measured = []
    real = auto._measure
    monkeypatch.setattr(auto, "_measure", lambda *args: measured.append(args) or real(*args))
    cell = LSTM(3)
    params, carry, xs = random_cell_inputs(cell, rng, batch=2, steps=5, features=3)

    def layer(engine, unroll=1):
        return jax.jit(lambda p, c, x: lstmjax.run_layer(cell, p, c, x, engine=engine,
                                                          unroll=unroll))

    traced = layer("auto").trace(params, carry, xs)
    assert len(measured) == 1
    choice = lstmjax.resolve(cell, "auto", num_steps=5, batch_size=2)
    assert "cached in" in choice.reason and len(measured) == 1
    named = layer(choice.engine, choice.unroll).trace(params, carry, xs)
    assert str(traced.jaxpr) == str(named.jaxpr)
    [entry] = json.loads(measuring.read_text())["entries"].values()
    assert all(np.isfinite(t) and t > 0 for t in entry["ms_per_step"].values())
    assert_trees_close(layer("auto")(params, carry, xs), layer("scan")(params, carry, xs))


def test_pinned_choices_stick_and_saved_ones_are_reused(measuring, probes):
    shape = "LSTM(hidden_size=8, param_dtype=float32, dtype=float32, forget_bias=1.0, "
    with auto.pinned() as chosen:
        first = _choose()
        [(key, choice)] = chosen.items()
    assert key.startswith(shape) and key.endswith(" I=8 B=4 T=20")
    assert choice == dict(zip(("engine", "unroll", "reason"), first))
    saved = {key: {**choice, "engine": "fused", "unroll": 1}}
    with auto.pinned(saved, source="run/engines.json") as chosen:
        assert _choose() == ("fused", 1, "fused unroll=1 (reused from run/engines.json)")
        assert _choose(candidates=["scan"])[:2] == ("scan", 4)  # fused cannot run here: choose
    assert len(probes) == 1


@pytest.mark.usefixtures("standard_promotion")
def test_a_resumed_run_reuses_the_saved_choice_unless_an_engine_is_named(tmp_path):
    tiny = PRESETS["tiny"]

    def run(max_steps, **model):
        config = dataclasses.replace(
            tiny, model=dataclasses.replace(tiny.model, **model),
            train=dataclasses.replace(tiny.train, max_steps=max_steps, eval_every=2, log_every=2,
                                      sample_length=0))
        lines = []
        train(config, tmp_path, progress=False, print_fn=lines.append)
        return next(line for line in lines if line.startswith("engine: "))

    first = run(2)
    assert first.startswith("engine: ") and "(table, LSTMJAX_AUTO=table: " in first
    engines_file = tmp_path / "engines.json"
    saved = json.loads(engines_file.read_text())
    train_shape = next(key for key in saved if key.endswith(" B=4 T=8"))
    assert first.startswith(f"engine: {saved[train_shape]['engine']} ")
    # as if a measurement had chosen fused when the run started
    engines_file.write_text(json.dumps({key: {**choice, "engine": "fused"}
                                        for key, choice in saved.items()}))
    reused = f"fused unroll=1 (auto: fused unroll=1 (reused from {engines_file}))"
    assert run(4) == f"engine: {reused}"
    records = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
               if r["split"] == "train"]
    assert [r["engine"] for r in records if r["step"] > 2] == [reused]
    assert run(6, engine="scan") == "engine: scan unroll=1 (requested)"
    assert json.loads(engines_file.read_text())[train_shape]["engine"] == "fused"
