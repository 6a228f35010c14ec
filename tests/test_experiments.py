"""experiments/report.py on a hand-written run directory: the summary with wall time and the
per-epoch curves, results.json, the table and one PNG per run. The numbers themselves come from
lstmjax.results (tests/test_report.py)."""

import json

import pytest

from experiments import report
from tests.test_report import _write_run


def test_summary_table_and_curves(tmp_path, capsys):
    run = _write_run(tmp_path / "runs" / "toy")
    (run / "wall.txt").write_text("60 s on host (2 cores, cpu cpu)\n90 s on host (2 cores, cpu cpu)\n")
    _write_run(tmp_path / "runs" / "no-wall")  # not an experiments run: left out
    report.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path)])
    (summary,) = json.loads((tmp_path / "results.json").read_text())
    assert summary["run"] == "toy" and summary["steps"] == 22
    assert summary["train_curve"] == [[0, pytest.approx(1.8)], [1, pytest.approx(0.8)]]
    assert summary["valid_curve"] == [[1.0, 2.5], [2.0, 2.0], [2.2, 2.25]]
    assert summary["wall_s"] == 150 and summary["invocations"] == 2
    assert summary["device"] == "host (2 cores, cpu cpu)"
    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith("| toy | ptb |")
    assert row.endswith("| 2 min (2 calls) | host (2 cores, cpu cpu) |")
    assert (tmp_path / "curves" / "toy.png").read_bytes()[:4] == b"\x89PNG"
