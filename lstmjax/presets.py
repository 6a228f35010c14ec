"""Named configurations: the classic recipes, the embedded-corpus default and a tiny one for tests.

Each preset cites its source and the published result it should reproduce. TF's ``keep_prob`` k
appears here as ``dropout = 1 - k``; TF's ``num_steps`` as ``seq_len``.
"""

from __future__ import annotations

from lstmjax.config import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig


def _ptb(hidden, dropout, init_scale, max_grad_norm, decay_rate, decay_after_epoch, num_epochs,
         seq_len):
    """Zaremba, Sutskever & Vinyals 2014, as TF's ``tutorials/rnn/ptb/ptb_word_lm.py``: 2 layers,
    batch 20, embedding size = hidden, forget bias 0, SGD lr 1.0 on the loss summed over time."""
    return Config(
        model=ModelConfig(hidden_size=hidden, num_layers=2, dropout=dropout, forget_bias=0.0,
                          init_scale=init_scale),
        data=DataConfig(corpus="ptb"),
        optim=OptimConfig(optimizer="sgd", learning_rate=1.0, max_grad_norm=max_grad_norm,
                          schedule="epoch_decay", decay_rate=decay_rate,
                          decay_after_epoch=decay_after_epoch),
        train=TrainConfig(batch_size=20, seq_len=seq_len, num_epochs=num_epochs, max_steps=None,
                          loss_scale="sum_over_time", eval_every=2000, eval_batch_size=1,
                          eval_seq_len=100, sample_length=50),
    )


def _shakespeare(cell):
    """r2rt, "Recurrent Neural Networks in Tensorflow II": 3-layer cells on tiny-shakespeare,
    compared at the same budget, with dropout between layers and Adam."""
    return Config(
        model=ModelConfig(cell=cell, hidden_size=256, num_layers=3, dropout=0.2),
        data=DataConfig(corpus="tinyshakespeare"),
        optim=OptimConfig(optimizer="adam", learning_rate=2e-3, max_grad_norm=5.0),
        train=TrainConfig(batch_size=32, seq_len=80, max_steps=5000, eval_every=500),
    )


PRESETS: dict[str, Config] = {
    # The main job: a character LSTM on CPython's bundled documentation (lstmjax.data), a few
    # minutes on a 2-core CPU.
    "default": Config(
        model=ModelConfig(hidden_size=128, num_layers=2, embed_size=64),
        optim=OptimConfig(learning_rate=3e-3, max_grad_norm=5.0),
        train=TrainConfig(batch_size=32, seq_len=64, max_steps=1500, eval_every=500,
                          log_every=50),
    ),
    # For tests and smoke runs (TF's TestConfig, big_vision's runlocal): seconds.
    "tiny": Config(
        model=ModelConfig(hidden_size=16, num_layers=1, embed_size=8),
        optim=OptimConfig(learning_rate=1e-2),
        train=TrainConfig(batch_size=4, seq_len=8, max_steps=20, log_every=5, eval_every=10,
                          eval_batch_size=16, eval_seq_len=64, sample_length=20),
    ),
    # Udacity deep-learning assignment 6 (the TF text8 tutorial): 1 x 128 LSTM fed one-hot
    # vectors of 27 symbols, batch 64, 10 unrollings, clip 1.25, its 1,000-character validation
    # split. Tutorial: validation perplexity about 3.5 after its training.
    "text8-char": Config(
        model=ModelConfig(hidden_size=128, num_layers=1, input_mode="one_hot", forget_bias=0.0),
        data=DataConfig(corpus="text8", split="tutorial"),
        optim=OptimConfig(optimizer="adagrad", learning_rate=0.9, max_grad_norm=1.25),
        train=TrainConfig(batch_size=64, seq_len=10, max_steps=150_000, eval_every=5000,
                          eval_batch_size=1, eval_seq_len=100),
    ),
    # The same notebook's first LSTM, as its seed code trains it: 1 x 64 cell (no forget bias),
    # plain SGD at 10.0 decayed by 0.1 every 5,000 steps (staircase), clip 1.25, batch 64, 10
    # unrollings, 7,001 steps. Weights start uniform in [-0.1, 0.1] (the notebook draws some
    # from tf.truncated_normal(shape, -0.1, 0.1), i.e. mean -0.1; not reproduced).
    "text8-sgd": Config(
        model=ModelConfig(hidden_size=64, num_layers=1, input_mode="one_hot", forget_bias=0.0,
                          init_scale=0.1),
        data=DataConfig(corpus="text8", split="tutorial"),
        optim=OptimConfig(optimizer="sgd", learning_rate=10.0, max_grad_norm=1.25,
                          schedule="exponential", decay_rate=0.1, decay_steps=5000,
                          staircase=True),
        train=TrainConfig(batch_size=64, seq_len=10, max_steps=7001, eval_every=500,
                          eval_batch_size=1, eval_seq_len=100),
    ),
    "shakespeare-lstm": _shakespeare("lstm"),
    "shakespeare-gru": _shakespeare("gru"),
    "shakespeare-ln-lstm": _shakespeare("ln_lstm"),
    # Udacity "intro-to-rnns" Anna Karenina network: 2 x 512 LSTM, batch 100, 100 steps,
    # keep_prob 0.5, clip 5, Adam 1e-3, 20 epochs. Tutorial: training loss about 1.71 after 5.
    "anna-char": Config(
        model=ModelConfig(hidden_size=512, num_layers=2, dropout=0.5),
        data=DataConfig(corpus="anna"),
        optim=OptimConfig(optimizer="adam", learning_rate=1e-3, max_grad_norm=5.0),
        train=TrainConfig(batch_size=100, seq_len=100, num_epochs=20, max_steps=None,
                          eval_every=500),
    ),
    # Published: valid 120.7 / test 114.5 perplexity (small), 86.2 / 82.7 (medium), 82.2 / 78.4
    # (large). Medium and large decay by 1/1.2 and 1/1.15 per epoch as the paper (TF used 0.8).
    "ptb-small": _ptb(200, 0.0, 0.1, 5.0, 0.5, 4, 13, 20),
    "ptb-medium": _ptb(650, 0.5, 0.05, 5.0, 1 / 1.2, 6, 39, 35),
    "ptb-large": _ptb(1500, 0.65, 0.04, 10.0, 1 / 1.15, 14, 55, 35),
}
