"""GPT-J's site table (`FlaxGPTJModel`, `FlaxGPTJForCausalLM`).

Attention and MLP run in parallel, both reading `ln_1`'s output (so `attention_input` and
`mlp_input` are the same value). Positions act inside attention (rotary embeddings).
"""

from __future__ import annotations

from ._spec import Component, Family, LayerStackSpec, _attention, _h_blocks, _ln_f, _same_heads, tied_or_lm_head_unembed

__all__ = ["GPTJ"]

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
    # GPT-J's untied lm_head has a bias
    unembed=tied_or_lm_head_unembed("transformer.wte", ignore_lm_head_when_tied=True),
    layer_stack=LayerStackSpec(
        embed=lambda base, inputs: base.wte(inputs["input_ids"]),  # rotary: positions act in attention
        layer=_h_blocks,
        call=lambda layer, h, inputs, **kw: layer(
            h, inputs["attention_mask"], position_ids=inputs["position_ids"], deterministic=True, **kw
        )[0],
        final=_ln_f,
        embedding="wte",
        causal_cache=True,
    ),
)
