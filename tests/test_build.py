"""The builders and the run directory's rules: readers restore the parameters alone (bit-exact,
past damaged steps), fresh parameters are a trainer's, the resume rules come from the config
fields' metadata, and importing lstmjax loads neither the data layer's I/O nor orbax."""

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import lstmjax.build
from lstmjax import rundir
from lstmjax._checks import FieldError
from lstmjax.build import build_trainer, load_params
from lstmjax.config import resumable_fields
from lstmjax.data import Position, Vocab
from lstmjax.presets import PRESETS

VOCAB = Vocab(tuple("\n abcdefgh"), "char")
CONFIG = dataclasses.replace(PRESETS["tiny"], model=dataclasses.replace(
    PRESETS["tiny"].model, vocab_size=len(VOCAB)))


def test_readers_restore_the_parameters_alone_bit_exact_past_damaged_steps(tmp_path,
                                                                           monkeypatch):
    trainer = build_trainer(CONFIG, steps_per_epoch=1)
    saved = {}
    with rundir.RunDirectory(tmp_path).checkpoints(CONFIG) as checkpoints:
        for step, valid_loss in ((1, 3.0), (2, 1.0), (3, 2.0)):  # best: 2, then 3
            state = trainer.state.replace(
                params=jax.tree.map(lambda p, s=step: p + s, trainer.state.params),
                step=trainer.state.step + step)
            saved[step] = jax.device_get(state.params)
            rundir.save(checkpoints, step, state, trainer.carry, Position(), CONFIG, VOCAB,
                        valid_loss=valid_loss, force=True)
    shutil.rmtree(tmp_path / "checkpoints" / "2" / "state")

    def no_optimizer(*args):
        raise AssertionError("a reader built an optimizer")

    monkeypatch.setattr(lstmjax.build, "make_optimizer", no_optimizer)
    warnings = []
    with rundir.RunDirectory(tmp_path).checkpoints(CONFIG) as checkpoints:
        best = load_params(CONFIG, checkpoints=checkpoints, step="best",
                           on_warning=warnings.append)
        latest = load_params(CONFIG, checkpoints=checkpoints)
        with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 5 in .*; it holds "
                                                    r"steps \[1, 2, 3\]"):
            load_params(CONFIG, checkpoints=checkpoints, step=5)
    assert best.step == 3
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(best.params), saved[3])
    assert latest.step == 3 and best.extra["valid_loss"] == 2.0
    assert len(warnings) == 1 and "step 2: state item missing" in warnings[0]
    assert (tmp_path / "checkpoints" / "2").is_dir()  # a reader moves nothing aside


def test_resume_rules_follow_the_config_field_metadata(tmp_path):
    assert {"model.engine", "model.unroll", "model.remat_chunk", "train.max_steps"} <= (
        resumable_fields())
    assert not {"model.hidden_size", "train.seed", "train.batch_size"} & resumable_fields()
    saved = CONFIG.to_dict()
    how = dataclasses.replace(CONFIG.model, engine="static", unroll=4, remat_chunk=2)
    rundir.check_resume(dataclasses.replace(CONFIG, model=how), saved, tmp_path)
    other = dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, seed=7))
    with pytest.raises(ValueError, match=r"another config \(train.seed: 0 -> 7\)"):
        rundir.check_resume(other, saved, tmp_path)


def test_fresh_parameters_are_a_fresh_trainers():
    """load_params without checkpoints draws the parameters from train.seed by the split that
    a trainer's state uses (steps.seed_keys); a trainer restored from a checkpoint continues."""
    trainer = build_trainer(CONFIG, steps_per_epoch=1)
    fresh = load_params(CONFIG)
    assert fresh.step == 0 and fresh.extra == {}
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(fresh.params),
                 jax.device_get(trainer.state.params))


def test_a_config_without_vocab_size_is_refused_naming_the_field():
    for build in (load_params, lambda config: build_trainer(config, steps_per_epoch=1)):
        with pytest.raises(FieldError, match=r"model.vocab_size is unset") as error:
            build(PRESETS["tiny"])
        assert error.value.field == "model.vocab_size"


def test_importing_lstmjax_loads_no_data_io_and_no_orbax():
    code = ("import json, sys; import jax, flax.linen; before = set(sys.modules); import lstmjax; "
            "print(json.dumps([sorted(sys.modules), sorted(set(sys.modules) - before)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).parent)
    loaded, added = json.loads(out.stdout)
    never = ("orbax", "lstmjax.data.corpora", "lstmjax.data.sources", "lstmjax.data.batching",
             "lstmjax.checkpoint", "lstmjax.train", "lstmjax.build")
    not_by_lstmjax = ("tensorstore", "urllib.request", "zipfile", "tqdm")  # jax may load zipfile
    assert not [m for m in loaded if m.startswith(never)]
    assert not [m for m in added if m.startswith(not_by_lstmjax)]


def test_run_files_are_replaced_whole(tmp_path, monkeypatch):
    """config.json, vocab.json and engines.json are replaced in one rename: a reader (another
    process of the run) sees the old text or the new, never a partial file; a failed write leaves
    the old file and no temporary one."""
    path = tmp_path / "engines.json"
    path.write_text("old")
    real_replace, seen = rundir.os.replace, []

    def replace(source, target):
        seen.append((pathlib.Path(target).read_text(), pathlib.Path(source).read_text()))
        real_replace(source, target)

    monkeypatch.setattr(rundir.os, "replace", replace)
    rundir.replace_text(path, "new")
    assert seen == [("old", "new")] and path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines.json"]

    def refused(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir.os, "replace", refused)
    with pytest.raises(OSError, match="No space left"):
        rundir.replace_text(path, "newer")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines.json"]
