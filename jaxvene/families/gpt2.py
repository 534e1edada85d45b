"""GPT-2's site table (`FlaxGPT2Model`, `FlaxGPT2LMHeadModel`).

q, k and v are thirds of the fused projection `attn.c_attn`; `mlp_activation` is the input of
`mlp.c_proj` (the activation is a plain function in Flax). GPT-2 ties its unembedding to `wte`.
"""

from __future__ import annotations

from ._spec import Component, Family, LayerStackSpec, _embed_with_positions, _h_blocks, _ln_f, _same_heads, tied_unembed

__all__ = ["GPT2"]


def _qkv(index: int, heads: str | None = None) -> Component:
    """The `index`-th third (q, k, v) of the fused `attn.c_attn` projection."""
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
    heads=_same_heads("n_head"),
    unembed=tied_unembed("transformer.wte"),
    layer_stack=LayerStackSpec(
        embed=_embed_with_positions,
        layer=_h_blocks,
        call=lambda layer, h, inputs, **kw: layer(h, inputs["attention_mask"], deterministic=True, **kw)[0],
        final=_ln_f,
        embedding="wte",
        causal_cache=True,
    ),
)
