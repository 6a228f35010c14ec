"""The benchmark scripts in --quick mode, end to end, so they never rot: JSON, table, plots."""

import json

from benchmarks import compile_time, plot, throughput


def test_compile_time_quick_writes_json_and_table(tmp_path, capsys):
    record = compile_time.main(["--quick", "--seq-lens", "3", "--out", str(tmp_path / "ct.json")])
    engines = [(row["engine"], row["unroll"]) for row in record["rows"]]
    assert engines == [("static", 1), ("scan", 1), ("scan", 2)]
    for row in record["rows"]:
        assert row["compile_s"] > 0 and row["stablehlo_ops"] > 0 and row["hlo_instructions"] > 0
    saved = json.loads((tmp_path / "ct.json").read_text())
    assert saved["environment"]["backend"] == "cpu" and saved["rows"] == record["rows"]
    assert "| 3 | static |" in capsys.readouterr().out


def test_static_cap_is_reported_not_silent(tmp_path):
    record = compile_time.main(["--quick", "--seq-lens", "3", "--static-cap", "2",
                                "--out", str(tmp_path / "ct.json")])
    assert record["rows"][0] == {"engine": "static", "unroll": 1, "seq_len": 3,
                                 "skipped": "static capped at T=2"}


def test_throughput_quick_with_an_unavailable_peer_and_plots(tmp_path, capsys):
    runners = ["lstmjax scan", "lstmjax static", "jax cuDNN", "torch nn.LSTM"]
    record = throughput.main(["--quick", "--shapes", "quick-word", "--runners", *runners,
                              "--out", str(tmp_path / "tp.json")])
    rows = {row["runner"]: row for row in record["rows"]}
    assert rows["lstmjax scan"]["tokens_per_s"] > 0 and rows["lstmjax static"]["tokens_per_s"] > 0
    assert "GPU" in rows["jax cuDNN"]["unavailable"]
    assert "| quick-word | jax cuDNN |" in capsys.readouterr().out
    compile_time.main(["--quick", "--seq-lens", "2", "--out", str(tmp_path / "ct.json")])
    plot.main([str(tmp_path)])
    assert (tmp_path / "tp.png").stat().st_size > 0 and (tmp_path / "ct.png").stat().st_size > 0
