"""The config's declarations: cell options derived from the cell classes, and errors that carry
the dotted config field they name. (Each section's messages are tested beside what it
configures: test_model.py, test_optim.py, test_train.py, test_data.py.)"""

import dataclasses

import pytest

from lstmjax._checks import FieldError
from lstmjax._marks import IGNORED_BY_OTHER_CELLS, marked
from lstmjax.cells import CELLS, LSTM, cell_options
from lstmjax.config import CELL_OPTIONS, Config, ModelConfig, OptimConfig, TrainConfig

NOT_OFFERED = {
    "cell_clip": "LSTM: TF1's clipping of c, for imported TF weights (lstmjax.convert)",
    "proj_clip": "LSTM: TF1's clipping of the projection, as cell_clip",
    "epsilon": "LayerNormLSTM: the layer norms' variance epsilon, the tutorial's 1e-5",
}
"""Cell options that ModelConfig leaves at the cell's default, on purpose: a cell option that is
neither here nor a ModelConfig field fails the test below."""


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(cls)}


def test_cell_options_are_the_cell_fields_beyond_the_shared_ones():
    assert cell_options(LSTM) == ("forget_bias", "use_peepholes", "proj_size", "cell_clip",
                                  "proj_clip")
    assert cell_options(CELLS["rnn"]) == ()


def test_every_cell_option_is_a_model_config_field_with_the_cell_s_default():
    """A cell that gains an option fails here until ModelConfig offers it (a field of the same
    name and default: then make_cells passes it on with no other edit) or NOT_OFFERED names it."""
    model_fields = _fields(ModelConfig)
    options = {option for cls in CELLS.values() for option in cell_options(cls)}
    assert options - set(CELL_OPTIONS) == set(NOT_OFFERED)
    assert set(CELL_OPTIONS) <= options
    for cls in CELLS.values():
        for name, field in _fields(cls).items():
            if name in CELL_OPTIONS:
                assert model_fields[name].default == field.default, (cls.__name__, name)


def _another_value(default):
    """A valid value of a cell option other than its default."""
    if isinstance(default, bool):
        return not default
    return 2 if default is None else default + 0.5


@pytest.mark.parametrize("cell", CELLS)
def test_an_option_of_another_cell_is_refused_unless_marked_ignorable(cell):
    own = cell_options(CELLS[cell])
    for field in dataclasses.fields(ModelConfig):
        if field.name not in CELL_OPTIONS:
            continue
        config = {"cell": cell, field.name: _another_value(field.default)}
        if field.name in own or marked(field, IGNORED_BY_OTHER_CELLS):
            ModelConfig(**config)
            continue
        owners = " or ".join(repr(c) for c, cls in CELLS.items() if field.name in cell_options(cls))
        with pytest.raises(FieldError, match=f"{field.name} is an option of cell={owners}, not "
                                             f"of cell='{cell}'; leave it at") as err:
            ModelConfig(**config)
        assert err.value.field == f"model.{field.name}"


@pytest.mark.parametrize("section, fields, field", [
    (ModelConfig, {"hidden_size": 0}, "model.hidden_size"),
    (ModelConfig, {"num_layers": 2, "layer_sizes": (4, 0)}, "model.layer_sizes"),
    (ModelConfig, {"num_layers": 2, "layer_sizes": (4,)}, "model.layer_sizes"),
    (ModelConfig, {"cell": "gru", "zoneout_cell": 0.1}, "model.zoneout_cell"),
    (ModelConfig, {"dropout": 1.0}, "model.dropout"),
    (ModelConfig, {"tie_weights": True, "embed_size": 3}, "model.tie_weights"),
    (OptimConfig, {"decay_rate": 0.0}, "optim.decay_rate"),
    (OptimConfig, {"schedule": "cosine"}, "optim.schedule"),
    (TrainConfig, {"max_steps": None}, "train.max_steps"),
    (TrainConfig, {"random_bptt": True, "loss_scale": "sum_over_time"}, "train.random_bptt"),
    (TrainConfig, {"sample_length": -1}, "train.sample_length"),
])
def test_errors_carry_the_dotted_field(section, fields, field):
    with pytest.raises(FieldError) as err:
        section(**fields)
    assert err.value.field == field
    assert field.split(".")[1] in str(err.value)  # the message names the field as before


def test_a_config_round_trips_through_its_dict_with_data_from_the_data_layer():
    from lstmjax.data.options import DataConfig

    config = Config(data=DataConfig(corpus="ptb", data_dir="/data"))
    assert Config.from_dict(config.to_dict()) == config
    assert type(config.data) is DataConfig
