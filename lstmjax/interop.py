"""Whole language models in and out: TensorFlow 1 and PyTorch weights <-> ``RNNLanguageModel``.

:mod:`lstmjax.convert` handles one recurrent stack; this module adds the embedding and the softmax
head, reads and writes the files they come in, and turns an imported model into a run directory
that ``lstmjax eval`` and ``lstmjax sample`` use as if ``lstmjax train`` had written it.

==========================  ================================================================
function                    what
==========================  ================================================================
``lm_from_tf``              TF1 variables -> ``(ModelConfig, params)``. Names of the PTB tutorial
                            (``Model/embedding [V, E]``, ``Model/RNN/multi_rnn_cell/cell_k/...``,
                            ``Model/softmax_w [H, V]``, ``Model/softmax_b [V]``) or of r2rt's
                            posts (``embedding_matrix``, ``softmax/W``, ``softmax/b``)
``lm_to_tf``                the inverse, with either convention's names
``lm_from_torch``           a state dict of ``nn.Embedding`` + ``nn.LSTM``/``GRU``/``RNN`` +
                            ``nn.Linear`` -> ``(ModelConfig, params)``
``lm_to_torch``             the inverse, with PyTorch's word_language_model names (``encoder``,
                            ``rnn``, ``decoder``)
``load_variables``          ``{name: array}`` from a ``.npz``, a torch ``.pt``, or a TF checkpoint
                            (needs TensorFlow: ``pip install 'lstmjax[tf]'``)
``save_variables``          ``.npz`` or ``.pt``
``write_run``               a run directory holding an imported model
``import_run``              ``lstmjax import``: a weights file and its vocabulary -> a run directory
``export_run``              ``lstmjax export``: a run directory's checkpoint -> a weights file
==========================  ================================================================

``params`` is the ``"params"`` collection of :class:`lstmjax.RNNLanguageModel`: run the model with
``RNNLanguageModel(config).apply({"params": params}, tokens, zero_carry(config, B))``. Round trips
are exact: ``lm_from_tf(lm_to_tf(c, p))`` and ``lm_from_torch(lm_to_torch(c, p))`` give ``p`` bit
for bit, and TF variables read and written back are the same names and bits. A torch state dict
read and written back has the same sums ``bias_ih + bias_hh`` (lstmjax keeps one bias).

Weight-tied models (``tie_weights``) export the embedding table as the softmax weight (TF's
``softmax_w`` is its transpose; torch's ``decoder.weight`` is the table itself, as a tied
``nn.Module``'s state dict holds it twice). An import whose softmax weight equals the embedding
table bit for bit gives a tied model, so tied round trips are exact too.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from lstmjax import convert
from lstmjax.cells import CELLS
from lstmjax.config import CELL_OPTIONS, Config, ModelConfig
from lstmjax.model import RNNLanguageModel, make_cells, zero_carry

TF_LM_NAMES = {
    "ptb": ("Model/embedding", "Model/softmax_w", "Model/softmax_b", "Model/RNN/multi_rnn_cell"),
    "r2rt": ("embedding_matrix", "softmax/W", "softmax/b", "rnn/multi_rnn_cell"),
}
"""Naming convention -> (embedding, softmax kernel, softmax bias, cell-stack prefix)."""
TORCH_LM_NAMES = ("encoder", "rnn", "decoder")
"""Module names that :func:`lm_to_torch` writes: PyTorch's ``examples/word_language_model``."""

# ModelConfig fields that the weights determine; the rest (dropout, engine, ...) is the user's.
MODEL_FIELDS = ("vocab_size", "hidden_size", "num_layers", "cell", "input_mode", "embed_size",
                "tie_weights", *CELL_OPTIONS)


def lm_from_tf(variables: Mapping[str, Any], *, forget_bias: float | None = None,
               scope: str | None = None) -> tuple[ModelConfig, dict[str, Any]]:
    """``(ModelConfig, params)`` of a TF1 language model: embedding, cell stack, softmax.

    The embedding and softmax are found under either convention of :data:`TF_LM_NAMES` (a name
    prefix such as ``Train/`` is allowed); the stack is read by :func:`lstmjax.convert.layers_from_tf`
    (``scope`` and ``forget_bias`` as there: an LSTM's ``forget_bias`` is not stored and must be
    given). The config has every option the weights hold; dropout and the rest are defaults.
    """
    names = {name.split(":")[0]: value for name, value in variables.items()}
    found = {}
    for convention, (embedding, kernel, bias, _) in TF_LM_NAMES.items():
        hits = [_find(names, leaf) for leaf in (embedding, kernel, bias)]
        if all(hit is not None for hit in hits):
            found[convention] = hits
    if len(found) != 1:
        expected = "; ".join(f"{c}: {', '.join(n[:3])}" for c, n in TF_LM_NAMES.items())
        raise ValueError(
            f"expected the embedding and softmax variables of one convention ({expected}), "
            f"found {'both' if found else 'neither'} among {sorted(names)[:12]}"
        )
    (embedding, kernel, bias), = found.values()
    layers = convert.layers_from_tf(variables, forget_bias=forget_bias, scope=scope)
    return _lm(layers, embedding=names[embedding], kernel=names[kernel], bias=names[bias])


def lm_to_tf(config: ModelConfig, params: Mapping[str, Any], *, names: str = "ptb"
             ) -> dict[str, np.ndarray]:
    """TF1 variables ``{name: array}`` of a model, with the ``"ptb"`` or ``"r2rt"`` names
    (:data:`TF_LM_NAMES`); the inverse of :func:`lm_from_tf`."""
    if names not in TF_LM_NAMES:
        raise ValueError(f"names must be one of {sorted(TF_LM_NAMES)}, got {names!r}")
    embedding, kernel, bias, prefix = TF_LM_NAMES[names]
    _require_embedding(config, "TF1's language models")
    return {
        embedding: np.asarray(params["embedding"]["embedding"]),
        **convert.layers_to_tf(_layers(config, params), prefix=prefix),
        kernel: _head_kernel(config, params),
        bias: np.asarray(params["head"]["bias"]),
    }


def lm_from_torch(state_dict: Mapping[str, Any], *, embedding: str | None = None,
                  head: str | None = None) -> tuple[ModelConfig, dict[str, Any]]:
    """``(ModelConfig, params)`` of a torch ``nn.Embedding`` + ``nn.LSTM``/``GRU``/``RNN`` +
    ``nn.Linear`` language model's state dict.

    The recurrent module's keys (``weight_ih_l0``, ...) are read by
    :func:`lstmjax.convert.layers_from_torch`. ``embedding`` and ``head`` name the other two modules
    (e.g. ``"encoder"``, ``"decoder"``); by default the one module with a 2-D weight and no bias is
    the embedding and the one with a weight and a bias is the head. A bidirectional module has no
    language-model form (an error).
    """
    arrays = {key: np.asarray(convert.as_array(value)) for key, value in state_dict.items()}
    if any(key.endswith("_reverse") for key in arrays):
        raise ValueError("the state dict holds a bidirectional RNN (keys *_reverse): a language "
                         "model reads left to right; use lstmjax.convert.layers_from_torch")
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if not convert.is_torch_rnn_key(key):
            module, _, leaf = key.rpartition(".")
            modules.setdefault(module, {})[leaf] = value
    embedding = embedding or _only(
        [m for m, leaves in modules.items() if set(leaves) == {"weight"}], "embedding",
        "an nn.Embedding (a 2-D weight, no bias)", modules)
    head = head or _only(
        [m for m, leaves in modules.items() if set(leaves) == {"weight", "bias"}], "head",
        "an nn.Linear (a weight and a bias)", modules)
    for name in (embedding, head):
        if name not in modules:
            raise ValueError(f"no module {name!r} in the state dict; modules: {sorted(modules)}")
    rnn = {key: value for key, value in arrays.items() if convert.is_torch_rnn_key(key)}
    return _lm(convert.layers_from_torch(rnn), embedding=modules[embedding]["weight"],
               kernel=modules[head]["weight"].T, bias=modules[head]["bias"])


def lm_to_torch(config: ModelConfig, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A torch state dict (``encoder.weight``, ``rnn.weight_ih_l0``, ..., ``decoder.weight``,
    ``decoder.bias``) for ``nn.Embedding(V, E)``, ``nn.LSTM``/``GRU``/``RNN(E, H, L)`` and
    ``nn.Linear(P, V)`` as ``encoder``, ``rnn`` and ``decoder``; the inverse of
    :func:`lm_from_torch`. Cells torch lacks are an error (see
    :func:`lstmjax.convert.layers_to_torch`)."""
    encoder, rnn, decoder = TORCH_LM_NAMES
    _require_embedding(config, "the torch language model")
    return {
        f"{encoder}.weight": np.asarray(params["embedding"]["embedding"]),
        **convert.layers_to_torch(_layers(config, params), prefix=f"{rnn}."),
        f"{decoder}.weight": _head_kernel(config, params).T,
        f"{decoder}.bias": np.asarray(params["head"]["bias"]),
    }


def _head_kernel(config: ModelConfig, params: Mapping[str, Any]) -> np.ndarray:
    """The softmax kernel ``[H_out, V]``: the head's, or the embedding table transposed if tied."""
    if config.tie_weights:
        return np.asarray(params["embedding"]["embedding"]).T
    return np.asarray(params["head"]["kernel"])


def _layers(config: ModelConfig, params: Mapping[str, Any]) -> list[convert.Layer]:
    """``[(cell, params)]`` of the model's recurrent stack."""
    return [(cell, params[f"layer_{k}"]) for k, cell in enumerate(make_cells(config))]


def _lm(layers, *, embedding, kernel, bias) -> tuple[ModelConfig, dict[str, Any]]:
    """The config and params of embedding -> stack ``[(cell, params)]`` -> head, checked
    against each other; tied (no head kernel) if ``kernel`` is ``embedding`` transposed."""
    cells = [cell for cell, _ in layers]
    cell = cells[0]
    kind = next(name for name, cls in CELLS.items() if type(cell) is cls)
    options = {name: getattr(cell, name) for name in CELL_OPTIONS if hasattr(cell, name)}
    vocab_size, embed_size = np.shape(embedding)
    tied = np.array_equal(np.asarray(kernel).T, np.asarray(embedding))
    config = ModelConfig(
        vocab_size=vocab_size, hidden_size=cell.hidden_size, num_layers=len(cells), cell=kind,
        embed_size=None if embed_size == cell.hidden_size else embed_size, tie_weights=tied,
        **options)
    if any(other != cell for other in cells):
        raise ValueError(f"the layers' cells differ ({cells}); RNNLanguageModel stacks one cell "
                         "type with one set of options")
    params = {"embedding": {"embedding": embedding},
              **{f"layer_{k}": layer for k, (_, layer) in enumerate(layers)},
              "head": {"bias": bias} if tied else {"kernel": kernel, "bias": bias}}
    return config, check_params(config, params)


def check_params(config: ModelConfig, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as JAX arrays in ``config.param_dtype``, after checking that their tree and
    shapes are those of ``RNNLanguageModel(config)`` (a ValueError names every difference)."""
    model = RNNLanguageModel(config)
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32),
                                                 zero_carry(config, 1)))["params"]
    want = {jax.tree_util.keystr(p): leaf.shape
            for p, leaf in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(p): np.shape(leaf)
           for p, leaf in jax.tree_util.tree_leaves_with_path(dict(params))}
    problems = [f"{k}: expected {list(want[k])}, got {list(got[k])}" if k in got and k in want
                else f"{k}: {'missing' if k in want else 'unexpected'}"
                for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
    if problems:
        raise ValueError("the parameters do not fit the model that the config describes: "
                         + "; ".join(problems))
    dtype = jnp.dtype(config.param_dtype)
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), dict(params))


def _find(names: Mapping[str, Any], leaf: str) -> str | None:
    hits = [name for name in names if name == leaf or name.endswith("/" + leaf)]
    if len(hits) > 1:
        raise ValueError(f"several variables end in {leaf!r}: {hits}; pass only one model's")
    return hits[0] if hits else None


def _only(candidates: list[str], what: str, looks_like: str, modules: Mapping) -> str:
    if len(candidates) != 1:
        shapes = {m: {k: list(v.shape) for k, v in leaves.items()} for m, leaves in modules.items()}
        raise ValueError(f"cannot tell the {what} module: {len(candidates)} look like {looks_like} "
                         f"among {shapes}; name it with {what}='<module>'")
    return candidates[0]


def _require_embedding(config: ModelConfig, target: str) -> None:
    if config.input_mode != "embedding":
        raise ValueError(f"model.input_mode={config.input_mode!r}: {target} has an embedding "
                         "table; only input_mode='embedding' exports")


# ---------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------


def load_variables(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` from a file of named weights.

    * ``.npz``: TF variables saved with ``np.savez(path, **{v.name: sess.run(v) for v in
      tf.global_variables()})``, or anything else by name.
    * ``.pt`` / ``.pth``: a torch state dict (``torch.save(module.state_dict(), path)``), read with
      ``weights_only=True``.
    * a TF checkpoint prefix (``model.ckpt-1000``, beside ``model.ckpt-1000.index``) or a
      directory with a ``checkpoint`` file: read with TensorFlow, which must be importable
      (``pip install 'lstmjax[tf]'``).
    """
    path = pathlib.Path(path)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    if path.suffix in (".pt", ".pth") and path.is_file():
        import torch

        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict; save "
                             "module.state_dict()")
        return {name: value.detach().numpy() for name, value in state_dict.items()}
    is_tf = path.with_name(path.name + ".index").exists() or (path / "checkpoint").is_file()
    if not is_tf:
        raise FileNotFoundError(f"{path}: expected a .npz, a .pt/.pth state dict, or a TF "
                                "checkpoint prefix (with its .index file)")
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ValueError(
            f"{path} is a TensorFlow checkpoint: reading it needs TensorFlow (pip install "
            "'lstmjax[tf]'), or save its variables as .npz where TensorFlow runs"
        ) from error
    prefix = tf.train.latest_checkpoint(str(path)) if path.is_dir() else str(path)
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def save_variables(variables: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``{name: array}`` as ``.npz`` or, for ``.pt``/``.pth``, a torch state dict."""
    path = pathlib.Path(path)
    arrays = {name: np.asarray(value) for name, value in variables.items()}
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix in (".pt", ".pth"):
        import torch

        torch.save({name: torch.from_numpy(np.array(v)) for name, v in arrays.items()},
                   path)
    else:
        raise ValueError(f"{path}: the file name must end in .npz, .pt or .pth")


# ---------------------------------------------------------------------------------------------
# Run directories.
# ---------------------------------------------------------------------------------------------


def write_run(workdir: str | os.PathLike, model: ModelConfig, params: Mapping[str, Any], vocab,
              *, base: Config | None = None) -> Config:
    """Write an imported model as a run directory; return its config.

    The config is ``base`` (default ``Config()``) with the fields the weights determine
    (:data:`MODEL_FIELDS`) taken from ``model``. ``workdir`` receives the files of
    :mod:`lstmjax.rundir` and a step-0 checkpoint of its payload (fresh optimizer state, zero
    carry, the data position at the start), so ``lstmjax eval``, ``lstmjax sample`` and
    ``lstmjax train`` (to fine-tune, with the same config) read it as a trained run.
    """
    from lstmjax import rundir
    from lstmjax.data import Position
    from lstmjax.optim import averages_iterates, make_optimizer
    from lstmjax.steps import init_state

    directory, base = rundir.RunDirectory(workdir), base or Config()
    if directory.config_file.exists():
        raise ValueError(f"{workdir} already holds a run; import into a new --workdir")
    if len(vocab) != model.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model's embedding "
                         f"has {model.vocab_size} rows; give the vocabulary it was trained with")
    config = dataclasses.replace(base, model=dataclasses.replace(
        base.model, **{name: getattr(model, name) for name in MODEL_FIELDS}))
    params = check_params(config.model, params)
    optimizer, _ = make_optimizer(config.optim, steps_per_epoch=1)
    state = init_state(RNNLanguageModel(config.model), optimizer, seed=config.train.seed,
                       params=params, averaging=averages_iterates(config.optim))
    carry = zero_carry(config.model, config.train.batch_size)
    directory.path.mkdir(parents=True, exist_ok=True)
    directory.write(config, vocab)
    with directory.checkpoints(config) as checkpoints:
        rundir.save(checkpoints, 0, state, carry, Position(), config, vocab, force=True)
    return config


def import_run(weights: str | os.PathLike, workdir: str | os.PathLike, *,
               corpus: str | None = None, vocab_file: str | os.PathLike | None = None,
               data_dir: str | None = None, base: Config | None = None,
               forget_bias: float | None = None, scope: str | None = None) -> Config:
    """``lstmjax import``: the model in ``weights`` (a torch ``.pt``/``.pth`` state dict, else TF1
    variables: ``.npz`` or a checkpoint prefix) written as a run directory; return its config.

    The vocabulary is not in the weights: ``corpus`` (the named corpus the model was trained on;
    ``data_dir`` where its files are) gives it and becomes the run's corpus, or ``vocab_file`` (an
    lstmjax ``vocab.json``, or a text file with one word per line, line k being id k). With both,
    they must agree. ``base`` (default ``Config()``) gives the settings that the weights do not;
    ``forget_bias`` and ``scope`` are :func:`lm_from_tf`'s.
    """
    from lstmjax.data import Vocab, load_corpus

    if corpus is None and vocab_file is None:
        raise ValueError("give the vocabulary: --corpus NAME (the training corpus) or --vocab FILE")
    variables = load_variables(weights)
    if pathlib.Path(weights).suffix in (".pt", ".pth"):
        model, params = lm_from_torch(variables)
    else:
        model, params = lm_from_tf(variables, forget_bias=forget_bias, scope=scope)
    base = base or Config()
    vocab = None
    if vocab_file is not None:
        text = pathlib.Path(vocab_file).read_text()
        vocab = (Vocab.from_json(text) if text.lstrip().startswith("{")
                 else Vocab(tuple(text.splitlines()), "word"))
    if corpus is not None:
        data = dataclasses.replace(base.data, corpus=corpus, data_dir=data_dir)
        corpus_vocab = load_corpus(**dataclasses.asdict(data)).vocab
        if vocab is not None and vocab != corpus_vocab:
            raise ValueError(f"--vocab {vocab_file} differs from the vocabulary of corpus "
                             f"{corpus!r}, which lstmjax eval would score with it")
        vocab, base = vocab or corpus_vocab, dataclasses.replace(base, data=data)
    return write_run(workdir, model, params, vocab, base=base)


def export_run(workdir: str | os.PathLike, out: str | os.PathLike, *,
               checkpoint: int | Literal["latest", "best"] = "latest", names: str = "ptb"
               ) -> tuple[int, int]:
    """``lstmjax export``: a run's checkpoint (``"latest"``, ``"best"`` or a step number, as
    :func:`lstmjax.trained.load_run` reads it) written to ``out`` as a torch state dict (``.pt``,
    ``.pth``) or TF1 variables (``.npz``, with ``names`` "ptb" or "r2rt"); return ``(step,
    number of arrays)``."""
    from lstmjax.trained import load_run

    config, _, _, params, step = load_run(workdir, checkpoint=checkpoint)
    if pathlib.Path(out).suffix in (".pt", ".pth"):
        variables = lm_to_torch(config.model, params)
    else:
        variables = lm_to_tf(config.model, params, names=names)
    save_variables(variables, out)
    return step, len(variables)
