"""One setup for every run: :func:`setup` builds what training, evaluation, sampling and the
benchmarks need from a config, so none of them builds its own copy.

A trainer asks for the model, the optimizer and its schedule, the jitted train step, and the
train state and carry, fresh or restored from a checkpoint. A reader (``lstmjax eval``,
``lstmjax sample``, ``lstmjax export``) asks for the model and the parameters alone: no optimizer
and no train state is built, and only the parameters are read from the checkpoint (with
optimizer="nt_asgd", the iterate average in their place: what the run evaluates).

Every array is placed on the run's device mesh (:mod:`lstmjax.parallel`): a trainer's mesh has
``train.num_devices`` devices (all by default), a reader's every device. Checkpoints hold whole
arrays, so a run saved on N devices restores on any number, bit for bit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from lstmjax import rundir
from lstmjax.checkpoint import Checkpoints
from lstmjax.config import Config
from lstmjax.data import Position
from lstmjax.model import RNNLanguageModel, zero_carry
from lstmjax.optim import averages_iterates, make_optimizer
from lstmjax.parallel import Placement, make_placement
from lstmjax.steps import TrainState, evaluate, init_params, init_state, make_train_step


@dataclasses.dataclass(frozen=True)
class Run:
    """What a run needs, built by :func:`setup`.

    Attributes:
      config: the run's config (``model.vocab_size`` set).
      model: the language model.
      params: the parameters: ``state.params`` for a trainer, the restored or fresh ones for a
        reader (NT-ASGD's average: ``lstmjax.steps.evaluation_params``).
      step: the optimizer step of ``params`` (0 when fresh).
      extra: the JSON saved with the restored checkpoint (``lstmjax.rundir.extra``); empty when
        nothing was restored.
      optimizer, schedule: the optax chain and its learning-rate schedule; None for a reader.
      train_step: the jitted ``train_step(state, carry, inputs, targets) -> (state, carry,
        metrics)`` (``lstmjax.steps.make_train_step``), donating state and carry; None for a
        reader.
      state: the train state (params, optimizer state, step, PRNG key), replicated; None for a
        reader.
      carry: the recurrent state to continue with, ``train.batch_size`` streams split over the
        mesh; None for a reader.
      position: where in the training data to continue.
      placement: the device mesh; ``params`` and ``state`` are replicated on it, and batches go
        to the steps through ``placement.shard_batch``.
    """

    config: Config
    model: RNNLanguageModel
    params: Any
    step: int
    extra: dict[str, Any]
    optimizer: optax.GradientTransformation | None = None
    schedule: optax.Schedule | None = None
    train_step: Callable | None = None
    state: TrainState | None = None
    carry: Any = None
    position: Position = dataclasses.field(default_factory=Position)
    placement: Placement | None = None

    def evaluate(self, params: Any, ids: np.ndarray, *, batch_size: int | None = None
                 ) -> dict[str, float]:
        """``lstmjax.steps.evaluate`` of ``params`` on the token ids of a split, with
        ``batch_size`` streams (default ``train.eval_batch_size``) of ``train.eval_seq_len``,
        on the run's mesh."""
        settings = self.config.train
        return evaluate(self.model, params, ids, batch_size=batch_size or settings.eval_batch_size,
                        seq_len=settings.eval_seq_len, placement=self.placement)

    def zero_carry(self) -> Any:
        """A zero carry of ``train.batch_size`` streams, split over the mesh (a new epoch's)."""
        return self.placement.put(zero_carry(self.config.model, self.config.train.batch_size),
                                  self.placement.batch_sharded)


def setup(config: Config, *, steps_per_epoch: int | None = None,
          checkpoints: Checkpoints | None = None, step: int | str = "latest",
          on_warning: Callable[[str], None] | None = None, quarantine: bool = False) -> Run:
    """Build a run of ``config``: a trainer's with ``steps_per_epoch``, else a reader's.

    Args:
      config: a config with ``model.vocab_size`` set.
      steps_per_epoch: training windows per epoch (the schedules count epochs in them): build the
        optimizer, the train step and a train state. None: parameters only.
      checkpoints: restore from them: a trainer the newest intact step's whole payload
        (``step`` is ignored), a reader the parameters of ``step`` (an int, "latest" or "best").
        None: fresh state from ``train.seed``.
      on_warning, quarantine: ``Checkpoints.restore``'s (damaged steps skipped); ``quarantine``
        only for a trainer, which saves those step numbers again.

    Raises:
      ValueError: ``model.vocab_size`` is unset, a checkpoint does not fit the config, or (a
        trainer) ``train.batch_size`` does not split over ``train.num_devices`` devices.
      FileNotFoundError, lstmjax.checkpoint.DamagedCheckpointError: no intact checkpoint to
        restore.
    """
    if config.model.vocab_size is None:
        raise ValueError("model.vocab_size is unset: set it to the vocabulary size (training "
                         "sets it from the corpus)")
    model = RNNLanguageModel(config.model)
    seed = config.train.seed
    if steps_per_epoch is None:
        placement = make_placement()

        def fresh():  # as init_state draws them
            return init_params(model, jax.random.split(jax.random.key(seed))[0])

        if checkpoints is None:
            params, restored_step, saved = fresh(), 0, {}
        else:
            params, restored_step, saved = rundir.restore_params(
                checkpoints, _abstract(fresh, placement.replicated), step=step,
                averaged=averages_iterates(config.optim), on_warning=on_warning)
        return Run(config, model, placement.put(params, placement.replicated), restored_step,
                   saved, placement=placement)

    placement = make_placement(config.train.num_devices)
    placement.check_batch(config.train.batch_size)
    optimizer, schedule = make_optimizer(config.optim, steps_per_epoch)

    def new_state():
        return init_state(model, optimizer, seed=seed, averaging=averages_iterates(config.optim))

    def new_carry():
        return zero_carry(config.model, config.train.batch_size)

    if checkpoints is None:
        state, carry, position, saved = new_state(), new_carry(), Position(), {}
    else:  # whole arrays: the checkpoint does not depend on the device count
        state, carry, position, saved = rundir.restore_training(
            checkpoints, _abstract(new_state, placement.replicated),
            _abstract(new_carry, placement.replicated), on_warning=on_warning,
            quarantine=quarantine)
    state = placement.put(state, placement.replicated)
    carry = placement.put(carry, placement.batch_sharded)
    train_step = make_train_step(
        model, optimizer, schedule, config.train.loss_scale, placement,
        lr_seq_len=config.train.seq_len if config.train.random_bptt else None)
    return Run(config, model, state.params, int(state.step), saved, optimizer=optimizer,
               schedule=schedule, train_step=train_step, state=state, carry=carry,
               position=position, placement=placement)


def _abstract(make: Callable[[], Any], sharding: jax.sharding.Sharding) -> Any:
    """The shapes and dtypes of ``make()``'s arrays, each with ``sharding``: a restore target."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype,
                                                          sharding=sharding),
                        jax.eval_shape(make))
