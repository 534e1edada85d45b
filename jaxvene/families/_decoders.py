"""Site tables for more HuggingFace Flax decoder families: GPT-Neo, GPT-J, OPT and BLOOM.

Semantics follow pyvene's (see `_families`): `attention_output` and `mlp_output` are the
sublayer's contribution *before* it is added to the residual stream, `mlp_activation` the
activation function's output, q/k/v the projections before rotary embeddings or scaling.

* GPT-Neo: pyvene's own table, except that q/k/v/out_proj live one level deeper
  (`attn.attention.*`, in PyTorch too, where pyvene's paths `attn.q_proj` do not resolve).
* GPT-J: parallel attention and MLP, both reading `ln_1`'s output (so `attention_input` and
  `mlp_input` are the same value).
* OPT: the layer runs its MLP inline (no MLP module) on hidden states flattened to
  `(batch * seq, width)`, so no module call carries a `(batch, seq, ·)` MLP value. An override
  of the whole layer (key "") re-runs it unflattened and reports `mlp.input` (`fc1`'s input),
  `mlp.act.output` (`fc2`'s input) and `mlp.output` (`fc2`'s output, before the residual).
* BLOOM: the attention and MLP modules add the residual themselves, so `attention_output` and
  `mlp_output` are the outputs of their last projection (`self_attention.dense`,
  `mlp.dense_4h_to_h`). The fused `query_key_value` projection is interleaved per head
  (`[q_0 k_0 v_0 q_1 k_1 v_1 ...]`), so thirds of it are not q, k and v: an override
  de-interleaves it and reports q, k and v as `(batch, seq, heads * head_dim)` taps.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp

from ._base import Component, Family, LayerStackSpec, lm_head_unembed, tied_unembed

__all__ = ["GPT_NEO", "GPTJ", "OPT", "BLOOM", "DECODER_FAMILIES"]


def _tied_or_head(embedding: str):
    """Unembedding as the HF module does it: the input embedding table when
    `config.tie_word_embeddings`, the `lm_head` Dense layer otherwise."""
    tied = tied_unembed(embedding)

    def unembed(params, hidden, config):
        if getattr(config, "tie_word_embeddings", False):
            return tied(params, hidden, config)
        return lm_head_unembed(params, hidden, config)

    return unembed


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


def _same_heads(attribute: str):
    """Head counts for multi-head attention (as many key/value heads as query heads)."""
    return lambda config: {"query": getattr(config, attribute), "kv": getattr(config, attribute)}


def _embed_with_positions(base, inputs):
    """Token plus learned position embeddings (`wte`, `wpe`)."""
    return base.wte(inputs["input_ids"]) + base.wpe(inputs["position_ids"])


def _h_blocks(base, i):
    return base.h.blocks[i]


def _ln_f(base, h):
    return base.ln_f(h)


_NEO = "attn.attention."
GPT_NEO = Family(
    name="gpt_neo",
    layers="h",
    model_types=("gpt_neo",),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.c_proj", "input"),  # act is a plain function in Flax
        "mlp_output": Component("mlp", "output"),
        # `attn` (a wrapper choosing global or local attention) returns the attention output.
        **_attention("attn", _NEO + "q_proj", _NEO + "k_proj", _NEO + "v_proj", _NEO + "out_proj"),
    },
    heads=_same_heads("num_heads"),
    unembed=_tied_or_head("transformer.wte"),
    layer_stack=LayerStackSpec(
        embed=_embed_with_positions,
        layer=_h_blocks,
        call=lambda layer, h, inputs: layer(h, inputs["attention_mask"], deterministic=True)[0],
        final=_ln_f,
        embedding="wte",
        # Global and local layers alternate: the attention type is fixed when a block is built
        # (`config.attention_layers[layer_id]`, it picks the causal mask), so the stack keeps
        # one block per type and switches on the layer index.
        kinds=lambda config: config.attention_layers,
    ),
)

GPTJ = Family(
    name="gptj",
    layers="h",
    model_types=("gptj",),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.fc_out", "input"),
        "mlp_output": Component("mlp", "output"),
        **_attention("attn", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"),
    },
    heads=_same_heads("n_head"),
    unembed=_tied_or_head("transformer.wte"),  # GPT-J's untied lm_head has a bias
    layer_stack=LayerStackSpec(
        embed=lambda base, inputs: base.wte(inputs["input_ids"]),  # rotary: positions act in attention
        layer=_h_blocks,
        call=lambda layer, h, inputs: layer(h, inputs["attention_mask"], position_ids=inputs["position_ids"],
                                            deterministic=True)[0],
        final=_ln_f,
        embedding="wte",
    ),
)


def _opt_layer(module, args, kwargs, emit):
    """OPT's decoder layer with its inline MLP reported as `mlp.input`, `mlp.act.output` and
    `mlp.output`, each `(batch, seq, width)` (HF flattens to `(batch * seq, width)` around
    `fc1`/`fc2`; the Dense layers and norms act on the last axis, so not flattening changes
    nothing but float rounding). The attention, norms and fc1/fc2 are the layer's own modules,
    so their taps are reported as usual."""
    call = inspect.signature(type(module).__call__).bind(module, *args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    deterministic = a["deterministic"]
    pre_norm = module.config.do_layer_norm_before  # OPT-350m normalises after each sublayer
    h = a["hidden_states"]
    x = module.self_attn_layer_norm(h) if pre_norm else h
    attn, weights = module.self_attn(hidden_states=x, attention_mask=a["attention_mask"],
                                     init_cache=a["init_cache"], deterministic=deterministic)
    h = h + module.dropout_layer(attn, deterministic=deterministic)
    if not pre_norm:
        h = module.self_attn_layer_norm(h)
    x = emit("mlp.input", module.final_layer_norm(h) if pre_norm else h)
    x = emit("mlp.act.output", module.activation_fn(module.fc1(x)))
    x = emit("mlp.output", module.fc2(x))
    h = h + module.dropout_layer(x, deterministic=deterministic)
    if not pre_norm:
        h = module.final_layer_norm(h)
    return (h, weights) if a["output_attentions"] else (h,)


def _opt_embed(base, inputs):
    decoder = base.decoder
    h = decoder.embed_tokens(inputs["input_ids"])
    if decoder.project_in is not None:  # word_embed_proj_dim != hidden_size
        h = decoder.project_in(h)
    # the learned positions add OPT's offset of 2 themselves
    return h + decoder.embed_positions(inputs["position_ids"])


def _opt_final(base, h):
    decoder = base.decoder
    if decoder.final_layer_norm is not None:  # pre-LN models only
        h = decoder.final_layer_norm(h)
    if decoder.project_out is not None:
        h = decoder.project_out(h)
    return h


_OPT = "self_attn."
OPT = Family(
    name="opt",
    layers="decoder.layers",  # under "model" in FlaxOPTForCausalLM
    model_types=("opt",),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        # reported by the layer override `_opt_layer`
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.act", "output"),
        "mlp_output": Component("mlp", "output"),
        # `self_attn` returns (output, weights), without dropout or the residual.
        **_attention("self_attn", _OPT + "q_proj", _OPT + "k_proj", _OPT + "v_proj", _OPT + "out_proj"),
    },
    heads=_same_heads("num_attention_heads"),
    overrides={"": (_opt_layer, ("mlp.input", "mlp.act.output", "mlp.output"))},
    # The base model's last_hidden_state is after `final_layer_norm` and `project_out` (when
    # word_embed_proj_dim differs from hidden_size), i.e. in the embedding's width.
    unembed=_tied_or_head("model.decoder.embed_tokens"),
    layer_stack=LayerStackSpec(
        embed=_opt_embed,
        layer=lambda base, i: base.decoder.layers.layers[i],
        call=lambda layer, h, inputs: layer(h, attention_mask=inputs["attention_mask"], output_attentions=False,
                                            deterministic=True)[0],
        final=_opt_final,
        embedding="decoder.embed_tokens",
    ),
)


def _bloom_qkv(module, args, kwargs, emit):
    """BLOOM's fused q/k/v projection, reporting q, k and v (taps `query.output`, ...).

    Each is `(batch, seq, heads * head_dim)`, head-major like the other families' projections;
    the possibly replaced values are interleaved back, so this is exact.
    """
    # Run the Dense layer itself, unbound (it has no submodules whose taps this would hide):
    # calling `module` here would re-enter this override.
    fused = module.clone(parent=None).apply({"params": module.variables["params"]}, *args, **kwargs)
    *lead, width = fused.shape
    heads = module.parent.config.n_head
    per_head = fused.reshape(*lead, heads, 3, width // (3 * heads))
    parts = [
        emit(f"{name}.output", per_head[..., i, :].reshape(*lead, width // 3)).reshape(*lead, heads, -1)
        for i, name in enumerate(("query", "key", "value"))
    ]
    return jnp.stack(parts, axis=-2).reshape(*lead, width)


def _bloom_layer(layer, h, inputs):
    """One BLOOM block: ALiBi biases from the attention mask (rebuilt per layer, they are tiny)."""
    from transformers.models.bloom.modeling_flax_bloom import build_alibi_tensor

    mask = inputs["attention_mask"]
    alibi = build_alibi_tensor(mask, layer.config.n_head, dtype=h.dtype)
    return layer(h, alibi, mask, deterministic=True)[0]


_QKV = "self_attention.query_key_value"
BLOOM = Family(
    name="bloom",
    layers="h",
    model_types=("bloom",),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.act", "output"),  # BloomGELU is a module
        # `mlp` and `self_attention` add the residual: their contributions are the last projections'.
        "mlp_output": Component("mlp.dense_4h_to_h", "output"),
        **_attention("self_attention", f"{_QKV}.query", f"{_QKV}.key", f"{_QKV}.value", "self_attention.dense"),
        "attention_output": Component("self_attention.dense", "output"),  # not `self_attention`'s
    },
    heads=_same_heads("n_head"),
    overrides={_QKV: (_bloom_qkv, ("query.output", "key.output", "value.output"))},
    inputs=("input_ids", "attention_mask"),  # ALiBi: positions come from the mask, no position_ids
    unembed=_tied_or_head("transformer.word_embeddings"),
    layer_stack=LayerStackSpec(
        # no position embeddings; a layer norm right after the word embeddings
        embed=lambda base, inputs: base.word_embeddings_layernorm(base.word_embeddings(inputs["input_ids"])),
        layer=lambda base, i: base.h.layers[i],
        call=_bloom_layer,
        final=_ln_f,
        embedding="word_embeddings",
    ),
)

#: Families this module defines; `_families` registers them.
DECODER_FAMILIES: tuple[Family, ...] = (GPT_NEO, GPTJ, OPT, BLOOM)
