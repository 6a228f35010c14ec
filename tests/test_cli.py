"""The command line: an end-to-end tiny run (train, resume, eval, sample) and argument errors that
stop before anything runs."""

import json

import pytest

from lstmjax.cli import main

pytestmark = pytest.mark.usefixtures("standard_promotion")



def test_train_resume_eval_sample(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    args = ["train", "--preset", "tiny", "--workdir", workdir, "--train.max-steps", "6",
            "--train.eval-every", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "valid loss" in out and "sample:" in out
    assert main(args) == 0  # resumes, finds the run complete
    assert "already at step 6" in capsys.readouterr().out
    assert main(["eval", "--workdir", workdir, "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 6 and result["split"] == "test" and result["perplexity"] > 1
    assert main(["sample", "--workdir", workdir, "--prime", "The ", "--length", "12", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", "--workdir", workdir, "--prime", "The ", "--length", "12", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first and first.startswith("The ")


def test_unknown_key_is_rejected_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--workdir", str(tmp_path), "--model.hiden-size", "3"])
    assert exit_info.value.code != 0
    assert "--model.hiden-size" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bad_choice_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--preset", "tiny", "--workdir", str(tmp_path), "--model.cell", "lstmish"])
    err = capsys.readouterr().err
    assert "lstmish" in err and "ln_lstm" in err


def test_bad_value_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--workdir", str(tmp_path), "--model.dropout", "1.5"])
    assert exit_info.value.code == 2
    assert "dropout is a drop probability in [0, 1), got 1.5" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_unknown_preset_and_command(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--preset", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_eval_of_a_missing_run_names_it(tmp_path, capsys):
    assert main(["eval", "--workdir", str(tmp_path / "none")]) == 1
    assert "is not a run directory" in capsys.readouterr().err
