"""Site tables: pyvene's component names for each HuggingFace Flax model family.

One table per family maps a component to where it lives inside a layer: a module path relative
to the layer, whether the value is that module's input or output, and how to view it (a third
of GPT-2's fused q/k/v projection; split into query heads or key/value heads). Adding a family
means adding a table here, not touching the engine.

Conventions shared with pyvene: q/k/v are the projections *before* rotary embeddings;
`mlp_activation` is the activation function's output (GPT-2: the input of `c_proj`; LLaMA:
`act(gate_proj(x))`, before the product with `up_proj(x)`); `attention_value_output` is the
concatenation of the heads' outputs before the output projection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

__all__ = ["Component", "Family", "LayerStackSpec", "FAMILIES", "family_for", "register_family", "tied_unembed",
           "lm_head_unembed"]


@dataclass(frozen=True)
class Component:
    path: str  # relative to the layer; "" is the layer itself
    io: str  # "input" or "output"
    part: Optional[tuple[int, int]] = None
    heads: Optional[str] = None  # "query" or "kv": which head count splits the last axis
    # Encoder-decoders: the layer stack this component lives in (a key of `Family.stacks`);
    # None is the family's main stack `Family.layers`.
    stack: Optional[str] = None


@dataclass(frozen=True)
class LayerStackSpec:
    """How `jaxvene.adapters._stack.LayerStack` runs a family as embed -> layers -> final norm.

    The callables get *bound* modules of the model itself, so its own embeddings, layers and
    norms run (nothing is restated): `base` is the base model (`transformer`, `model`, ...).
    """

    embed: Callable  # (base, inputs) -> the hidden states entering layer 0
    layer: Callable  # (base, i) -> the i-th layer module
    call: Callable  # (layer, h, inputs) -> h: one layer's forward pass, deterministic
    final: Callable  # (base, h) -> the base model's last_hidden_state (final norm, ...)
    embedding: str  # path of the token embedding table in the base model's params
    # config -> a key per layer: layers with equal keys are one module up to params (None: all
    # layers are). GPT-Neo's keys are its attention types (global or local).
    kinds: Optional[Callable[[object], Sequence]] = None


@dataclass(frozen=True)
class Family:
    name: str
    layers: str  # path of the layer stack inside the base model ("h", "layers")
    components: Mapping[str, Component]
    heads: Callable[[object], Mapping[str, int]]  # config -> {"query": H, "kv": H_kv}
    # module path relative to the layer -> (override, tap suffixes it reports)
    overrides: Mapping[str, tuple[Callable, tuple[str, ...]]] = field(default_factory=dict)
    model_types: tuple[str, ...] = ()
    # The keyword inputs the linen module's __call__ takes (others are refused by `prepare`).
    # `position_ids`, when listed, is derived from the attention mask if not given.
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "position_ids")
    # The input whose second axis is the token axis of the sites (None: vision models, see
    # `site_length`), and a dummy batch for abstract traces of the site shapes.
    tokens: Optional[str] = "input_ids"
    dummy: Optional[Callable[[object], Mapping]] = None  # config -> inputs of batch 1
    # Extra layer stacks (encoder-decoders): name -> (path, config -> layer count, token input).
    stacks: Mapping[str, tuple[str, Callable[[object], int], Optional[str]]] = field(default_factory=dict)
    # config, prepared inputs -> length of the position axis (vision: patches + class token).
    site_length: Optional[Callable[[object, Mapping], int]] = None
    # Logits from the final hidden states (`logit_positions`); None computes all logits and
    # gathers, which is always right and only slower.
    unembed: Optional[Callable[[Mapping, object, object], object]] = None  # params, hidden, config
    # Extra keyword arguments for the module call (e.g. {"deterministic": True} is always passed).
    call_kwargs: Mapping[str, object] = field(default_factory=dict)
    # How sweeps, causal tracing and attribution patching run the model layer by layer (None:
    # they do not support the family).
    layer_stack: Optional[LayerStackSpec] = None


def _lookup(tree, path: str):
    for key in path.split("."):
        tree = tree[key]
    return tree


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


def tied_or_lm_head_unembed(embedding: str):
    """Logits through the embedding table at `embedding` when the config ties it and the model
    has no `lm_head` params (LLaMA, Qwen2 and the like); through `lm_head` otherwise."""
    tied = tied_unembed(embedding)

    def unembed(params, hidden, config):
        if getattr(config, "tie_word_embeddings", False) and "lm_head" not in params:
            return tied(params, hidden, config)
        return lm_head_unembed(params, hidden, config)

    return unembed


def _qkv(index: int, heads: Optional[str] = None) -> Component:
    return Component("attn.c_attn", "output", part=(index, 3), heads=heads)


GPT2 = Family(
    name="gpt2",
    layers="h",
    model_types=("gpt2",),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.c_proj", "input"),
        "mlp_output": Component("mlp", "output"),
        "attention_input": Component("attn", "input"),
        "attention_output": Component("attn", "output"),
        "attention_value_output": Component("attn.c_proj", "input"),
        "head_attention_value_output": Component("attn.c_proj", "input", heads="query"),
        "query_output": _qkv(0),
        "key_output": _qkv(1),
        "value_output": _qkv(2),
        "head_query_output": _qkv(0, "query"),
        "head_key_output": _qkv(1, "query"),
        "head_value_output": _qkv(2, "query"),
    },
    heads=lambda config: {"query": config.n_head, "kv": config.n_head},
    unembed=tied_unembed("transformer.wte"),
    layer_stack=LayerStackSpec(
        embed=lambda base, inputs: base.wte(inputs["input_ids"]) + base.wpe(inputs["position_ids"]),
        layer=lambda base, i: base.h.blocks[i],
        call=lambda layer, h, inputs: layer(h, inputs["attention_mask"], deterministic=True)[0],
        final=lambda base, h: base.ln_f(h),
        embedding="wte",
    ),
)


def _llama_embed(base, inputs):
    h = base.embed_tokens(inputs["input_ids"])
    if base.config.model_type == "gemma":  # Gemma scales its embeddings (as FlaxGemmaModule does)
        h = h * (base.config.hidden_size**0.5)
    return h


def _gated_mlp(module, args, kwargs, emit):
    """LLaMA-style MLP with the activation exposed as the tap `act_fn.output`."""
    hidden = args[0] if args else next(iter(kwargs.values()))
    gate = emit("act_fn.output", module.act(module.gate_proj(hidden)))
    return module.down_proj(module.up_proj(hidden) * gate)


LLAMA = Family(
    name="llama",
    layers="layers",
    model_types=("llama", "mistral", "gemma"),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.act_fn", "output"),
        "mlp_output": Component("mlp", "output"),
        "attention_input": Component("self_attn", "input"),
        "attention_output": Component("self_attn", "output"),
        "attention_value_output": Component("self_attn.o_proj", "input"),
        "head_attention_value_output": Component("self_attn.o_proj", "input", heads="query"),
        "query_output": Component("self_attn.q_proj", "output"),
        "key_output": Component("self_attn.k_proj", "output"),
        "value_output": Component("self_attn.v_proj", "output"),
        "head_query_output": Component("self_attn.q_proj", "output", heads="query"),
        "head_key_output": Component("self_attn.k_proj", "output", heads="kv"),
        "head_value_output": Component("self_attn.v_proj", "output", heads="kv"),
    },
    heads=lambda config: {"query": config.num_attention_heads, "kv": config.num_key_value_heads},
    overrides={"mlp": (_gated_mlp, ("act_fn.output",))},
    unembed=tied_or_lm_head_unembed("model.embed_tokens"),
    layer_stack=LayerStackSpec(
        embed=_llama_embed,
        layer=lambda base, i: base.layers.blocks[i],
        call=lambda layer, h, inputs: layer(h, attention_mask=inputs["attention_mask"],
                                            position_ids=inputs["position_ids"], deterministic=True)[0],
        final=lambda base, h: base.norm(h),
        embedding="embed_tokens",
    ),
)

FAMILIES = (GPT2, LLAMA)


def register_family(family: Family) -> None:
    """Add a site table (e.g. for a model written for jaxvene); later lookups find it."""
    global FAMILIES
    if family not in FAMILIES:
        FAMILIES = FAMILIES + (family,)


def family_for(config) -> Family:
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES for t in f.model_types)
    raise NotImplementedError(
        f"jaxvene has no site table for model_type {model_type!r} (it has: {', '.join(known)}). "
        "Address modules by path instead, e.g. component='model.layers[0].mlp.output'."
    )


# More families live in their own modules; they import Component/Family from here.
from ._decoders import DECODER_FAMILIES  # noqa: E402
from ._encoders import ENCODER_FAMILIES  # noqa: E402

FAMILIES = FAMILIES + DECODER_FAMILIES + ENCODER_FAMILIES
