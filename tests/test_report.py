"""lstmjax.results and ``lstmjax report``, on run directories written by hand (no training):
the summary's numbers, resumed runs' repeated records, the table, the curves, and the errors of
what is not a run or not a log."""

import json
import math
import sys

import pytest

from lstmjax import cli, results

CONFIG = {"data": {"corpus": "ptb"}, "model": {"hidden_size": 8, "num_layers": 2},
          "optim": {"optimizer": "sgd", "learning_rate": 1.0}, "train": {"eval_every": 10}}
# 10 steps per epoch; records every 4 steps and at each epoch's end. A kill after step 14 (no
# checkpoint there) made the resumed run log step 14 again: the later record counts.
TRAIN = [(4, 2.0), (8, 1.0), (10, 3.0), (12, 0.5), (14, 9.0), (14, 1.5), (16, 1.0), (20, 0.5),
         (22, 2.0)]
VALID = [(10, 2.5), (20, 2.0), (22, 2.25)]


def _lines(train=TRAIN, valid=VALID, test=2.1):
    records = [{"step": s, "epoch": s / 10, "split": "train", "loss": x,
                "tokens_per_s": 100.0 * s, "step_time_s": 0.5} for s, x in train]
    records += [{"step": s, "epoch": s / 10, "split": "valid", "loss": x} for s, x in valid]
    if test is not None:
        records.append({"step": 22, "epoch": 2.2, "split": "test", "loss": test})
    return [json.dumps(r) + "\n" for r in records]


def _write_run(run, lines=None, config=CONFIG):
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.jsonl").write_text("".join(_lines() if lines is None else lines))
    return run


def _records(pairs):
    return [{"step": s, "epoch": s / 10, "split": "train", "loss": x} for s, x in pairs]


def test_epoch_means_weight_records_by_their_steps():
    records = _records([(4, 2.0), (8, 1.0), (10, 3.0), (14, 1.0), (20, 0.5), (22, 2.0)])
    losses = results.epoch_train_losses(records)
    assert losses.keys() == {0, 1}  # epoch 2 is not finished
    assert losses[0] == pytest.approx((2.0 * 4 + 1.0 * 4 + 3.0 * 2) / 10)
    assert losses[1] == pytest.approx((1.0 * 4 + 0.5 * 6) / 10)


def test_last_steps_loss_takes_whole_records_from_the_end():
    records = _records([(4, 2.0), (8, 1.0), (10, 3.0), (14, 1.0)])
    assert results.last_steps_train_loss(records, 4) == pytest.approx(1.0)
    assert results.last_steps_train_loss(records, 5) == pytest.approx((3.0 * 2 + 1.0 * 4) / 6)


def test_summary_numbers(tmp_path):
    summary = results.summarize(results.read_run(_write_run(tmp_path / "toy")))
    assert summary["run"] == str(tmp_path / "toy")
    assert (summary["corpus"], summary["model"], summary["optimizer"]) == (
        "ptb", "lstm 2 x 8", "sgd 1")
    assert summary["steps"] == 22 and summary["epochs"] == 2.2
    # the unfinished epoch 2 is not "the last epoch": the last eval_every steps are, and the
    # repeated step 14 counts once, with its later loss
    assert summary["train_loss_over"] == "last 10 steps"
    assert summary["train_loss"] == pytest.approx((2.0 * 2 + 0.5 * 4 + 1.0 * 2 + 1.5 * 2) / 10)
    assert summary["valid_loss"] == 2.25 and summary["test_loss"] == 2.1
    assert (summary["best_valid_loss"], summary["best_valid_step"]) == (2.0, 20)
    assert summary["tokens_per_s"] == 1400.0  # median after the first record, which compiles
    assert summary["train_time_s"] == pytest.approx(0.5 * 22)  # 0.5 s a step, 22 steps
    assert summary["notes"] == []


def test_summary_of_a_finished_epoch_and_without_test(tmp_path):
    lines = _lines(train=TRAIN[:-1], valid=VALID[:2], test=None)
    summary = results.summarize(results.read_run(_write_run(tmp_path / "run", lines)))
    assert summary["train_loss_over"] == "last epoch"
    assert summary["train_loss"] == pytest.approx(0.8)
    assert summary["test_loss"] is None


def test_table_row(tmp_path):
    summary = results.summarize(results.read_run(_write_run(tmp_path / "toy")), name="toy")
    header, rule, row = results.markdown_table([summary]).splitlines()
    assert header.count("|") == rule.count("|") == row.count("|") == len(results.COLUMNS) + 1
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["toy", "ptb", "lstm 2 x 8", "sgd 1", "22 (2.2)",
                     f"{math.exp(summary['train_loss']):.2f}",
                     f"{math.exp(2.25):.2f} ({math.exp(2.0):.2f} @ 20)", f"{math.exp(2.1):.2f}",
                     f"{2.25 / math.log(2):.3f} / {2.1 / math.log(2):.3f}", "1400", "11 s"]


def test_values_logged_as_not_finite_read_as_nan(tmp_path):
    diverged = {"loss": None, "perplexity": None, "nonfinite": ["loss", "perplexity"]}
    lines = [*_lines(train=TRAIN[:-1], valid=VALID[1:]),
             json.dumps({"step": 10, "epoch": 1.0, "split": "valid", **diverged}) + "\n",
             json.dumps({"step": 22, "epoch": 2.2, "split": "train", "tokens_per_s": 1.0,
                         "step_time_s": 0.5, **diverged}) + "\n"]
    summary = results.summarize(results.read_run(_write_run(tmp_path / "run", lines)))
    assert math.isnan(summary["train_loss"])
    assert (summary["best_valid_loss"], summary["best_valid_step"]) == (2.0, 20)
    cells = results.markdown_table([summary]).splitlines()[-1].split(" | ")
    assert cells[5:7] == ["nan", f"{math.exp(2.25):.2f} ({math.exp(2.0):.2f} @ 20)"]


def test_a_partial_last_line_is_skipped_with_a_note(tmp_path):
    cut = '{"epoch": 2.3, "loss": 1.'
    run = _write_run(tmp_path / "run", [*_lines(), cut])
    log = results.read_run(run)
    assert len(log.records) == len(TRAIN) - 1 + len(VALID) + 1
    (note,) = log.notes
    assert f"line {len(TRAIN) + len(VALID) + 2}" in note and "metrics.jsonl" in note
    assert f"note: {note}" in results.report([run])


def test_a_corrupt_line_before_the_last_is_an_error_naming_it(tmp_path):
    lines = _lines()
    lines[2] = lines[2][:20] + "\n"
    run = _write_run(tmp_path / "run", lines)
    with pytest.raises(ValueError, match=r"metrics\.jsonl, line 3: not JSON .*delete or repair"):
        results.read_run(run)


@pytest.mark.parametrize("line, problem", [
    ('{"step": 4, "epoch": 0.4, "split": "train", "loss": 2.0}', "step_time_s, tokens_per_s"),
    ('{"step": 4, "epoch": 0.4, "split": "eval", "loss": 2.0}', "split 'eval'"),
    ("[1, 2]", "list, not an object"),
])
def test_a_line_that_is_not_a_record_is_an_error_naming_it(tmp_path, line, problem):
    run = _write_run(tmp_path / "run", [*_lines(), line + "\n", *_lines()])
    with pytest.raises(ValueError, match=f"line {len(_lines()) + 1}: not a metrics record: .*"
                                         f"{problem}"):
        results.read_run(run)


def test_what_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        results.read_run(tmp_path / "missing")
    _write_run(tmp_path / "runs" / "a")
    with pytest.raises(FileNotFoundError, match=r"no config\.json and metrics\.jsonl; it holds "
                                                 r"the runs .*runs/a"):
        results.read_run(tmp_path / "runs")
    _write_run(tmp_path / "empty", lines=["\n"])
    with pytest.raises(ValueError, match=r"metrics\.jsonl is empty"):
        results.read_run(tmp_path / "empty")
    bad = _write_run(tmp_path / "bad_config", config={"model": {"hidden_sise": 8}})
    with pytest.raises(ValueError, match=r"config\.json is not a lstmjax config: .*hidden_sise"):
        results.read_run(bad)


def test_cli_table_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a = _write_run(tmp_path / "a")
    b = _write_run(tmp_path / "b", _lines(test=None), config={"data": {"corpus": "text8",
                                                                        "split": "tutorial"}})
    assert cli.main(["report", str(a), str(b), "--json", str(tmp_path / "s.json"),
                     "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    assert f"| {a} | ptb |" in out and f"| {b} | text8 (tutorial split) |" in out
    assert "train time: step_time_s x steps" in out
    summaries = json.loads((tmp_path / "s.json").read_text())
    assert [s["run"] for s in summaries] == [str(a), str(b)] and summaries[1]["test_loss"] is None
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lstmjax report: error: {tmp_path} is not a run directory")
    assert err.count("\n") == 1


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises
    run = _write_run(tmp_path / "run")
    assert cli.main(["report", str(run), "--plot", str(tmp_path / "c.png"),
                     "--json", str(tmp_path / "s.json")]) == 1
    assert capsys.readouterr().err == ('lstmjax report: error: plotting needs matplotlib, which is '
                                       'not installed: pip install "lstmjax[plot]"\n')
    assert not (tmp_path / "s.json").exists()  # nothing is written


def test_plot_command_writes_the_curves(tmp_path, capsys):
    run = _write_run(tmp_path / "toy")
    assert cli.main(["plot", str(run), "-o", str(tmp_path / "curves.png")]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'curves.png'}\n"
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
