"""Named configurations: the classic recipes, the embedded-corpus default and a tiny one for tests.

Each preset cites its source and the published result it should reproduce. TF's ``keep_prob`` k
appears here as ``dropout = 1 - k``; TF's ``num_steps`` as ``seq_len``.
"""

from __future__ import annotations

import dataclasses

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


def _regularized(config: Config, **model_fields) -> Config:
    """``config`` with its model's regularizer fields set."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model_fields))


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
    # PTB medium with the AWD regularizers, as SuperNNova's scripts/mc_dropout README trains it:
    # Zaremba's medium model and SGD schedule (lr 1, x1/1.2 per epoch after epoch 6, 39 epochs,
    # B 20, T 35) with clip 10, variational dropout 0.35 on the inputs and every layer's outputs,
    # embedding dropout 0.2 and weight drop 0.2 on W_h. Published: test 78.26 in 17 minutes on
    # a GTX 1080 Ti (Zaremba's medium without them: 82.7). A GPU recipe.
    "ptb-medium-awd": _regularized(
        _ptb(650, 0.35, 0.05, 10.0, 1 / 1.2, 6, 39, 35),
        variational=True, embed_dropout=0.2, weight_drop=0.2),
    # AWD-LSTM (Merity, Keskar & Socher 2017, "Regularizing and Optimizing LSTM Language
    # Models"; salesforce/awd-lstm-lm's PTB command): 3 layers of 1150, 1150 and 400 units, a
    # 400-wide embedding tied to the softmax, NT-ASGD at lr 30 (non-monotone interval 5), clip
    # 0.25, randomized BPTT around 70, batch 20, 500 epochs, weight drop 0.5, embedding dropout
    # 0.1, AR 2, TAR 1. lstmjax has one dropout rate for the inputs and every layer's outputs:
    # 0.4 (AWD's dropouti and dropout; its dropouth between layers is 0.25); no weight decay
    # (AWD: 1.2e-6). Published: valid 60.0, test 57.3 (the paper, with fine-tuning); the
    # repository's README: 61.2 / 58.8 without its fine-tuning step, 58.8 / 56.5 with it, from
    # about 500 + 500 epochs. Not run here (days of a GPU).
    "ptb-awd-lstm": Config(
        model=ModelConfig(hidden_size=1150, num_layers=3, layer_sizes=(1150, 1150, 400),
                          embed_size=400, tie_weights=True, dropout=0.4, variational=True,
                          embed_dropout=0.1, weight_drop=0.5, ar=2.0, tar=1.0,
                          forget_bias=0.0),
        data=DataConfig(corpus="ptb"),
        optim=OptimConfig(optimizer="nt_asgd", learning_rate=30.0, max_grad_norm=0.25,
                          nt_asgd_nonmono=5),
        train=TrainConfig(batch_size=20, seq_len=70, random_bptt=True, num_epochs=500,
                          max_steps=None, loss_scale="mean", eval_every=100_000,
                          eval_batch_size=1, eval_seq_len=100, sample_length=50),
    ),
}
