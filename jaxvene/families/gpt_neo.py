"""GPT-Neo's site table (`FlaxGPTNeoModel`, `FlaxGPTNeoForCausalLM`).

pyvene's own table, except that q/k/v/out_proj live one level deeper (`attn.attention.*`, in
PyTorch too, where pyvene's paths `attn.q_proj` do not resolve). Global and local attention
layers alternate (`config.attention_layers`).
"""

from __future__ import annotations

from ._spec import (
    Component,
    Family,
    LayerStackSpec,
    _attention,
    _embed_with_positions,
    _h_blocks,
    _ln_f,
    _same_heads,
    tied_or_lm_head_unembed,
)

__all__ = ["GPT_NEO"]

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
    unembed=tied_or_lm_head_unembed("transformer.wte", ignore_lm_head_when_tied=True),
    layer_stack=LayerStackSpec(
        embed=_embed_with_positions,
        layer=_h_blocks,
        call=lambda layer, h, inputs, **kw: layer(h, inputs["attention_mask"], deterministic=True, **kw)[0],
        final=_ln_f,
        embedding="wte",
        causal_cache=True,
        # Global and local layers alternate: the attention type is fixed when a block is built
        # (`config.attention_layers[layer_id]`, it picks the causal mask), so the stack keeps
        # one block per type and switches on the layer index.
        kinds=lambda config: config.attention_layers,
    ),
)
