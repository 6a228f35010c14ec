"""What a run needs, built from its config in one place, as two functions for the two cases:

- :func:`build_trainer` -> :class:`Trainer`: the model, the optimizer and its schedule, the jitted
  train step, and the train state and carry, fresh or restored from a checkpoint (training and
  the benchmarks);
- :func:`load_params` -> :class:`TrainedModel`: the model and one checkpoint's parameters alone
  (``lstmjax eval``, ``sample``, ``export``): no optimizer and no train state is built, and only
  the parameters are read (with optimizer="nt_asgd", the iterate average in their place: what the
  run evaluates).

Fresh parameters and the run's PRNG key come from ``train.seed`` by one split,
:func:`lstmjax.steps.seed_keys`, so a reader's fresh parameters are a trainer's.

Every array is placed on the run's device mesh (:mod:`lstmjax.parallel`): a trainer's mesh has
``train.num_devices`` devices (all by default), a reader's every device. Checkpoints hold whole
arrays, so a run saved on N devices restores on any number, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import numpy as np
import optax

from lstmjax import rundir
from lstmjax._checks import FieldError
from lstmjax.checkpoint import Checkpoints
from lstmjax.config import Config
from lstmjax.data import Position
from lstmjax.model import RNNLanguageModel, zero_carry
from lstmjax.optim import averages_iterates, make_optimizer
from lstmjax.parallel import Placement, make_placement
from lstmjax.steps import TrainState, evaluate, init_params, init_state, make_train_step, seed_keys


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What training needs, built by :func:`build_trainer`.

    Attributes:
      config: the run's config (``model.vocab_size`` set).
      model: the language model.
      optimizer, schedule: the optax chain and its learning-rate schedule.
      train_step: the jitted ``train_step(state, carry, inputs, targets) -> (state, carry,
        metrics)`` (``lstmjax.steps.make_train_step``), donating state and carry.
      state: the train state (params, optimizer state, step, PRNG key), replicated on the mesh.
      carry: the recurrent state to continue with, ``train.batch_size`` streams split over the
        mesh.
      step: the optimizer step of ``state`` (0 when fresh).
      position: where in the training data to continue.
      extra: the JSON saved with the restored checkpoint (``lstmjax.rundir.extra``); empty when
        fresh.
      placement: the device mesh; batches go to ``train_step`` through
        ``placement.shard_batch``.
    """

    config: Config
    model: RNNLanguageModel
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    train_step: Callable
    state: TrainState
    carry: Any
    step: int
    position: Position
    extra: dict[str, Any]
    placement: Placement

    def evaluate(self, params: Any, ids: np.ndarray, *, batch_size: int | None = None
                 ) -> dict[str, float]:
        """:func:`evaluate_split` of ``params`` on the token ids of a split."""
        return evaluate_split(self.config, self.model, params, ids, self.placement,
                              batch_size=batch_size)

    def zero_carry(self) -> Any:
        """A zero carry of ``train.batch_size`` streams, split over the mesh (a new epoch's)."""
        return self.placement.put(zero_carry(self.config.model, self.config.train.batch_size),
                                  self.placement.batch_sharded)


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A model and the parameters of one checkpoint, built by :func:`load_params`.

    Attributes:
      config: the run's config.
      model: the language model.
      params: the checkpoint's parameters (NT-ASGD's average: what the run evaluates), or fresh
        ones from ``train.seed``; replicated on the mesh.
      step: the optimizer step of ``params`` (0 when fresh).
      extra: the JSON saved with the checkpoint (``lstmjax.rundir.extra``); empty when fresh.
      placement: the device mesh, every device.
    """

    config: Config
    model: RNNLanguageModel
    params: Any
    step: int
    extra: dict[str, Any]
    placement: Placement

    def evaluate(self, ids: np.ndarray, *, batch_size: int | None = None) -> dict[str, float]:
        """:func:`evaluate_split` of the parameters on the token ids of a split."""
        return evaluate_split(self.config, self.model, self.params, ids, self.placement,
                              batch_size=batch_size)


def build_trainer(config: Config, steps_per_epoch: int, *, checkpoints: Checkpoints | None = None,
                  on_warning: Callable[[str], None] | None = None, quarantine: bool = False
                  ) -> Trainer:
    """The :class:`Trainer` of ``config``: fresh from ``train.seed``, or the newest intact step
    of ``checkpoints``, its whole payload.

    Args:
      config: a config with ``model.vocab_size`` set.
      steps_per_epoch: training windows per epoch (the schedules count epochs in them).
      checkpoints: restore from them; None: a fresh state.
      on_warning, quarantine: ``Checkpoints.restore``'s (damaged steps skipped, and with
        ``quarantine`` moved aside so that their step numbers can be saved again).

    Raises:
      lstmjax._checks.FieldError: ``model.vocab_size`` is unset, or ``train.batch_size`` does not
        split over ``train.num_devices`` devices.
      ValueError: a checkpoint does not fit the config.
      FileNotFoundError, lstmjax.checkpoint.DamagedCheckpointError: no intact checkpoint to
        restore.
    """
    model = _model(config)
    settings = config.train
    placement = make_placement(settings.num_devices)
    placement.check_batch(settings.batch_size)
    optimizer, schedule = make_optimizer(config.optim, steps_per_epoch)

    def new_state():
        return init_state(model, optimizer, seed=settings.seed,
                          averaging=averages_iterates(config.optim))

    def new_carry():
        return zero_carry(config.model, settings.batch_size)

    if checkpoints is None:
        state, carry, position, saved = new_state(), new_carry(), Position(), {}
    else:  # whole arrays: the checkpoint does not depend on the device count
        state, carry, position, saved = rundir.restore_training(
            checkpoints, _restore_target(new_state, placement.replicated),
            _restore_target(new_carry, placement.replicated), on_warning=on_warning,
            quarantine=quarantine)
    train_step = make_train_step(
        model, optimizer, schedule, settings.loss_scale, placement,
        lr_seq_len=settings.seq_len if settings.random_bptt else None)
    return Trainer(config, model, optimizer, schedule, train_step,
                   state=placement.put(state, placement.replicated),
                   carry=placement.put(carry, placement.batch_sharded), step=int(state.step),
                   position=position, extra=saved, placement=placement)


def load_params(config: Config, *, checkpoints: Checkpoints | None = None,
                step: int | Literal["latest", "best"] = "latest",
                on_warning: Callable[[str], None] | None = None) -> TrainedModel:
    """The :class:`TrainedModel` of ``config``: the parameters of checkpoint ``step`` (an int,
    "latest" or "best") of ``checkpoints``, reading neither the optimizer state nor the carry;
    fresh parameters from ``train.seed`` when ``checkpoints`` is None.

    Damaged steps are skipped for the newest (or best) intact one, as ``Checkpoints.restore``
    does (``on_warning`` gets the line that says so); nothing is moved aside.

    Raises:
      lstmjax._checks.FieldError: ``model.vocab_size`` is unset.
      ValueError: the checkpoint does not fit the config.
      FileNotFoundError: no checkpoint, or none for the int ``step`` (the message lists the
        steps there are).
      lstmjax.checkpoint.DamagedCheckpointError: no intact checkpoint to read.
    """
    model = _model(config)
    placement = make_placement()

    def fresh():
        return init_params(model, seed_keys(config.train.seed)[0])

    if checkpoints is None:
        params, restored_step, saved = fresh(), 0, {}
    else:
        params, restored_step, saved = rundir.restore_params(
            checkpoints, _restore_target(fresh, placement.replicated), step=step,
            averaged=averages_iterates(config.optim), on_warning=on_warning)
    return TrainedModel(config, model, placement.put(params, placement.replicated), restored_step,
                        saved, placement)


def evaluate_split(config: Config, model: RNNLanguageModel, params: Any, ids: np.ndarray,
                   placement: Placement, *, batch_size: int | None = None) -> dict[str, float]:
    """``lstmjax.steps.evaluate`` of ``params`` on the token ids of a split, with
    ``batch_size`` streams (default ``train.eval_batch_size``) of ``train.eval_seq_len``, on
    ``placement``'s mesh."""
    settings = config.train
    return evaluate(model, params, ids, batch_size=batch_size or settings.eval_batch_size,
                    seq_len=settings.eval_seq_len, placement=placement)


def _model(config: Config) -> RNNLanguageModel:
    if config.model.vocab_size is None:
        raise FieldError("model.vocab_size", "model.vocab_size is unset: set it to the vocabulary "
                         "size (training sets it from the corpus)")
    return RNNLanguageModel(config.model)


def _restore_target(make: Callable[[], Any], sharding: jax.sharding.Sharding) -> Any:
    """``jax.ShapeDtypeStruct`` of each of ``make()``'s arrays, with ``sharding``: a restore
    target (``make`` is traced, not run)."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                          sharding=sharding),
                        jax.eval_shape(make))
