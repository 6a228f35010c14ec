"""The benchmark shapes: the classic recipes' language models, plus one long sequence.

Every benchmark trains the same math: token embedding (E = H), a stack of LSTM layers, a dense
layer to V logits, softmax cross-entropy, global-norm clipping and Adam.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark problem: vocabulary V, hidden size H, layers L, batch B, steps per window T."""

    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    batch_size: int
    seq_len: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in [
        Shape("text8-char", 27, 128, 1, 64, 10),
        Shape("ptb-small", 10000, 200, 2, 20, 20),
        Shape("ptb-medium", 10000, 650, 2, 20, 35),
        Shape("anna-char", 83, 512, 2, 100, 100),
        Shape("ptb-large", 10000, 1500, 2, 20, 35),
        Shape("long-seq", 128, 256, 1, 32, 1000),
    ]
}

# Seconds-long stand-ins for --quick (and the test that keeps the scripts from rotting).
QUICK_SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in [
        Shape("quick-char", 16, 8, 2, 4, 6),
        Shape("quick-word", 50, 8, 1, 2, 5),
    ]
}
