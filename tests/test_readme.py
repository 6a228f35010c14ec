"""The README's library example runs as printed: the first Python block of its "Your own model"
section, executed as a script (a bidirectional LSTM classifier in Flax NNX, one Adam step)."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).parents[1] / "README.md"


def _first_python_block(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_nnx_example_trains_one_step(standard_promotion):
    """Run as a user runs it: JAX's standard promotion, not the suite's strict mode."""
    namespace = {}
    exec(compile(_first_python_block("## Your own model"), str(README), "exec"), namespace)
    model, xs, lengths = namespace["model"], namespace["xs"], namespace["lengths"]
    logits = model(xs, lengths)
    assert logits.shape == (4, 10)
    assert np.all(np.isfinite(np.asarray(logits)))
