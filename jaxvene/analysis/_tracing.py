"""Causal tracing (Meng et al. 2022, ROME): where does a model recall a fact?

Corrupt the subject's token embeddings with Gaussian noise, then restore the *clean* activation
of one component at one (layer, position) and measure how much of the clean prediction comes
back. Restoring is activation patching with the clean run as the source; each component's
table is one compiled :func:`jaxvene.sweep`, averaged over noise samples (the samples are the
batch, so they cost one program, not a loop).

Example (`examples/causal_tracing.py` runs it on the shipped facts model)::

    trace = jv.causal_trace(model, {"input_ids": ids}, subject=[1, 2, 3], target=token_id,
                            key=jax.random.key(0))
    trace.scores["mlp_output"].shape       # (layers, positions)
    trace.plot(tokenizer=tokenizer)        # a matplotlib Figure, one panel per component
    trace.save_heatmaps("out/", tokenizer=tokenizer)  # one PNG per component
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..adapters._adapt import layer_stack
from ._plotting import plot_grid, save_figure
from ._sweep import sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["causal_trace", "CausalTrace", "embedding_noise_scale"]

#: ROME restores windows of 10 layers for MLP and attention outputs, single layers for the stream.
ROME_WINDOWS = {"block_output": 1, "mlp_output": 10, "attention_output": 10}


@dataclass
class CausalTrace:
    """Result of :func:`causal_trace`: probabilities of the target token (averaged over noise
    samples) for the clean run, the corrupted run, and every restored (layer, position)."""

    clean: float
    corrupted: float
    scores: dict = field(default_factory=dict)  # component -> (layers, positions)
    subject: tuple = ()
    windows: dict = field(default_factory=dict)
    target: int | None = None  # the token id whose probability is measured
    input_ids: tuple = ()  # the prompt's token ids

    def indirect_effect(self, component: str) -> np.ndarray:
        """How much restoring recovers: `score - corrupted`, per (layer, position)."""
        return self.scores[component] - self.corrupted

    def top_sites(self, k: int = 5):
        """The `k` restorations that recover the most: `(component, layer, position, score)`."""
        rows = [(c, int(l), int(p), float(s[l, p])) for c, s in self.scores.items() for l, p in np.ndindex(*s.shape)]
        return sorted(rows, key=lambda r: -r[3])[:k]

    def plot(
        self,
        tokens: Sequence[str] | None = None,
        *,
        tokenizer=None,
        target: str | None = None,
        components: Sequence[str] | None = None,
        shared_scale: bool = True,
        vmin: float | None = None,
        vmax: float | None = None,
        dpi: float = 100,
    ) -> Figure:
        """ROME's picture: one panel per component, the prompt's tokens down (the subject's
        marked `*`), the restored layer across, colour = p(target); one colour scale for every
        panel unless `shared_scale=False` (`vmin`/`vmax` fix its ends). Returns a matplotlib
        `Figure` (see :func:`jaxvene.analysis.plot_grid`); nothing touches pyplot or the backend.

        Token strings come from `tokens`, or from `tokenizer` (decoding the prompt and the
        target); `target` names the target token (default: decoded, else its id).
        """
        components = list(self.scores) if components is None else list(components)
        positions = next(iter(self.scores.values())).shape[1]
        ids = list(self.input_ids)
        if tokens is None and tokenizer is not None and len(ids) == positions:
            tokens = [_decode(tokenizer, [i]) for i in ids]
        if target is None and self.target is not None and tokenizer is not None:
            target = _decode(tokenizer, [self.target])
        name = repr(target) if target is not None else (f"token {self.target}" if self.target is not None else "target")
        p = f"p({name})"
        prompt = f" of {_decode(tokenizer, ids)!r} -> {name}" if tokenizer is not None and ids else ""
        title = (
            f"Causal trace{prompt}\n{p} with one clean activation restored: "
            f"clean run {self.clean:.3f}, subject noised {self.corrupted:.3f}"
        )
        tables = {}
        for c in components:
            window = self.windows.get(c, 1)
            tables[c + (f" (window {window})" if window > 1 else "")] = self.scores[c].T
        if shared_scale:
            lo, hi = self._range(components)
            vmin, vmax = lo if vmin is None else vmin, hi if vmax is None else vmax
        return plot_grid(
            tables,
            row_label="token" if tokens is not None else "position",
            column_label="restored layer",
            rows=tokens,
            title=title,
            colorbar_label=p,
            cmap=[_COLOURS.get(c, "Blues") for c in components],
            shared_scale=shared_scale,
            vmin=vmin,
            vmax=vmax,
            marked_rows=self.subject,
            note="* subject token (its embedding is noised)",
            dpi=dpi,
        )

    def save_heatmaps(
        self,
        out_dir: str,
        tokens: Sequence[str] | None = None,
        *,
        tokenizer=None,
        target: str | None = None,
        shared_scale: bool = True,
        dpi: float = 100,
    ) -> list[str]:
        """One PNG per component, `causal_trace_{component}.png` (see :meth:`plot`; with
        `shared_scale` every file has the same colour scale). Returns the paths."""
        lo, hi = self._range(list(self.scores)) if shared_scale else (None, None)
        paths = []
        for c in self.scores:
            fig = self.plot(tokens, tokenizer=tokenizer, target=target, components=[c], vmin=lo, vmax=hi, dpi=dpi)
            paths.append(save_figure(fig, os.path.join(out_dir, f"causal_trace_{c}.png")))
        return paths

    def _range(self, components) -> tuple[float, float]:
        """The colour scale's ends: every score of `components`, the clean and corrupted runs."""
        every = np.concatenate([self.scores[c].ravel() for c in components] + [np.array([self.clean, self.corrupted])])
        return float(every.min()), float(every.max())


_COLOURS = {"block_output": "Purples", "mlp_output": "Greens", "attention_output": "Reds"}


def _decode(tokenizer, ids) -> str:
    ids = [int(i) for i in ids]
    if hasattr(tokenizer, "decode"):
        return str(tokenizer.decode(ids, skip_special_tokens=len(ids) > 1))  # the prompt without [BOS]
    return "".join(tokenizer.convert_ids_to_tokens(ids))


class TokenProbability(eqx.Module):
    """Metric: the probability of `token` at the last position, per example. The token is an
    array field, so it is data to the compiled sweep: tracing another fact of the same length
    reuses the program."""

    token: jax.Array

    def __init__(self, token):
        self.token = jnp.asarray(token, jnp.int32)

    def __call__(self, logits):
        return jax.nn.softmax(logits[:, -1].astype(jnp.float32), axis=-1)[:, self.token]


def embedding_noise_scale(model, params=None, factor: float = 3.0) -> float:
    """ROME's noise level: `factor` times the standard deviation of the token embeddings."""
    stack = layer_stack(model, "embedding_noise_scale")
    params = stack.adapter.params if params is None else params
    emb = stack.embedding_matrix(params)
    return float(factor * jnp.std(emb) * stack.embedding_scale)


@eqx.filter_jit
def _corrupt(stack, prob, params, batch, in_subject, key, scale):
    """Corrupted embeddings, and the target's probability on the clean and corrupted runs."""
    clean_embedding = stack.embed(params, batch)
    noise = scale * jax.random.normal(key, clean_embedding.shape, clean_embedding.dtype)
    corrupted = clean_embedding + jnp.where(in_subject[None, :, None], noise, 0)
    clean_p = prob(stack.head(params, stack.scan(params, batch)[0][-1][:, -1:])).mean()
    corrupted_p = prob(stack.head(params, stack.scan(params, batch, corrupted)[0][-1][:, -1:])).mean()
    return corrupted, clean_p, corrupted_p


def causal_trace(
    model,
    inputs: dict,
    subject: Sequence[int],
    target: int,
    *,
    key: jax.Array,
    components: Sequence[str] = ("block_output", "mlp_output", "attention_output"),
    windows: dict | None = None,
    samples: int = 10,
    noise_scale: float | None = None,
    layers: Sequence[int] | None = None,
    chunk_size: int = 32,
    progress: bool = True,
    params=None,
) -> CausalTrace:
    """ROME's causal tracing of one prompt.

    Args:
      model: a HuggingFace Flax causal LM of a family with a layer stack (see `jv.sweep`).
        The noise is added to the hidden states entering layer 0: for GPT-2, LLaMA, GPT-Neo,
        GPT-J and GPT-NeoX that is the token embeddings (plus learned positions, which the
        noise does not care about), as in ROME; for BLOOM it is after the embedding LayerNorm
        and for OPT after `project_in`.
      inputs: `{"input_ids": (1, T)}`, one prompt.
      subject: positions of the subject's tokens (the ones corrupted).
      target: token id whose probability at the last position is measured.
      key: PRNG key for the noise (explicit: same key, same table).
      components: which outputs to restore.
      windows: restore `window` consecutive layers centred on each layer; default
        ROME's (1 for block_output, 10 for mlp_output and attention_output). `{}` for none.
      samples: noise samples averaged (run as one batch).
      noise_scale: standard deviation of the noise; default 3 x the embeddings' std.

    Returns:
      A :class:`CausalTrace` with the clean and corrupted probabilities and a
      `(layers, positions)` table per component.
    """
    stack = layer_stack(model, "causal_trace")
    params = stack.adapter.params if params is None else params
    prepared = stack.adapter.prepare(inputs)
    ids = np.asarray(prepared["input_ids"])
    if ids.shape[0] != 1:
        raise ValueError(f"causal_trace takes one prompt (batch 1), got a batch of {ids.shape[0]}")
    length = ids.shape[1]
    subject = tuple(int(p) for p in subject)
    bad = [p for p in subject if not 0 <= p < length]
    if bad or not subject:
        raise IndexError(f"subject positions must be within 0..{length - 1}; got {list(subject)}")
    if not 0 <= int(target) < stack.adapter.vocab_size:
        raise ValueError(f"target token {target} is outside the vocabulary of {stack.adapter.vocab_size}")
    windows = dict(ROME_WINDOWS if windows is None else windows)
    scale = embedding_noise_scale(model, params) if noise_scale is None else float(noise_scale)

    batch = {k: jnp.repeat(v, samples, axis=0) for k, v in prepared.items()}
    prob = TokenProbability(int(target))
    in_subject = jnp.zeros((length,), bool).at[jnp.asarray(subject)].set(True)
    corrupted_embedding, clean_p, corrupted_p = _corrupt(
        stack, prob, params, batch, in_subject, key, jnp.float32(scale)
    )
    clean_p, corrupted_p = float(clean_p), float(corrupted_p)
    scores = {}
    for component in components:
        table = sweep(
            model,
            batch,
            batch,
            metric=prob,
            component=component,
            layers=layers,
            window=windows.get(component, 1),
            chunk_size=chunk_size,
            progress=progress,
            base_embedding=corrupted_embedding,
            params=params,
        )
        scores[component] = table.mean(axis=-1)
    windows_used = {c: windows.get(c, 1) for c in components}
    return CausalTrace(clean_p, corrupted_p, scores, subject, windows_used, int(target), tuple(ids[0].tolist()))
