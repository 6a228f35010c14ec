"""The command line: an end-to-end tiny run (train, resume, eval, sample), a reader's checkpoint
by step, library errors worded with the flag that sets the field, and parse errors that stop
before anything runs."""

import contextlib
import io
import json
import re

import jax
import pytest

from lstmjax._checks import FieldError
from lstmjax.cli import main
from lstmjax.commands import COMMANDS, Eval, Sample, Train

pytestmark = pytest.mark.usefixtures("standard_promotion")

TRAIN = ["train", "--preset", "tiny", "--train.max-steps", "6", "--train.eval-every", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder whose runs/tiny (the default --workdir of the tiny preset) holds 6 steps trained
    by ``lstmjax train``, with checkpoints at steps 3 and 6; and what the command printed."""
    folder = tmp_path_factory.mktemp("cli")
    printed = io.StringIO()
    with (pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed),
          jax.numpy_dtype_promotion("standard")):
        patch.chdir(folder)
        assert main(TRAIN) == 0
    return folder, printed.getvalue()


def test_train_resume_eval_sample(trained, capsys, monkeypatch):
    folder, out = trained
    monkeypatch.chdir(folder)
    assert "run directory: runs/tiny (new run)" in out
    assert "valid loss" in out and "sample:" in out
    assert main(TRAIN) == 0  # resumes, finds the run complete
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
    first_token = json.loads((folder / "runs/tiny/vocab.json").read_text())["tokens"][0]
    unprimed = ["sample", "--preset", "tiny", "--length", "12", "--checkpoint", "best"]
    assert main(unprimed) == 0
    default = capsys.readouterr().out
    assert main([*unprimed, "--prime", first_token]) == 0
    assert capsys.readouterr().out == default and default.startswith(first_token)
    assert main([*unprimed, "--prime", "None"]) == 0  # text, not the default
    assert capsys.readouterr().out.startswith("None")


def test_checkpoint_takes_a_step_number(trained, capsys):
    workdir = str(trained[0] / "runs/tiny")
    assert main(["eval", "--workdir", workdir, "--checkpoint", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    assert main(["eval", "--workdir", workdir, "--checkpoint", "4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lstmjax eval: error: no checkpoint for step 4 ")
    assert "[3, 6]" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--workdir", workdir, "--checkpoint", "newest"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "newest" in err and "latest" in err and "best" in err


def test_user_mistakes_are_one_line_naming_the_flag(trained, tmp_path, capsys):
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
    # the library checks the sampling arguments; the command names their flags
    sample = ["sample", "--workdir", str(trained[0] / "runs/tiny")]
    for flags, message in (
            (["--length", "0"], "--length must be a positive int (tokens to generate), got 0"),
            (["--length", "-5"], "--length must be a positive int (tokens to generate), got -5"),
            (["--temperature", "0"], "--temperature must be a number > 0, got 0.0"),
            (["--top-k", "-1"], "--top-k must be an int in [0, "),
            (["--prime", ""], "the --prime '' holds no char token")):
        assert main([*sample, *flags]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"lstmjax sample: error: {message}") and err.count("\n") == 1


def test_a_field_error_reads_with_the_flag_of_its_command():
    assert Train.flags()["train.max_steps"] == "--train.max-steps"
    assert Eval.flags()["data.data_dir"] == "--data.data-dir"  # named as the run's config field
    assert Sample.flags()["top_k"] == "--top-k"
    error = FieldError("train.max_steps",
                       "train.max_steps=10 beside data.data_dir, not ptb.train.max_steps")
    assert Train.describe(error) == (
        "--train.max-steps=10 beside data.data_dir, not ptb.train.max_steps")
    assert Eval.describe(error) == str(error)  # eval has no such flag
    assert Sample.describe(FieldError("length", "length must be >= 1, not seq_length")) == (
        "--length must be >= 1, not seq_length")
    assert Sample.describe(ValueError("length")) == "length"  # only a FieldError names a field


def test_help_is_generated_and_lists_presets_and_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in COMMANDS) and "ptb-small" in text
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "--checkpoint latest|best|STEP" in text and "--data.data-dir DIR" in text


def test_train_help_lists_preset_and_workdir_without_markup(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--preset" in text and "--workdir DIR" in text and "--model.hidden-size" in text
    hidden_size = re.compile(r"--model\.hidden-size INT.*?\(default: (\d+)\)", re.DOTALL)
    assert hidden_size.search(text).group(1) == "128"  # the default preset's
    with pytest.raises(SystemExit):
        main(["train", "--preset=tiny", "--help"])
    assert hidden_size.search(capsys.readouterr().out).group(1) == "16"  # tiny's
    # fields marked resumable (dataclasses.field metadata) keep their docs in --help
    assert "optimizer steps; None:" in text and "the fastest measured engine" in text
    for markup in ("``", ":class:", ":mod:", ":func:", ":data:"):
        assert markup not in text, markup


def test_no_command_means_train(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["--preset", "tiny", "--workdir", str(tmp_path / "file" / "run")]) == 1
    assert capsys.readouterr().err.startswith("lstmjax train: error: ")


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


def test_unknown_preset_command_and_missing_run_dirs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "--preset" in err and "ptb-small" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "fly" in err and "train, eval, sample, report, plot, import, export" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["report"])
    assert exit_info.value.code == 2
    assert "give at least one RUN_DIR" in capsys.readouterr().err


def test_eval_of_a_missing_run_names_it(tmp_path, capsys):
    assert main(["eval", "--workdir", str(tmp_path / "none")]) == 1
    assert "is not a run directory" in capsys.readouterr().err
