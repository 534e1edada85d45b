"""LLaMA's site table, which also serves Mistral and Gemma (`FlaxLlamaForCausalLM`,
`FlaxMistralForCausalLM`, `FlaxGemmaForCausalLM` and their base models).

`mlp_activation` is `act(gate_proj(x))`, before the product with `up_proj(x)`: an override of
the MLP reports it as the tap `mlp.act_fn.output`. q/k/v are the projections before rotary
embeddings; `head_key_output` and `head_value_output` split into the key/value heads
(`num_key_value_heads`, fewer than the query heads under grouped-query attention). Gemma scales
its embeddings by `sqrt(hidden_size)`, as `FlaxGemmaModule` does.
"""

from __future__ import annotations

from ._spec import Component, Family, LayerStackSpec, _attention, tied_or_lm_head_unembed

__all__ = ["LLAMA"]


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


_ATTN = "self_attn."
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
        **_attention("self_attn", _ATTN + "q_proj", _ATTN + "k_proj", _ATTN + "v_proj", _ATTN + "o_proj"),
    },
    heads=lambda config: {"query": config.num_attention_heads, "kv": config.num_key_value_heads},
    overrides={"mlp": (_gated_mlp, ("act_fn.output",))},
    unembed=tied_or_lm_head_unembed("model.embed_tokens"),
    layer_stack=LayerStackSpec(
        embed=_llama_embed,
        layer=lambda base, i: base.layers.blocks[i],
        call=lambda layer, h, inputs: layer(
            h, attention_mask=inputs["attention_mask"], position_ids=inputs["position_ids"], deterministic=True
        )[0],
        final=lambda base, h: base.norm(h),
        embedding="embed_tokens",
    ),
)
