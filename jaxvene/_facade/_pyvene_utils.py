"""pyvene's helper functions that tutorials call, for jaxvene's models and arrays.

- :func:`embed_to_distrib`: final hidden states -> a distribution over the vocabulary, through
  the model's own unembedding (pyvene's does `embed @ wte.T` for GPT-2 only);
- :func:`top_vals`, :func:`format_token`: print or return the top entries of a distribution
  with readable tokens (spaces as `_`, newlines as `\\n`);
- :func:`set_seed`: seeds Python's and NumPy's generators (and PyTorch's, if it is imported);
  JAX has no global generator, so it does not change jaxvene's random initialisations;
- :func:`train_alignment`, :func:`eval_alignment`: pyvene's built-in DAS loop and its
  evaluation over pyvene-style batches, behind `IntervenableModel.train_alignment` and
  `IntervenableModel.eval_alignment`.

Arrays may be NumPy, JAX or PyTorch (CPU) arrays.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..adapters._adapt import adapt
from ..adapters._hf_flax import HFFlaxAdapter
from ..core._run import run
from ..models.decoder import NativeDecoder
from ..models.decoder._forward import unembed
from ..training._train import make_batch, trainable_filter

__all__ = [
    "embed_to_distrib",
    "format_token",
    "top_vals",
    "set_seed",
    "set_temperatures",
    "train_alignment",
    "eval_alignment",
]


def _numpy(x):
    """A NumPy view of a NumPy, JAX or PyTorch array (PyTorch's bfloat16 as float32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------- vocabulary
def _unembedding(model) -> Callable:
    """`hidden (..., D) -> logits (..., V)` through `model`'s own LM head."""
    if isinstance(model, NativeDecoder):
        return lambda h: unembed(model.config, model.params, h)
    try:
        adapter = adapt(model)
    except TypeError:
        adapter = None
    if not isinstance(adapter, HFFlaxAdapter):
        raise TypeError(
            f"embed_to_distrib takes a HuggingFace Flax language model or a jv.NativeDecoder, got "
            f"{type(model).__name__}; for another model, multiply by its unembedding matrix yourself: "
            "jax.nn.softmax(hidden @ W_U, axis=-1)"
        )
    family = adapter.family
    if family.unembed is None:
        raise ValueError(
            f"embed_to_distrib: the {family.name} table has no unembedding (it is not a causal LM "
            "jaxvene knows the head of); multiply by the head's matrix yourself"
        )
    params, config = model.params, model.config
    base = getattr(model, "base_model_prefix", "")
    if base and base not in params:  # a bare base model (FlaxGPT2Model): its params are the base's
        if "lm_head" not in params and not getattr(config, "tie_word_embeddings", True):
            raise ValueError(
                f"embed_to_distrib: {type(model).__name__} is a base model without its LM head and its "
                "config does not tie the head to the input embeddings; pass the ...ForCausalLM model"
            )
        params = {base: params}
    unembed_fn = family.unembed
    return lambda h: unembed_fn(params, h, config)


def embed_to_distrib(model, embed, log: bool = False, logits: bool = False):
    """pyvene's `embed_to_distrib`: a distribution over the vocabulary from final hidden states.

    `embed` `(..., D)` are hidden states after the final norm (a HF model's `last_hidden_state`,
    or `hidden_states[-1]`); they go through `model`'s own head: its `lm_head`, or its tied input
    embeddings, as the model computes its logits (Gemma 2's final soft-cap included). pyvene
    handles GPT-2 only (`embed @ wte.T`); this gives the same numbers there, and works for every
    HF Flax causal LM jaxvene has a table for (bare base models through their tied embeddings)
    and for `jv.NativeDecoder`.

    Returns the softmax `(..., V)` in float32; `log=True` the log-softmax; `logits=True` the
    logits themselves, in the model's dtype (`logits` wins over `log`, as in pyvene).
    """
    h = jnp.asarray(_numpy(embed))
    vocab = _unembedding(model)(h)
    if logits:
        return vocab
    vocab = vocab.astype(jnp.float32)
    return jax.nn.log_softmax(vocab, axis=-1) if log else jax.nn.softmax(vocab, axis=-1)


def format_token(tokenizer, tok) -> str:
    """pyvene's `format_token`: `tokenizer.decode(tok)` with spaces as `_` and newlines as `\\n`.

    `tok` is a token id (int, NumPy/JAX/PyTorch scalar) or a sequence of ids. Works with
    transformers' tokenizers and with a bare `tokenizers.Tokenizer` (what `jv.load_tokenizer`
    returns without transformers; special tokens are kept, as transformers' `decode` keeps them).
    """
    ids = [int(i) for i in np.asarray(_numpy(tok)).reshape(-1)]
    if type(tokenizer).__module__.split(".")[0] == "tokenizers":
        text = tokenizer.decode(ids, skip_special_tokens=False)
    else:
        text = tokenizer.decode(ids)
    return text.replace(" ", "_").replace("\n", "\\n")


def top_vals(tokenizer, res, n: int = 10, return_results: bool = False):
    """pyvene's `top_vals`: the `n` largest entries of one distribution `res` `(V,)`.

    Prints one line per entry (`f"{token:<20} {value}"`), or, with `return_results=True`,
    returns `[(token, value), ...]` instead (largest first; `token` from :func:`format_token`).
    """
    values = np.asarray(_numpy(res))
    if values.ndim != 1:
        raise ValueError(
            f"top_vals takes one distribution of shape (vocab,), got shape {values.shape}; index it "
            "first, e.g. top_vals(tokenizer, distrib[0, -1])"
        )
    if not 0 < n <= values.shape[0]:
        raise ValueError(f"n={n} is out of range for a distribution over {values.shape[0]} tokens")
    values = values.astype(np.float64)  # exact for float32 and bfloat16, printed as floats
    order = np.argsort(-values, kind="stable")[:n]
    results = [(format_token(tokenizer, int(i)), float(values[i])) for i in order]
    if return_results:
        return results
    for tok, value in results:
        print(f"{tok:<20} {value}")
    return None


def set_seed(seed: int) -> None:
    """pyvene's `set_seed`: seeds Python's `random` and NumPy's global generator, and PyTorch's
    when PyTorch is already imported.

    JAX has no global generator: jaxvene's random initialisations take their own `seed=`
    (interventions, e.g. `jv.RotatedSpaceIntervention(dim, seed=1)` passed as a representation's
    `intervention`; default 0) or `key=`, and `jv.CausalModel`'s sampling takes `seed=`/`rng=`.
    This call changes none of them.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


# ---------------------------------------------------------------------------- temperatures
def _temperature_value(temp) -> np.ndarray:
    value = np.asarray(_numpy(temp), np.float32)
    if value.size != 1:
        raise ValueError(f"a temperature is one number, got shape {value.shape}")
    return value.reshape(())


def _tempered(iv) -> bool:
    return getattr(iv, "temperature", None) is not None and callable(getattr(iv, "set_temperature", None))


def set_temperatures(interventions: Iterable, temp) -> tuple:
    """`interventions` with every one that has a temperature set to `temp` (new modules)."""
    value = _temperature_value(temp)
    return tuple(iv.set_temperature(value) if _tempered(iv) else iv for iv in interventions)


# ---------------------------------------------------------------------------- alignment
def _batch_locations(model, inputs: Mapping) -> dict:
    """pyvene's `_batch_process_unit_location` (parallel mode): representation `i` reads its
    locations from `inputs["source_{i}->base.0.<unit>"]` (source side) and `".1.<unit>"` (base
    side), each `(batch, units)`; a unit `h.pos` reads `.h` and `.pos`."""
    left, right = [], []
    for i, rep in enumerate(model.config.representations):
        parts = rep.unit.split(".")
        sides = []
        for side in (0, 1):
            names = [f"source_{i}->base.{side}.{part}" for part in parts]
            missing = [name for name in names if name not in inputs]
            if missing:
                raise KeyError(
                    f"the batch has no {missing}: pyvene's train_alignment/eval_alignment read the "
                    f"locations of representation {i} from 'source_{i}->base.0.<unit>' (source) and "
                    f"'source_{i}->base.1.<unit>' (base); the batch has {sorted(inputs)}"
                )
            found = [_numpy(inputs[name]).tolist() for name in names]
            sides.append(found[0] if len(found) == 1 else found)
        left.append(sides[0])
        right.append(sides[1])
    return {"sources->base": (left, right)}


def _alignment_batch(model, inputs, inputs_collator):
    if inputs_collator is not None:
        inputs = inputs_collator(inputs)
    if model.mode != "parallel":
        raise NotImplementedError(
            "train_alignment/eval_alignment take parallel-mode models; for serial mode build the "
            "batches with jv.training.make_batch(model, base, sources, unit_locations, labels=...) "
            "and train with jv.training.train_interventions"
        )
    subspaces = inputs.get("subspaces")
    return make_batch(
        model,
        {"input_ids": _numpy(inputs["input_ids"])},
        [{"input_ids": _numpy(inputs["source_input_ids"])}],
        _batch_locations(model, inputs),
        subspaces=None if subspaces is None else _numpy(subspaces).tolist(),
        labels=_numpy(inputs["labels"]),
        logit_position=None,
    )


def _linear_warmup(lr: float, warmup: float, total: int) -> optax.Schedule:
    """transformers' `get_linear_schedule_with_warmup`: 0 -> lr over `warmup` updates, then
    linearly down to 0 at `total`."""

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        up = count / max(1.0, warmup)
        down = jnp.maximum(0.0, (total - count) / max(1.0, total - warmup))
        return lr * jnp.where(count < warmup, up, down)

    return schedule


_ALIGNMENT_OPTIONS = ("lr", "epochs", "warm_up_steps", "gradient_accumulation_steps", "optimizer", "scheduler")


def train_alignment(
    model,
    train_dataloader,
    compute_loss: Callable,
    compute_metrics: Callable | None = None,
    inputs_collator: Callable | None = None,
    *,
    progress: bool = True,
    **kwargs,
) -> list[float]:
    """pyvene's `IntervenableModel.train_alignment`: train the model's interventions on
    pyvene-style batches; installs the result in `model` and returns the loss of every batch.

    Each batch (after `inputs_collator`) is a dict with `input_ids`, `source_input_ids`,
    `labels`, optional `subspaces`, and the locations of representation `i` under
    `"source_{i}->base.0.pos"` (source) and `"source_{i}->base.1.pos"` (base), `(batch, units)`
    each (`.h` and `.pos` for unit `h.pos`). `compute_loss(logits, labels)` must be JAX code
    (it is differentiated): `logits` are the intervened model's full logits.

    Keyword options, as in pyvene: `lr` (1e-3), `epochs` (10), `gradient_accumulation_steps`
    (1), `warm_up_steps` (0.1), `optimizer` (an optax optimizer; default Adam with `scheduler`),
    `scheduler` (an optax schedule; default transformers' linear warmup and decay). Differences,
    on purpose: `warm_up_steps` is honoured (below 1, a fraction of the updates; pyvene always
    uses a tenth); the temperature schedule of the interventions that have one runs from 50 to
    0.1 in float32 (pyvene's is rounded to bfloat16); `compute_metrics` is not called (pyvene
    uses it only for its progress bar; the step returns only the loss).
    """
    unknown = sorted(set(kwargs) - set(_ALIGNMENT_OPTIONS))
    if unknown:
        raise TypeError(f"train_alignment got unknown options {unknown}; it takes {', '.join(_ALIGNMENT_OPTIONS)}")
    lr = float(kwargs.get("lr", 1e-3))
    epochs = int(kwargs.get("epochs", 10))
    accumulate = int(kwargs.get("gradient_accumulation_steps", 1))
    try:
        n_batches = len(train_dataloader)
    except TypeError:
        raise TypeError("train_alignment needs a sized train_dataloader (a list of batches or a DataLoader)") from None
    updates = max(1, n_batches * epochs // accumulate)
    warm = float(kwargs.get("warm_up_steps", 0.1))
    warm = warm * updates if warm < 1 else warm
    optimizer = kwargs.get("optimizer")
    scheduler = kwargs.get("scheduler")
    if optimizer is not None and scheduler is not None:
        raise TypeError("give optimizer or scheduler, not both: an optax optimizer carries its schedule")
    if optimizer is None:
        optimizer = optax.adam(_linear_warmup(lr, warm, updates) if scheduler is None else scheduler)
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax optimizer (e.g. optax.adam(1e-3)), got {type(optimizer).__name__}: "
            "a torch optimizer cannot update JAX arrays"
        )
    if accumulate > 1:
        optimizer = optax.MultiSteps(optimizer, every_k_schedule=accumulate)
    temperatures = np.linspace(50.0, 0.1, updates, dtype=np.float32)
    adapter, plan, params = model.adapter, model.plan(), model.params

    def loss(trainable, static, batch, params):
        outputs, _ = run(
            adapter,
            plan,
            params,
            eqx.combine(trainable, static),
            batch["base"],
            batch["sources"],
            batch["locations"],
            batch.get("subspaces"),
            batch.get("source_representations"),
        )
        return compute_loss(outputs["logits"], batch["labels"])

    @eqx.filter_jit
    def step(trainable, static, opt_state, batch, params):
        value, grads = jax.value_and_grad(loss)(trainable, static, batch, params)
        change, opt_state = optimizer.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, change), opt_state, value

    interventions = tuple(model.intervention_params())
    mask = trainable_filter(interventions)
    opt_state = optimizer.init(eqx.partition(interventions, mask)[0])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs * n_batches, desc="train_alignment", leave=False)
    losses: list[float] = []
    done = 0
    for _ in range(epochs):
        for inputs in train_dataloader:
            batch = _alignment_batch(model, inputs, inputs_collator)
            trainable, static = eqx.partition(interventions, mask)
            trainable, opt_state, value = step(trainable, static, opt_state, batch, params)
            interventions = eqx.combine(trainable, static)
            losses.append(float(value))
            if len(losses) % accumulate == 0:  # an update happened: anneal, as pyvene does after each
                interventions = set_temperatures(interventions, temperatures[min(done, updates - 1)])
                done += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if bar is not None:
        bar.close()
    model.set_intervention_params(interventions)
    return losses


def _weighted_average(metrics: list, weights: list[int]):
    total = sum(weights)
    if all(isinstance(m, Mapping) for m in metrics):
        return {k: sum(float(m[k]) * w for m, w in zip(metrics, weights)) / total for k in metrics[0]}
    return sum(float(m) * w for m, w in zip(metrics, weights)) / total


def eval_alignment(model, eval_dataloader, compute_metrics: Callable, inputs_collator: Callable | None = None) -> Any:
    """pyvene's `IntervenableModel.eval_alignment`: `compute_metrics([logits], [labels])` on
    every batch (pyvene-style, as :func:`train_alignment` takes them), averaged with the batch
    sizes as weights. A metric may be a number or a dict of numbers (averaged per key; pyvene's
    average fails on dicts)."""
    metrics, sizes = [], []
    for inputs in eval_dataloader:
        batch = _alignment_batch(model, inputs, inputs_collator)
        outputs, _ = model._program()(
            model.params,
            model.intervention_params(),
            batch["base"],
            batch["sources"],
            batch["locations"],
            batch["subspaces"],
            batch["source_representations"],
            None,
        )
        metrics.append(compute_metrics([outputs["logits"]], [batch["labels"]]))
        sizes.append(int(batch["labels"].shape[0]))
    if not metrics:
        raise ValueError("eval_dataloader gave no batches")
    return _weighted_average(metrics, sizes)
