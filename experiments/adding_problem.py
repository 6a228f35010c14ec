"""The adding problem, solved by a bidirectional LSTM in Flax NNX, on sequences of varying length.

    python -m experiments.adding_problem            # full: T up to 100, about a minute (2 cores)
    python -m experiments.adding_problem --quick    # seconds (tests/test_examples.py)

The task (Hochreiter & Schmidhuber 1997; as in Le et al. 2015 and Arjovsky et al. 2016): a
sequence of pairs (value uniform in [0, 1], marker), with exactly two markers set, one in each
half of the sequence; the target is the sum of the two marked values. Predicting 1.0 whatever
the input gives the variance of that sum, MSE 1/6 = 0.167: the baseline a model must beat.

Here the sequences have lengths drawn in [T/2, T] and are padded to T. The padding is noise,
markers included, so a model that reads past a sequence's end gets the wrong sum: only
``seq_lengths`` keeps it out. The model is :class:`lstmjax.nnx.Bidirectional` of two
:class:`lstmjax.nnx.RNN` layers of :class:`lstmjax.LSTM`; the forward direction's output at
each sequence's last valid step (:func:`lstmjax.last_valid`) and the backward direction's output
at step 0 have each read the whole sequence, and a linear head reads both. Trained on fresh
batches with optax's Adam under ``nnx.jit``; the test MSE is measured on one held-out set.

Prints the table, and writes ``results.json`` (the command, the config, train and test MSE at
each log step, the baseline) into ``--out``.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import lstmjax
import lstmjax.nnx
from experiments import script

OUT = pathlib.Path(__file__).resolve().parent / "runs" / "adding-problem"
BASELINE_MSE = 1 / 6  # predicting 1.0: the variance of a sum of two U[0, 1] values


def make_batch(key: jax.Array, batch_size: int, max_len: int):
    """``(x float[B, T, 2], target float[B], lengths int[B])`` of the adding problem, T =
    ``max_len``, lengths uniform in [T/2, T], one marker in each half of a sequence."""
    length_key, value_key, first_key, second_key, noise_key = jax.random.split(key, 5)
    lengths = jax.random.randint(length_key, (batch_size,), max_len // 2, max_len + 1)
    values = jax.random.uniform(value_key, (batch_size, max_len))
    half = lengths // 2
    first = jax.random.randint(first_key, (batch_size,), 0, half)
    second = jax.random.randint(second_key, (batch_size,), half, lengths)
    steps = jnp.arange(max_len)[None, :]
    markers = (steps == first[:, None]) | (steps == second[:, None])
    target = jnp.sum(jnp.where(markers, values, 0.0), axis=1)
    noise = jax.random.bernoulli(noise_key, 0.1, markers.shape)  # markers past the end, too
    markers = jnp.where(steps < lengths[:, None], markers, noise)
    return jnp.stack([values, markers.astype(values.dtype)], axis=-1), target, lengths


class AddingModel(nnx.Module):
    """A bidirectional LSTM layer and a linear head: ``(x [B, T, 2], lengths [B]) -> [B]``."""

    def __init__(self, hidden_size: int, *, rngs: nnx.Rngs, engine: str = "auto"):
        self.hidden_size = hidden_size

        def direction():  # an lstmjax layer as an NNX module: 2 input features, batch-major
            return lstmjax.nnx.RNN(lstmjax.LSTM(hidden_size), 2, rngs=rngs, engine=engine)

        self.rnn = lstmjax.nnx.Bidirectional(direction(), direction())
        self.head = nnx.Linear(2 * hidden_size, 1, rngs=rngs)

    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        # seq_lengths: each direction reads steps [0, lengths[b]) only; the backward direction
        # starts at each sequence's last valid step. ys: [B, T, 2H], forward features first.
        ys = self.rnn(x, seq_lengths=lengths)
        hidden = self.hidden_size
        forward = lstmjax.last_valid(ys[..., :hidden], lengths, time_major=False)  # [B, H]
        backward = ys[:, 0, hidden:]  # [B, H]
        return self.head(jnp.concatenate([forward, backward], axis=-1))[:, 0]


def mse(model: AddingModel, x: jax.Array, target: jax.Array, lengths: jax.Array) -> jax.Array:
    return jnp.mean((model(x, lengths) - target) ** 2)


@nnx.jit
def train_step(model: AddingModel, optimizer: nnx.Optimizer, x, target, lengths) -> jax.Array:
    loss, grads = nnx.value_and_grad(mse)(model, x, target, lengths)
    optimizer.update(model, grads)
    return loss


def main(argv: list[str] | None = None) -> dict:
    parser = script.parser(__doc__, OUT)
    parser.add_argument("--max-len", type=int, help="T, the longest sequence: 100 (quick: 10)")
    parser.add_argument("--hidden-size", type=int, help="H per direction: 32 (quick: 8)")
    parser.add_argument("--steps", type=int, help="training steps: 3000 (quick: 200)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, help="Adam's: 3e-3 (quick: 1e-2)")
    parser.add_argument("--test-size", type=int, default=1000, help="held-out sequences")
    parser.add_argument("--log-every", type=int, help="steps between test evaluations: 300 "
                                                      "(quick: 25)")
    parser.add_argument("--engine", default="auto", choices=lstmjax.ENGINE_NAMES)
    args = parser.parse_args(argv)
    config = script.preset_config(
        args, quick={"max_len": 10, "hidden_size": 8, "steps": 200, "learning_rate": 1e-2,
                     "log_every": 25},
        full={"max_len": 100, "hidden_size": 32, "steps": 3000, "learning_rate": 3e-3,
              "log_every": 300})

    model_key, test_key, train_key = jax.random.split(jax.random.key(args.seed), 3)
    model = AddingModel(config["hidden_size"], rngs=nnx.Rngs(model_key), engine=args.engine)
    optimizer = nnx.Optimizer(model, optax.adam(config["learning_rate"]), wrt=nnx.Param)
    batch = jax.jit(make_batch, static_argnums=(1, 2))
    test = batch(test_key, args.test_size, config["max_len"])
    evaluate = nnx.jit(mse)

    start, history, losses = time.perf_counter(), [], []
    for step in range(1, config["steps"] + 1):
        x, target, lengths = batch(jax.random.fold_in(train_key, step), args.batch_size,
                                   config["max_len"])
        losses.append(train_step(model, optimizer, x, target, lengths))
        if step % config["log_every"] == 0 or step == config["steps"]:
            history.append({"step": step, "train_mse": jnp.mean(jnp.stack(losses)).item(),
                            "test_mse": evaluate(model, *test).item()})
            losses = []
    wall_s = time.perf_counter() - start

    record = script.save_record(
        args.out, "experiments.adding_problem", argv, config, wall_s,
        baseline_mse=BASELINE_MSE,
        test_baseline_mse=jnp.mean((test[1] - 1.0) ** 2).item(),  # the same, measured
        test_mse=history[-1]["test_mse"], history=history)
    print("| step | train MSE | test MSE |\n|---|---|---|")
    for row in history:
        print(f"| {row['step']} | {row['train_mse']:.4f} | {row['test_mse']:.4f} |")
    print(f"\nbaseline (predict 1.0): MSE {BASELINE_MSE:.3f} ({record['test_baseline_mse']:.3f} on "
          f"the test set); {wall_s:.0f} s")
    return record


if __name__ == "__main__":
    main()
