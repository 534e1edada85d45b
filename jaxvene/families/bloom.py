"""BLOOM's site table (`FlaxBloomModel`, `FlaxBloomForCausalLM`).

The attention and MLP modules add the residual themselves, so `attention_output` and
`mlp_output` are the outputs of their last projection (`self_attention.dense`,
`mlp.dense_4h_to_h`). The fused `query_key_value` projection is interleaved per head
(`[q_0 k_0 v_0 q_1 k_1 v_1 ...]`), so thirds of it are not q, k and v: an override
de-interleaves it and reports q, k and v as `(batch, seq, heads * head_dim)` taps. Positions
act through ALiBi biases built from the attention mask (there are no `position_ids`).
"""

from __future__ import annotations

import jax.numpy as jnp

from .._transformers import import_flax_module
from ._spec import Component, Family, LayerStackSpec, _attention, _ln_f, _same_heads, tied_or_lm_head_unembed

__all__ = ["BLOOM"]


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
    build_alibi_tensor = import_flax_module(
        "transformers.models.bloom.modeling_flax_bloom", "BLOOM's layer stack"
    ).build_alibi_tensor
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
    unembed=tied_or_lm_head_unembed("transformer.word_embeddings", ignore_lm_head_when_tied=True),
    layer_stack=LayerStackSpec(
        # no position embeddings; a layer norm right after the word embeddings
        embed=lambda base, inputs: base.word_embeddings_layernorm(base.word_embeddings(inputs["input_ids"])),
        layer=lambda base, i: base.h.layers[i],
        call=_bloom_layer,
        final=_ln_f,
        embedding="word_embeddings",
    ),
)
