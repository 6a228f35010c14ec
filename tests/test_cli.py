"""The command line: an end-to-end tiny run (train, resume, eval, sample) and argument errors that
stop before anything runs."""

import json

import pytest

from lstmjax.cli import main

pytestmark = pytest.mark.usefixtures("standard_promotion")



def test_train_resume_eval_sample(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory is runs/PRESET, here runs/tiny
    args = ["train", "--preset", "tiny", "--train.max-steps", "6", "--train.eval-every", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "run directory: runs/tiny (new run)" in out
    assert "valid loss" in out and "sample:" in out
    assert main(args) == 0  # resumes, finds the run complete
    assert "already at step 6" in capsys.readouterr().out
    import lstmjax.trained

    real_load_corpus, seen = lstmjax.trained.load_corpus, []
    monkeypatch.setattr(lstmjax.trained, "load_corpus",
                        lambda **kw: seen.append(kw["data_dir"]) or real_load_corpus(**kw))
    assert main(["eval", "--preset", "tiny", "--split", "test", "--data.data-dir", "moved"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 6 and result["split"] == "test" and result["perplexity"] > 1
    assert result["workdir"] == "runs/tiny" and seen == ["moved"]
    sample = ["sample", "--preset", "tiny", "--prime", "The ", "--length", "12", "--seed", "3"]
    assert main(sample) == 0
    first = capsys.readouterr().out
    assert main([*sample[:3], "--workdir", "runs/tiny", *sample[3:]]) == 0
    assert capsys.readouterr().out == first and first.startswith("The ")
    # the default prime is what --help says: the vocabulary's first token; from the best step too
    first_token = json.loads((tmp_path / "runs/tiny/vocab.json").read_text())["tokens"][0]
    unprimed = ["sample", "--preset", "tiny", "--length", "12", "--checkpoint", "best"]
    assert main(unprimed) == 0
    default = capsys.readouterr().out
    assert main([*unprimed, "--prime", first_token]) == 0
    assert capsys.readouterr().out == default and default.startswith(first_token)


def test_user_mistakes_are_one_line_naming_the_flag(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert main(["train", "--preset", "tiny", "--workdir", workdir,
                 "--train.eval-batch-size", "1000000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lstmjax train: error: --train.eval-batch-size=1000000 is too large")
    assert err.count("\n") == 1
    (tmp_path / "file").write_text("")
    assert main(["train", "--preset", "tiny", "--workdir", str(tmp_path / "file" / "run")]) == 1
    assert "cannot be created: " in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "checkpoints").write_text("")
    assert main(["train", "--preset", "tiny", "--workdir", str(tmp_path / "taken")]) == 1
    err = capsys.readouterr().err
    assert "checkpoints is a file" in err and err.count("\n") == 1
    for length in ("0", "-5"):
        with pytest.raises(SystemExit) as exit_info:
            main(["sample", "--workdir", workdir, "--length", length])
        assert exit_info.value.code == 2
        assert f"argument --length: must be an integer >= 1, got {length}" in capsys.readouterr().err


def test_errors_name_flags_not_fields():
    from lstmjax.cli import as_flags

    assert as_flags("train.max_steps=10 and data.data_dir, not ptb.train.txt or model.nope") == (
        "--train.max-steps=10 and --data.data-dir, not ptb.train.txt or model.nope")


def test_train_help_lists_preset_and_workdir_without_markup(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--preset" in text and "--workdir DIR" in text and "--model.hidden-size" in text
    # fields marked resumable (dataclasses.field metadata) keep their docs in --help
    assert "optimizer steps; None:" in text and "the fastest measured engine" in text
    for markup in ("``", ":class:", ":mod:", ":func:", ":data:"):
        assert markup not in text, markup


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
