"""LLaMA's site table, which also serves Mistral and Gemma (`FlaxLlamaForCausalLM`,
`FlaxMistralForCausalLM`, `FlaxGemmaForCausalLM` and their base models).

`mlp_activation` is `act(gate_proj(x))`, before the product with `up_proj(x)`: an override of
the MLP reports it as the tap `mlp.act_fn.output`. q/k/v are the projections before rotary
embeddings; `head_key_output` and `head_value_output` split into the key/value heads
(`num_key_value_heads`, fewer than the query heads under grouped-query attention). Gemma scales
its embeddings by `sqrt(hidden_size)`, as `FlaxGemmaModule` does.

transformers 4.x's Flax classes for these three families implement less than their PyTorch
twins, and ignore the config fields they lack, so such a model would give wrong logits
without a word: the adapter refuses them (:func:`refuse_what_flax_ignores`), naming each field,
and points to jaxvene's native decoders. Refused: `rope_scaling` of any type but the default
(llama3, linear, dynamic, yarn, longrope: the Flax rotary embedding is the plain one),
`rope_theta` other than 10000 (hard-coded), `partial_rotary_factor` other than 1, LLaMA's and
Mistral's `head_dim` other than `hidden_size // num_attention_heads`, LLaMA's `mlp_bias`,
Mistral's `sliding_window` (None makes the Flax mask let a token see only itself; a window is
one token wider than PyTorch's), Gemma's activation when PyTorch's (`hidden_act`) and Flax's
(`hidden_activation`, else `gelu_pytorch_tanh`) differ, and a tied LLaMA or Mistral head whose
params hold a separate `lm_head` (the Flax modules never tie; loading a tied PyTorch checkpoint
leaves that `lm_head` random).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ._spec import Component, Family, LayerStackSpec, _attention, tied_or_lm_head_unembed

__all__ = ["LLAMA", "refuse_what_flax_ignores"]

_FLAX_ROPE_THETA = 10000.0  # the base transformers' Flax LLaMA, Mistral and Gemma hard-code


def _flax_ignored(config, model) -> list[str]:
    """The config fields (as `field=value (why)`) whose math transformers' Flax LLaMA, Mistral
    or Gemma does not do, for a config of model_type llama, mistral or gemma."""
    kind = getattr(config, "model_type", None)
    found = []
    scaling = getattr(config, "rope_scaling", None)
    if scaling:
        rope_type = scaling.get("rope_type", scaling.get("type")) if isinstance(scaling, dict) else scaling
        if rope_type not in (None, "default"):
            found.append(f"rope_scaling={scaling!r} (the Flax rotary embedding is the default one)")
    theta = getattr(config, "rope_theta", _FLAX_ROPE_THETA)
    if theta is not None and float(theta) != _FLAX_ROPE_THETA:
        found.append(f"rope_theta={theta!r} (the Flax rotary embedding hard-codes 10000)")
    partial = getattr(config, "partial_rotary_factor", 1.0)
    if partial is not None and float(partial) != 1.0:
        found.append(f"partial_rotary_factor={partial!r} (the Flax rotary embedding turns every dimension)")
    if kind in ("llama", "mistral"):
        head_dim = getattr(config, "head_dim", None)
        derived = config.hidden_size // config.num_attention_heads
        if head_dim is not None and int(head_dim) != derived:
            found.append(
                f"head_dim={head_dim!r} (the Flax attention uses hidden_size // num_attention_heads = {derived})"
            )
        if getattr(config, "mlp_bias", False):
            found.append("mlp_bias=True (the Flax MLP has no biases)")
        if getattr(config, "tie_word_embeddings", False) and not _head_is_tied(model):
            found.append(
                "tie_word_embeddings=True (the Flax module never ties: it calls its own lm_head, which these "
                "params hold apart from the embeddings; loading a tied PyTorch checkpoint leaves it random)"
            )
    if kind == "mistral":
        window = getattr(config, "sliding_window", None)
        if window is None:
            found.append("sliding_window=None (the Flax mask then lets each token attend to itself only)")
        elif int(window) < int(config.max_position_embeddings):
            found.append(
                f"sliding_window={window!r} (the Flax window is one token wider than PyTorch's: "
                f"sequences longer than {window} tokens differ)"
            )
    if kind == "gemma":
        torch_act = getattr(config, "hidden_act", None)
        flax_act = getattr(config, "hidden_activation", None) or "gelu_pytorch_tanh"
        if torch_act != flax_act:
            found.append(
                f"hidden_act={torch_act!r} with hidden_activation={getattr(config, 'hidden_activation', None)!r} "
                f"(PyTorch's Gemma applies hidden_act, the Flax one hidden_activation or else "
                f"gelu_pytorch_tanh: {flax_act!r})"
            )
    return found


def _head_is_tied(model) -> bool:
    """Whether the model's `lm_head` (if it has one) is its embedding table, transposed."""
    try:
        params = model.params  # raises ValueError for a model made with `_do_init=False`
        head = params["lm_head"]["kernel"]
        table = params["model"]["embed_tokens"]["embedding"]
    except (AttributeError, KeyError, TypeError, ValueError):  # a base model (no head), or no params
        return True
    if not (hasattr(head, "__array__") and hasattr(table, "__array__")):  # abstract params
        return True
    return head.shape == table.shape[::-1] and bool(jnp.array_equal(head, table.T))  # on device


def refuse_what_flax_ignores(model: Any) -> None:
    """Raise `NotImplementedError` for a transformers Flax LLaMA, Mistral or Gemma whose config
    asks for math the Flax class does not do (see the module docstring), naming each field.
    Models that are not transformers' own classes are left alone."""
    if not type(model).__module__.startswith("transformers."):
        return
    found = _flax_ignored(model.config, model)
    if found:
        raise NotImplementedError(
            f"transformers' {type(model).__name__} does not do what these config fields ask, so its "
            f"outputs would silently differ from PyTorch's on the same weights: {'; '.join(found)}. "
            "Load the checkpoint with jaxvene.from_pretrained(folder) (jaxvene's native decoders) instead."
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
        call=lambda layer, h, inputs, **kw: layer(
            h, attention_mask=inputs["attention_mask"], position_ids=inputs["position_ids"], deterministic=True, **kw
        )[0],
        final=lambda base, h: base.norm(h),
        embedding="embed_tokens",
        causal_cache=True,
    ),
    check=refuse_what_flax_ignores,
)
