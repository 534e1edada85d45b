"""OPT's site table (`FlaxOPTModel`, `FlaxOPTForCausalLM`).

The layer runs its MLP inline (no MLP module) on hidden states flattened to
`(batch * seq, width)`, so no module call carries a `(batch, seq, ·)` MLP value. An override of
the whole layer (key "") re-runs it unflattened and reports `mlp.input` (`fc1`'s input),
`mlp.act.output` (`fc2`'s input) and `mlp.output` (`fc2`'s output, before the residual).
OPT-350m normalises after each sublayer (`do_layer_norm_before=False`) and projects between
the embedding width and the hidden width (`project_in`, `project_out`).
"""

from __future__ import annotations

import inspect

from ._spec import Component, Family, LayerStackSpec, _attention, _same_heads, tied_or_lm_head_unembed

__all__ = ["OPT"]


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
    attn, weights = module.self_attn(
        hidden_states=x, attention_mask=a["attention_mask"], init_cache=a["init_cache"], deterministic=deterministic
    )
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
    unembed=tied_or_lm_head_unembed("model.decoder.embed_tokens", ignore_lm_head_when_tied=True),
    layer_stack=LayerStackSpec(
        embed=_opt_embed,
        layer=lambda base, i: base.decoder.layers.layers[i],
        call=lambda layer, h, inputs: layer(
            h, attention_mask=inputs["attention_mask"], output_attentions=False, deterministic=True
        )[0],
        final=_opt_final,
        embedding="decoder.embed_tokens",
    ),
)
