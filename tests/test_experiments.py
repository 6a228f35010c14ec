"""experiments/report.py: epoch means weighted by steps, resumed runs' repeated records, the
summary, the table and the curves, on a run directory written by hand."""

import json
import math

import pytest

from experiments import report

# 10 steps per epoch; records every 4 steps and at each epoch's end. A kill after step 14 (no
# checkpoint there) made the resumed run log step 14 again: the later record counts.
TRAIN = [(4, 2.0), (8, 1.0), (10, 3.0), (12, 0.5), (14, 9.0), (14, 1.5), (16, 1.0), (20, 0.5),
         (22, 2.0)]


def _write_run(run):
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train": {"eval_every": 10}}))
    records = [{"step": s, "epoch": s / 10, "split": "train", "loss": x, "tokens_per_s": 100.0 * s}
               for s, x in TRAIN]
    records += [{"step": s, "epoch": s / 10, "split": "valid", "loss": x}
                for s, x in [(10, 2.5), (20, 2.0), (22, 2.25)]]
    records.append({"step": 22, "epoch": 2.2, "split": "test", "loss": 2.1})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "wall.txt").write_text("60 s on host (2 cores, cpu cpu)\n90 s on host (2 cores, cpu cpu)\n")


def _records(pairs):
    return [{"step": s, "epoch": s / 10, "split": "train", "loss": x} for s, x in pairs]


def test_epoch_means_weight_records_by_their_steps():
    records = _records([(4, 2.0), (8, 1.0), (10, 3.0), (14, 1.0), (20, 0.5), (22, 2.0)])
    losses = report.epoch_train_losses(records)
    assert losses.keys() == {0, 1}  # epoch 2 is not finished
    assert losses[0] == pytest.approx((2.0 * 4 + 1.0 * 4 + 3.0 * 2) / 10)
    assert losses[1] == pytest.approx((1.0 * 4 + 0.5 * 6) / 10)


def test_last_steps_loss_takes_whole_records_from_the_end():
    records = _records([(4, 2.0), (8, 1.0), (10, 3.0), (14, 1.0)])
    assert report.last_steps_train_loss(records, 4) == pytest.approx(1.0)
    assert report.last_steps_train_loss(records, 5) == pytest.approx((3.0 * 2 + 1.0 * 4) / 6)


def test_summary_table_and_curves(tmp_path):
    _write_run(tmp_path / "runs" / "toy")
    report.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path)])
    (summary,) = json.loads((tmp_path / "results.json").read_text())
    assert summary["steps"] == 22 and summary["epochs"] == 2.2
    # the unfinished epoch 2 is not "the last epoch": the last eval_every steps are
    assert summary["train_loss_over"] == "last 10 steps"
    assert summary["train_loss"] == pytest.approx((2.0 * 2 + 0.5 * 4 + 1.0 * 2 + 1.5 * 2) / 10)
    assert summary["train_curve"] == [[0, pytest.approx(1.8)], [1, pytest.approx(0.8)]]
    assert summary["best_valid_loss"] == 2.0 and summary["valid_loss"] == 2.25
    assert summary["test_loss"] == 2.1
    assert summary["wall_s"] == 150 and summary["invocations"] == 2
    assert summary["device"] == "host (2 cores, cpu cpu)"
    assert summary["tokens_per_s"] == 1400.0  # median after the first record, which compiles
    assert (tmp_path / "curves" / "toy.png").read_bytes()[:4] == b"\x89PNG"


def test_table_reports_perplexity_and_bits():
    summary = {"run": "toy", "steps": 5, "epochs": 1.0, "train_loss": 1.0, "valid_loss": 2.0,
               "best_valid_loss": 1.5, "test_loss": None, "tokens_per_s": 10.0, "wall_s": 120,
               "invocations": 1, "device": "cpu"}
    row = report.markdown_table([summary]).splitlines()[-1]
    assert f"{math.e:.2f}" in row and f"{math.exp(1.5):.2f}" in row
    assert f"{2 / math.log(2):.3f} / -" in row and "2 min (1 call)" in row
