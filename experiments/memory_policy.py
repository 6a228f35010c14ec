"""A recurrent policy learns a memory task: act step by step, train on the whole rollout.

    python -m experiments.memory_policy             # full: about 10 s on 2 CPU cores
    python -m experiments.memory_policy --quick     # seconds (tests/test_examples.py)

The task ("cue, then choose", a T-maze without the maze): an episode shows a cue (left or right)
at its first step, then ``k`` blank steps (``k`` drawn per episode), then asks for a choice. The
choice earns reward 1 if it matches the cue, else 0; actions before the choice earn nothing. A
policy without memory sees only blanks at the choice and earns 0.5 per episode on average; a
policy that keeps the cue in its LSTM state earns 1.0. Each of B environments runs episode after
episode, so episodes start and end anywhere inside a rollout of T steps.

The agent is one :class:`lstmjax.LSTM` layer and a linear head (two action logits and a value),
with plain JAX parameters. It is trained by advantage actor-critic: each iteration

1. **acts** T steps inside one ``jax.lax.scan``, one :func:`lstmjax.step_layer` per step with
   ``reset=`` at episode starts (a new episode starts from a zero carry), and
2. **trains** on that rollout with one :func:`lstmjax.run_layer` over all T steps, from the carry
   the rollout started with and with the same ``resets``: the same computation as acting, so the
   log-probabilities it recomputes equal the ones the actions were drawn with (the JSON records
   the largest difference, ``logp_gap``), while the engine runs the layer as a whole.

The LSTM's carry and the environments continue from one rollout to the next (truncated
backpropagation through time). Prints the reward table, writes ``results.json`` (the command,
the config, mean reward per episode at every iteration) and, if matplotlib is installed,
``reward.png`` into ``--out``.
"""

from __future__ import annotations

import pathlib
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import lstmjax
from experiments import script

OUT = pathlib.Path(__file__).resolve().parent / "runs" / "memory-policy"
OBSERVATION_SIZE = 3  # [cue is left, cue is right, choose now]
ACTIONS = 2  # left, right


class Env(NamedTuple):
    """B environments: the cue of the current episode (0 left, 1 right), the step within it, and
    its length (the cue, the blank steps, the choice). All ``int32[B]``."""

    cue: jax.Array
    step: jax.Array
    length: jax.Array


class Rollout(NamedTuple):
    """T steps of B environments, time-major: what the agent saw and did, and what it earned."""

    observations: jax.Array  # [T, B, 3]
    resets: jax.Array  # [T, B] bool: an episode starts here (the carry is zeroed before the step)
    actions: jax.Array  # [T, B] int32
    logp: jax.Array  # [T, B] log-probability of the action, computed while acting
    rewards: jax.Array  # [T, B]
    dones: jax.Array  # [T, B] bool: the episode's choice, its last step


def new_episodes(key: jax.Array, batch_size: int, blanks: tuple[int, int]) -> Env:
    """Fresh episodes: a random cue, ``k`` blank steps with ``k`` uniform in ``blanks``."""
    cue_key, length_key = jax.random.split(key)
    num_blanks = jax.random.randint(length_key, (batch_size,), blanks[0], blanks[1] + 1)
    return Env(jax.random.randint(cue_key, (batch_size,), 0, 2), jnp.zeros_like(num_blanks),
               num_blanks + 2)


def observe(env: Env) -> tuple[jax.Array, jax.Array]:
    """``(observation [B, 3], episode starts [B])``: the cue only at step 0, the choice flag only
    at the last step."""
    first = env.step == 0
    cue = jnp.where(first[:, None], jax.nn.one_hot(env.cue, 2), 0.0)
    choose = (env.step == env.length - 1)[:, None].astype(cue.dtype)
    return jnp.concatenate([cue, choose], axis=1), first


def env_step(key: jax.Array, env: Env, action: jax.Array, blanks: tuple[int, int]):
    """``(env, reward, done)``: the choice is rewarded, and an environment whose episode ended
    starts a new one."""
    done = env.step == env.length - 1
    reward = (done & (action == env.cue)).astype(jnp.float32)
    fresh = new_episodes(key, env.cue.shape[0], blanks)
    env = env._replace(step=env.step + 1)
    env = jax.tree.map(lambda new, old: jnp.where(done, new, old), fresh, env)
    return env, reward, done


def init_params(key: jax.Array, cell: lstmjax.LSTM) -> dict:
    """The LSTM's parameters (``cell.init``) and a linear head to 2 logits and a value."""
    cell_key, head_key = jax.random.split(key)
    kernel = jax.random.normal(head_key, (cell.output_size, ACTIONS + 1)) * 0.01
    return {"lstm": cell.init(cell_key, OBSERVATION_SIZE),
            "head": {"kernel": kernel, "bias": jnp.zeros(ACTIONS + 1)}}


def policy_head(params: dict, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """LSTM outputs ``[..., H]`` -> ``(log-probabilities [..., 2], value [...])``."""
    out = y @ params["head"]["kernel"] + params["head"]["bias"]
    return jax.nn.log_softmax(out[..., :ACTIONS]), out[..., ACTIONS]


def act(cell, params, env, carry, key, *, num_steps: int, blanks: tuple[int, int]):
    """Run the policy ``num_steps`` steps, one LSTM step at a time, as an agent acts.

    Returns ``((env, carry), rollout)``: the state to continue from, and the rollout.
    """

    def one_step(state, key):
        env, carry = state
        observation, first = observe(env)
        # step_layer: one step of the layer; reset= zeroes the carry of the environments whose
        # episode starts here, as run_layer's resets= does at the same step.
        carry, y = lstmjax.step_layer(cell, params["lstm"], carry, observation, reset=first)
        logp, _ = policy_head(params, y)
        action_key, env_key = jax.random.split(key)
        action = jax.random.categorical(action_key, logp)
        env, reward, done = env_step(env_key, env, action, blanks)
        chosen = jnp.take_along_axis(logp, action[:, None], axis=1)[:, 0]
        return (env, carry), Rollout(observation, first, action, chosen, reward, done)

    return jax.lax.scan(one_step, (env, carry), jax.random.split(key, num_steps))


def returns_and_mask(rollout: Rollout) -> tuple[jax.Array, jax.Array]:
    """Each step's return (the reward of its episode's choice: no discount, reward only at the
    end) and whether that choice falls inside the rollout (steps of an episode that continues
    past the rollout have no return yet and are left out, mask 0). Both ``float[T, B]``."""

    def backwards(next_return, step):
        reward, done = step
        value = jnp.where(done, reward, next_return)
        return value, value

    _, returns = jax.lax.scan(backwards, jnp.zeros_like(rollout.rewards[0]),
                              (rollout.rewards, rollout.dones), reverse=True)
    return returns, jax.lax.cummax(rollout.dones.astype(returns.dtype), axis=0, reverse=True)


def loss_fn(params, cell, carry, rollout: Rollout, *, engine: str, entropy_cost: float):
    """Actor-critic loss on a rollout. The LSTM runs over the whole rollout in one
    :func:`lstmjax.run_layer` call, from the carry the rollout started with (a constant: the
    gradient stops at the rollout's start), with the rollout's resets: the same outputs that
    acting computed step by step."""
    _, ys = lstmjax.run_layer(cell, params["lstm"], carry, rollout.observations,
                              resets=rollout.resets, engine=engine)  # [T, B, H]
    logp_all, value = policy_head(params, ys)
    logp = jnp.take_along_axis(logp_all, rollout.actions[..., None], axis=2)[..., 0]
    returns, mask = returns_and_mask(rollout)
    advantage = jax.lax.stop_gradient(returns - value)
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
    per_step = -logp * advantage + 0.5 * (returns - value) ** 2 - entropy_cost * entropy
    loss = jnp.sum(per_step * mask) / jnp.maximum(jnp.sum(mask), 1)
    return loss, logp


def make_iteration(cell, optimizer, *, num_steps, blanks, engine, entropy_cost):
    """One jitted iteration: act, then update on the rollout. Returns metrics per iteration:
    mean reward per finished episode, episodes, and the largest |log-prob while acting - log-prob
    recomputed by run_layer|."""

    @jax.jit
    def iteration(params, opt_state, env, carry, key):
        (env, next_carry), rollout = act(cell, params, env, carry, key, num_steps=num_steps,
                                         blanks=blanks)
        grad_fn = jax.grad(loss_fn, has_aux=True)
        grads, logp = grad_fn(params, cell, carry, rollout, engine=engine,
                              entropy_cost=entropy_cost)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        episodes = jnp.sum(rollout.dones)
        metrics = {"mean_reward": jnp.sum(rollout.rewards) / jnp.maximum(episodes, 1),
                   "episodes": episodes,
                   "logp_gap": jnp.max(jnp.abs(logp - rollout.logp))}
        return params, opt_state, env, next_carry, metrics

    return iteration


def main(argv: list[str] | None = None) -> dict:
    parser = script.parser(__doc__, OUT)
    parser.add_argument("--iterations", type=int, help="default 500 (quick: 100)")
    parser.add_argument("--envs", type=int, help="B, environments run in parallel: 64 (quick: 32)")
    parser.add_argument("--rollout", type=int, help="T, steps per rollout: 64 (quick: 16)")
    parser.add_argument("--blanks", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="blank steps between cue and choice, drawn per episode: 1 20 "
                             "(quick: 1 3)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--entropy-cost", type=float, default=0.01)
    parser.add_argument("--engine", default="auto", choices=lstmjax.ENGINE_NAMES,
                        help="run_layer's engine for training")
    args = parser.parse_args(argv)
    config = script.preset_config(
        args, quick={"iterations": 100, "envs": 32, "rollout": 16, "blanks": (1, 3)},
        full={"iterations": 500, "envs": 64, "rollout": 64, "blanks": (1, 20)})
    iterations, envs, num_steps = config["iterations"], config["envs"], config["rollout"]
    blanks = tuple(config["blanks"])

    cell = lstmjax.LSTM(args.hidden_size)
    optimizer = optax.adam(args.learning_rate)
    key = jax.random.key(args.seed)
    param_key, env_key, key = jax.random.split(key, 3)
    params = init_params(param_key, cell)
    opt_state = optimizer.init(params)
    env, carry = new_episodes(env_key, envs, blanks), cell.zero_carry(envs)
    iteration = make_iteration(cell, optimizer, num_steps=num_steps, blanks=blanks,
                               engine=args.engine, entropy_cost=args.entropy_cost)

    start, history = time.perf_counter(), []
    for i in range(iterations):
        params, opt_state, env, carry, metrics = iteration(params, opt_state, env, carry,
                                                           jax.random.fold_in(key, i))
        history.append({"iteration": i, **{k: v.item() for k, v in metrics.items()}})
    wall_s = time.perf_counter() - start

    record = script.save_record(args.out, "experiments.memory_policy", argv, config, wall_s,
                                memoryless_baseline=0.5,
                                logp_gap=max(h["logp_gap"] for h in history), history=history)
    print_table(history)
    print(f"\nmemoryless baseline 0.5; largest |logp(act) - logp(run_layer)| "
          f"{record['logp_gap']:.1e}; {wall_s:.0f} s")
    plot(history, args.out / "reward.png")
    return record


def print_table(history: list[dict], rows: int = 10) -> None:
    """Mean reward per episode, averaged over ``rows`` equal spans of iterations."""
    print("| iterations | mean reward | episodes |\n|---|---|---|")
    span = max(1, len(history) // rows)
    for first in range(0, len(history), span):
        chunk = history[first:first + span]
        reward = sum(h["mean_reward"] for h in chunk) / len(chunk)
        episodes = sum(h["episodes"] for h in chunk)
        print(f"| {first}-{first + len(chunk) - 1} | {reward:.3f} | {episodes} |")


def plot(history: list[dict], path: pathlib.Path) -> None:
    """The reward curve, if matplotlib is installed (``pip install lstmjax[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.plot([h["iteration"] for h in history], [h["mean_reward"] for h in history],
              label="recurrent policy (LSTM)")
    axes.axhline(0.5, color="gray", linestyle="--", label="memoryless baseline")
    axes.set(xlabel="iteration", ylabel="mean reward per episode", ylim=(0, 1.05),
             title="cue, then choose")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
