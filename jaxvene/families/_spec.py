"""The shape of a site table, and the helpers that several families' tables share.

A site table (:class:`Family`) maps pyvene's component names (`block_output`, `mlp_activation`,
`head_query_output`, ...) to where each lives inside a layer (:class:`Component`): a module path
relative to the layer, whether the value is that module's input or output, and how to view it (a
third of GPT-2's fused q/k/v projection; split into query heads or key/value heads). It may also
say how to run the model layer by layer (:class:`LayerStackSpec`). Adding a family means adding
a table (a module next to this one, listed in `_registry.FAMILIES`, or a table of your own
passed to :func:`~jaxvene.families.register_family`), not touching the engine.

Conventions shared with pyvene: q/k/v are the projections *before* rotary embeddings or
scaling; `mlp_activation` is the activation function's output (GPT-2: the input of `c_proj`;
LLaMA: `act(gate_proj(x))`, before the product with `up_proj(x)`); `attention_value_output` is
the concatenation of the heads' outputs before the output projection; `attention_output` and
`mlp_output` are the sublayer's contribution *before* it is added to the residual stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Component", "Family", "LayerStackSpec", "tied_unembed", "lm_head_unembed", "tied_or_lm_head_unembed"]


@dataclass(frozen=True)
class Component:
    """Where one of pyvene's components lives inside a layer, and which view of it to take.

    Attributes:
        path: the module's path relative to the layer, dot-separated (`"mlp.c_proj"`,
            `"self_attn.q_proj"`); `""` is the layer itself.
        io: `"input"` (the first argument of the module's call) or `"output"` (its return
            value, or the first element of a returned tuple).
        part: `(index, count)`: the value is the `index`-th of `count` equal slices of the last
            axis (GPT-2's fused q/k/v projection: `(0, 3)` is q); None: all of it.
        heads: `"query"` or `"kv"`: split the last axis into heads, as many as the family's
            `heads` gives under that key (query heads, or key/value heads, fewer under grouped-query
            attention); None: no head view.
        stack: encoder-decoders only: the layer stack this component lives in (a key of
            `Family.stacks`); None is the family's main stack, `Family.layers`.
    """

    path: str
    io: str
    part: tuple[int, int] | None = None
    heads: str | None = None
    stack: str | None = None


@dataclass(frozen=True)
class LayerStackSpec:
    """How `jaxvene.adapters._stack.LayerStack` runs a family as embed -> layers -> final norm.

    The callables get *bound* modules of the model itself, so its own embeddings, layers and
    norms run (nothing is restated): `base` is the base model (`transformer`, `model`, ...).

    Attributes:
        embed: `(base, inputs) -> h`, the hidden states entering layer 0.
        layer: `(base, i) -> layer`, the i-th layer module.
        call: `(layer, h, inputs) -> h`, one layer's forward pass, deterministic.
        final: `(base, h) -> h`, the base model's `last_hidden_state` from the last layer's
            output (final norm, ...).
        embedding: the path of the token embedding table in the base model's params.
        kinds: `config -> a key per layer`: layers with equal keys are one module up to their
            params; None: all layers are. GPT-Neo's keys are its attention types (global or
            local).
        causal_cache: the layers are causal and attend to HF's decoding cache (`call` passes
            its keyword arguments, `init_cache=True` among them, to the layer): sweeps then
            recompute only the positions a patch can change (`LayerStack.run_suffix`).
    """

    embed: Callable
    layer: Callable
    call: Callable
    final: Callable
    embedding: str
    kinds: Callable[[Any], Sequence] | None = None
    causal_cache: bool = False


@dataclass(frozen=True)
class Family:
    """A site table: pyvene's component names for one model family, and how to run the model.

    Attributes:
        name: the family's name (`"gpt2"`, `"llama"`), used in messages.
        layers: the path of the (main) layer stack inside the base model (`"h"`, `"layers"`,
            `"decoder.layers"`).
        components: component name -> :class:`Component`, where it lives inside a layer.
        heads: `config -> {"query": H, "kv": H_kv}`, the head counts that :attr:`Component.heads`
            names.
        overrides: module path relative to the layer (`""` is the layer itself) ->
            `(override, suffixes)`: a re-implementation of that module's call
            (`(module, args, kwargs, emit) -> output`, see `jaxvene.core._hooks.ModuleOverride`)
            that reports values which are no module's input or output, and the tap suffixes it
            reports (`"act_fn.output"`), so that it runs only when one of them is wanted.
        model_types: the `config.model_type` values this table serves (:func:`family_for`).
        inputs: the keyword inputs the linen module's `__call__` takes (others are refused by
            `prepare`). `position_ids`, when listed, is derived from the attention mask if not
            given.
        tokens: the input whose second axis is the token axis of the sites; None: no such input
            (vision models, see `site_length`).
        dummy: `config -> inputs` of batch 1 for abstract traces of the site shapes; None: a
            `(1, 4)` batch of token ids.
        stacks: extra layer stacks (encoder-decoders): name -> `(path, config -> layer count,
            token input)`; components say which stack they live in (:attr:`Component.stack`).
        site_length: `(config, prepared inputs) -> length of the position axis` (vision:
            patches + class token), for inputs without a token axis; None: the sites' length is
            always that of the token input (`tokens`, or the stack's token input).
        unembed: `(params, hidden, config) -> logits` from the final hidden states, used for
            `logit_positions`; None computes all logits and gathers, which is always right and
            only slower.
        call_kwargs: extra keyword arguments for the module call (`{"deterministic": True}` is
            always passed), e.g. a `method` filling inputs the way HF's wrapper does.
        layer_stack: how sweeps, causal tracing and attribution patching run the model layer by
            layer (:class:`LayerStackSpec`); None: they do not support the family.
        check: `model -> None`, run when the model's adapter is made: raises for a model whose
            config asks for math its module does not do (transformers' Flax LLaMA ignores
            `rope_scaling`, ...), which would give wrong outputs silently; None: no check. A
            table built from another with `dataclasses.replace` keeps its check: replace it too
            when the new table serves modules that do that math.
    """

    name: str
    layers: str
    components: Mapping[str, Component]
    heads: Callable[[Any], Mapping[str, int]]
    overrides: Mapping[str, tuple[Callable, tuple[str, ...]]] = field(default_factory=dict)
    model_types: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "position_ids")
    tokens: str | None = "input_ids"
    dummy: Callable[[Any], Mapping] | None = None
    stacks: Mapping[str, tuple[str, Callable[[Any], int], str | None]] = field(default_factory=dict)
    site_length: Callable[[Any, Mapping], int] | None = None
    unembed: Callable[[Mapping, Any, Any], Any] | None = None
    call_kwargs: Mapping[str, object] = field(default_factory=dict)
    layer_stack: LayerStackSpec | None = None
    check: Callable[[Any], None] | None = None


# ---------------------------------------------------------------------------- params
def _lookup(tree, path: str):
    """The subtree of `tree` at a dot-separated `path` of keys."""
    for key in path.split("."):
        tree = tree[key]
    return tree


# ---------------------------------------------------------------------------- unembeddings
def tied_unembed(embedding: str):
    """Logits through the tied input embedding table at `embedding` (a path in the params)."""

    def unembed(params, hidden, config):
        return hidden @ _lookup(params, embedding)["embedding"].T.astype(hidden.dtype)

    return unembed


def lm_head_unembed(params, hidden, config):
    """Logits through an untied `lm_head` Dense layer (with its bias if it has one)."""
    head = params["lm_head"]
    logits = hidden @ head["kernel"].astype(hidden.dtype)
    return logits + head["bias"].astype(hidden.dtype) if "bias" in head else logits


def tied_or_lm_head_unembed(embedding: str, *, ignore_lm_head_when_tied: bool = False):
    """Logits through the embedding table at `embedding` when `config.tie_word_embeddings`,
    through the `lm_head` Dense layer otherwise, as the model's own module computes them.

    The two kinds of module differ when the config ties the embeddings and the params still
    hold an `lm_head`. LLaMA-style modules (LLaMA, Mistral, Qwen2) always call their `lm_head`
    and have none only when tied: the `lm_head` wins (the default). GPT-Neo, GPT-J, OPT and
    BLOOM read the tie from the config and then never call their `lm_head`
    (`ignore_lm_head_when_tied=True`).
    """
    tied = tied_unembed(embedding)

    def unembed(params, hidden, config):
        if getattr(config, "tie_word_embeddings", False) and (ignore_lm_head_when_tied or "lm_head" not in params):
            return tied(params, hidden, config)
        return lm_head_unembed(params, hidden, config)

    return unembed


# ---------------------------------------------------------------------------- components
def _attention(attn: str, q: str, k: str, v: str, out: str) -> dict[str, Component]:
    """The attention components for separate q/k/v projections (all paths relative to the layer)."""
    return {
        "attention_input": Component(attn, "input"),
        "attention_output": Component(attn, "output"),
        "attention_value_output": Component(out, "input"),
        "head_attention_value_output": Component(out, "input", heads="query"),
        "query_output": Component(q, "output"),
        "key_output": Component(k, "output"),
        "value_output": Component(v, "output"),
        "head_query_output": Component(q, "output", heads="query"),
        "head_key_output": Component(k, "output", heads="kv"),
        "head_value_output": Component(v, "output", heads="kv"),
    }


def _bert_like_components(self_attention: str) -> dict[str, Component]:
    """The components of a BERT-style layer (`attention.output.dense`, `intermediate`,
    `output.dense`; BERT, RoBERTa, ViT); `self_attention` is the path of the module holding
    query/key/value."""
    dense_in = Component("attention.output.dense", "input")
    return {
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("intermediate", "input"),
        "mlp_activation": Component("intermediate", "output"),
        "mlp_output": Component("output.dense", "output"),
        "attention_input": Component("attention", "input"),
        "attention_output": Component("attention.output.dense", "output"),
        "attention_value_output": dense_in,
        "head_attention_value_output": Component(dense_in.path, "input", heads="query"),
        "query_output": Component(f"{self_attention}.query", "output"),
        "key_output": Component(f"{self_attention}.key", "output"),
        "value_output": Component(f"{self_attention}.value", "output"),
        "head_query_output": Component(f"{self_attention}.query", "output", heads="query"),
        "head_key_output": Component(f"{self_attention}.key", "output", heads="query"),
        "head_value_output": Component(f"{self_attention}.value", "output", heads="query"),
    }


def _same_heads(attribute: str):
    """Head counts for multi-head attention (as many key/value heads as query heads), read
    from the config attribute `attribute`."""
    return lambda config: {"query": getattr(config, attribute), "kv": getattr(config, attribute)}


# ---------------------------------------------------------------------------- layer stacks
def _embed_with_positions(base, inputs):
    """Token plus learned position embeddings (`wte`, `wpe`)."""
    return base.wte(inputs["input_ids"]) + base.wpe(inputs["position_ids"])


def _h_blocks(base, i):
    """The i-th layer of an `h` stack of `blocks` (GPT-2, GPT-Neo, GPT-J)."""
    return base.h.blocks[i]


def _ln_f(base, h):
    """The final LayerNorm `ln_f`."""
    return base.ln_f(h)
