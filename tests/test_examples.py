"""The worked examples in experiments/ in --quick mode, end to end, so they never rot: each
learns, writes its JSON and prints its table.

The examples are user code, written with NumPy's broadcasting and run through optax: they run
under standard dtype promotion with rank promotion allowed, not the suite's strict settings."""

import json
import pathlib

import jax
import pytest

from experiments import adding_problem, memory_policy, script


@pytest.fixture(autouse=True)
def user_code_promotion(standard_promotion):
    with jax.numpy_rank_promotion("allow"):
        yield


def test_memory_policy_acts_and_trains_on_the_same_log_probs(tmp_path, capsys):
    record = memory_policy.main(["--quick", "--out", str(tmp_path)])
    # step_layer while acting and run_layer over the rollout (same resets) agree
    assert record["logp_gap"] < 1e-5
    rewards = [h["mean_reward"] for h in record["history"]]
    assert sum(rewards[-10:]) / 10 > 0.8  # memory: a memoryless policy earns 0.5
    assert json.loads((tmp_path / "results.json").read_text())["history"] == record["history"]
    assert record["command"].startswith("python -m experiments.memory_policy --quick")
    assert "| iterations | mean reward | episodes |" in capsys.readouterr().out
    assert (tmp_path / "reward.png").read_bytes()[:4] == b"\x89PNG"


def test_adding_problem_learns_below_the_baseline(tmp_path, capsys):
    record = adding_problem.main(["--quick", "--out", str(tmp_path)])
    history = record["history"]
    assert history[-1]["train_mse"] < history[0]["train_mse"]
    assert record["test_mse"] < 0.3 * record["baseline_mse"]  # 0.167: always predicting 1.0
    assert json.loads((tmp_path / "results.json").read_text())["history"] == history
    assert record["command"].startswith("python -m experiments.adding_problem --quick")
    assert "| step | train MSE | test MSE |" in capsys.readouterr().out


def test_a_flag_given_overrides_the_preset_and_out_is_no_setting():
    parser = script.parser("An example.\n\nMore.", pathlib.Path("runs"))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--hidden-size", type=int)
    assert parser.description == "An example."
    args = parser.parse_args(["--quick", "--hidden-size", "5"])
    config = script.preset_config(args, quick={"steps": 2, "hidden_size": 8},
                                  full={"steps": 9, "hidden_size": 9})
    assert config == {"quick": True, "seed": 0, "steps": 2, "hidden_size": 5}
    assert args.out == pathlib.Path("runs")
    assert script.preset_config(parser.parse_args([]), quick={"steps": 2},
                                full={"steps": 9})["steps"] == 9


def test_the_record_says_how_to_rerun_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["adding_problem.py", "--steps", "3"])
    record = script.save_record(tmp_path / "out", "experiments.x", None, {"steps": 3}, 1.26,
                                loss=0.5)
    assert list(record) == ["command", "config", "backend", "wall_s", "loss"]
    assert record["command"] == "python -m experiments.x --steps 3"
    assert record["wall_s"] == 1.3
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == record
