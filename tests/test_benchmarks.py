"""The benchmark scripts in --quick mode, end to end, so they never rot: JSON, table, plots.

Each script runs once per module (fixtures), in one folder that the plot test then draws; their
measurement processes compile with XLA's optimizations turned down, as the rest of the suite does.
"""

import json
import os

import pytest

from benchmarks import (
    auto_table,
    compile_time,
    devices,
    failed_saves,
    kernels,
    memory,
    peers,
    plot,
    report,
    throughput,
    xla_options,
)
from benchmarks.shapes import QUICK_SHAPES
from lstmjax.engines import ENGINE_NAMES
from lstmjax.model import resolve_engines


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # read by the subprocesses' jax
        yield tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def compile_record(folder):
    return compile_time.main(["--quick", "--seq-lens", "3", "--engines", "auto", "scan unroll=2",
                              "static", "--static-cap", "2", "--out", str(folder / "ct.json")])


@pytest.fixture(scope="module")
def throughput_record(folder):
    runners = ["lstmjax scan", "jax cuDNN", "torch nn.LSTM"]
    return throughput.main(["--quick", "--shapes", "quick-word", "--runners", *runners,
                            "--rounds", "1", "--out", str(folder / "tp.json")])


@pytest.fixture(scope="module")
def memory_record(folder):
    return memory.main(["--quick", "--out", str(folder / "memory.json")])


def test_lstmjax_rows_come_from_the_engine_registry():
    assert peers.lstmjax_labels(2) == [*ENGINE_NAMES, "scan unroll=2"]
    assert throughput.runner_names(2) == [
        *(f"lstmjax {name}" for name in ENGINE_NAMES), "lstmjax scan unroll=2", *peers.PEERS]
    assert list(peers.LSTMJAX) == [f"lstmjax {label}" for label in peers.lstmjax_labels(8)]


def test_auto_rows_name_the_engine_that_runs():
    shape = QUICK_SHAPES["quick-word"]
    choice = resolve_engines(peers.lstmjax_config(shape, engine="auto"),
                             batch_size=shape.batch_size, seq_len=shape.seq_len)[0]
    notes = peers.lstmjax_runner(shape, engine="auto").notes
    assert notes.startswith("engine=auto, runs ")
    assert f"runs {choice.engine} unroll={choice.unroll} ({choice.reason})" in notes


def test_rounds_keep_each_rows_fastest():
    rounds = [{"tokens_per_s": 5.0, "round": 0}, {"failed": "x"}, {"tokens_per_s": 7.0, "round": 2}]
    assert report.fastest_round(rounds) == {"tokens_per_s": 7.0, "round": 2,
                                            "round_tokens_per_s": [5.0, None, 7.0]}
    assert report.fastest_round([{"failed": "x"}, {"unavailable": "y"}]) == {"failed": "x"}


def test_labels_parse_back():
    options = peers.parse_lstmjax_label("fused unroll=4 remat=10")
    assert options == {"engine": "fused", "unroll": 4, "remat_chunk": 10}
    assert peers.lstmjax_label(**options) == "fused unroll=4 remat=10"
    assert peers.parse_lstmjax_label("auto") == {"engine": "auto", "unroll": 1, "remat_chunk": None}
    for bad in ["gru", "scan unrol=2", "scan remat=0", ""]:
        with pytest.raises(ValueError):
            peers.parse_lstmjax_label(bad)
    for argv in (["--runners", "lstmjax gru"], ["--runners", "nope"]):
        with pytest.raises(SystemExit):
            throughput.main(["--quick", *argv])
    with pytest.raises(SystemExit):
        compile_time.main(["--quick", "--engines", "scan unroll=x"])
    with pytest.raises(SystemExit):
        memory.main(["--quick", "--remat-chunk", "7"])  # does not divide T=40


def _timeit_row(statement: str, timeout: float = 60) -> dict:
    """``measure_row`` of a process running ``statement`` (``python -m timeit``), which prints no
    JSON: only its failures make rows."""
    return report.measure_row({"runner": "x"}, "timeit", ["-n1", "-r1", statement],
                              timeout=timeout)


def test_a_failed_killed_or_slow_measurement_is_a_row():
    assert _timeit_row("raise ValueError('no')") == {"runner": "x", "failed": "ValueError: no"}
    killed = _timeit_row("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert killed["failed"] == "killed by SIGKILL (out of memory?)"
    slow = _timeit_row("import time; time.sleep(30)", timeout=0.5)
    assert slow == {"runner": "x", "unavailable": "did not finish in 0.5 s"}
    missing = report.measure_row({"runner": "x"}, "benchmarks.no_such_module", [], timeout=60)
    assert "No module named" in missing["failed"]


def test_save_writes_the_record_where_its_backends_results_go(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    record = report.save("kernels", {"rows": [1]}, quick=True, out=None,
                         table=lambda record: f"| {record['rows'][0]} |")
    assert list(record) == ["benchmark", "environment", "rows"]
    assert record["benchmark"] == "kernels" and record["environment"]["backend"] == "cpu"
    path = tmp_path / "benchmarks/results/cpu/kernels_quick.json"
    assert json.loads(path.read_text()) == record
    assert "| 1 |" in capsys.readouterr().out
    report.save("kernels", {}, quick=False, out=tmp_path / "k.json", table=str)
    assert (tmp_path / "k.json").exists()
    assert not (tmp_path / "benchmarks/results/cpu/kernels.json").exists()


def test_compile_time_quick_writes_json_and_table(folder, compile_record):
    rows = compile_record["rows"]
    assert [(row["engine"], row["unroll"]) for row in rows] == [("auto", 1), ("scan", 2),
                                                                ("static", 1)]
    for row in rows[:2]:
        assert row["compile_s"] > 0 and row["stablehlo_ops"] > 0 and row["hlo_instructions"] > 0
    assert rows[2] == {"engine": "static", "unroll": 1, "seq_len": 3,
                       "skipped": "static capped at T=2"}
    saved = json.loads((folder / "ct.json").read_text())
    assert saved["environment"]["backend"] == "cpu" and saved["rows"] == rows
    assert "| 3 | scan unroll=2 |" in compile_time.table(compile_record)


def test_throughput_quick_with_an_unavailable_peer(throughput_record):
    rows = {row["runner"]: row for row in throughput_record["rows"]}
    for name in ["lstmjax scan", "torch nn.LSTM"]:
        assert rows[name]["tokens_per_s"] == rows[name]["round_tokens_per_s"][0] > 0
    assert "GPU" in rows["jax cuDNN"]["unavailable"]
    assert rows["lstmjax scan"]["notes"] == "engine=scan"
    lines = throughput.table(throughput_record).splitlines()
    assert "| x lstmjax scan | x torch |" in lines[0]
    assert any(line.startswith("| quick-word | jax cuDNN |") for line in lines)
    torch_row = next(line for line in lines if line.startswith("| quick-word | torch nn.LSTM |"))
    assert torch_row.split(" | ")[4] == "1"  # its own "x torch"


def test_memory_quick_writes_json_with_four_rows(folder, memory_record):
    rows = memory_record["rows"]
    assert [row["runner"] for row in rows] == ["fused", "fused remat=10", "scan", "scan remat=10"]
    for row in rows:
        assert report.peak_of(row)[0] > 0 and row["median_step_s"] > 0
        assert row["seq_len"] == 40
    assert json.loads((folder / "memory.json").read_text())["rows"] == rows
    assert "| scan remat=10 |" in memory.table(memory_record)


def test_plots(folder, compile_record, throughput_record, memory_record):
    plot.main([str(folder)])
    for name in ["ct", "tp", "memory"]:
        assert (folder / f"{name}.png").stat().st_size > 0


def test_kernels_quick_measures_matmuls_and_gate_math(tmp_path):
    record = kernels.main(["--quick", "--out", str(tmp_path / "kernels.json")])
    rows = {(row["kind"], row["variant"]): row for row in record["rows"]}
    assert set(rows) == {("matmul", "jax"), ("matmul", "torch"), ("gate math", "jax.nn.sigmoid"),
                         ("gate math", "tanh form")}
    assert all(row["median_ms"] > 0 for row in rows.values())
    assert json.loads((tmp_path / "kernels.json").read_text())["rows"] == record["rows"]


def test_devices_quick_splits_the_batch_over_simulated_devices(folder):
    record = devices.main(["--quick", "--devices", "2", "--out", str(folder / "devices.json")])
    rows = record["rows"]
    assert [(row["devices"], row["streams_per_device"]) for row in rows] == [(1, 8), (2, 4)]
    assert [row["placement"] for row in rows] == ["1 cpu device", "2 cpu devices"]
    assert rows[0]["x_1_device"] == 1 and rows[1]["x_1_device"] > 0
    assert rows[1]["first_loss"] == pytest.approx(rows[0]["first_loss"], rel=1e-5)
    assert record["simulated_devices"] and "not a speed-up" in record["note"]
    assert json.loads((folder / "devices.json").read_text())["rows"] == rows
    lines = devices.table(record).splitlines()
    assert lines[0].startswith("| devices | streams/device | tokens/s | x 1 device |")
    assert lines[3].startswith("| 2 | 4 |") and lines[-1] == record["note"]
    with pytest.raises(SystemExit):  # 6 streams do not split over 4 devices
        devices.main(["--quick", "--batch", "6", "--devices", "4"])
    assert devices.default_device_counts({"backend": "gpu", "visible_devices": 6}) == [1, 2, 4]


def test_xla_options_quick_compares_each_option_set_with_the_default(tmp_path):
    record = xla_options.main(["--quick", "--out", str(tmp_path / "xla_options.json")])
    rows = {(row["engine"], row["mode"], row["options"]): row for row in record["rows"]}
    options = [name for name in xla_options.DEFAULT_OPTION_SETS
               if name not in xla_options.ISOLATED]
    assert set(rows) == {(engine, mode, name) for engine in xla_options.ENGINES
                         for mode in xla_options.MODES for name in options}
    for (_, _, name), row in rows.items():
        assert row["min_s"] > 0 and row["baseline"] == "default"
        # the control option changes nothing; Eigen dots takes the dots out of YNN fusions
        assert row["hlo_identical_to_baseline"] == (name != "Eigen dots")
        assert (row["hlo"]["ynn_fusion"] == 0) == (name == "Eigen dots")
        assert row["max_abs_difference_to_baseline"] < 1e-4
    assert json.loads((tmp_path / "xla_options.json").read_text())["rows"] == record["rows"]
    assert "| quick | fused | forward | Eigen dots | changed | 2/0/0 |" in xla_options.table(record)


def test_auto_table_quick_measures_and_derives_the_table_rows(tmp_path):
    """auto's probe on two tiny shapes: every candidate timed, the choice the fastest per step,
    and the rows of auto.MEASURED derived from the choices (the last one open-ended)."""
    record = auto_table.main(["--quick", "--out", str(tmp_path / "auto_table.json")])
    for row in record["rows"]:
        assert set(row["ms_per_step"]) >= {"scan", "fused"}
        fastest = min(row["ms_per_step"], key=row["ms_per_step"].get)
        assert fastest.split()[0] == row["engine"]
    assert record["table"]["LSTM"][-1][0] == 10**9
    assert "| lstm | quick-char |" in auto_table.table(record)
    assert os.environ.get("LSTMJAX_AUTO") == "table"  # restored for the tests that follow



def test_failed_saves_quick_counts_partial_directories_left_behind(tmp_path):
    record = failed_saves.main(["--quick", "--out", str(tmp_path / "fs.json")])
    (row,) = record["rows"]
    assert row["trials"] == 3 and row["busy_processes"] == 0
    assert row["left_behind"] == 0 and 0 < row["median_error_s"] <= row["max_error_s"]
    assert json.loads((tmp_path / "fs.json").read_text())["rows"] == [row]
