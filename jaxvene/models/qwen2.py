"""Qwen2 in Flax linen, with HuggingFace Flax's calling conventions.

transformers ships no Flax Qwen2; this is one, written for jaxvene alongside the native
GPT-NeoX (:mod:`jaxvene.models.gpt_neox`), whose checkpoint reader, activations,
rotary helper and KV-cache write it reuses. The module tree mirrors HF's PyTorch model::

    model.embed_tokens
    model.layers.<i>.input_layernorm / post_attention_layernorm      (RMSNorm)
    model.layers.<i>.self_attn.q_proj / k_proj / v_proj / o_proj     (q/k/v with bias, o without)
    model.layers.<i>.mlp.gate_proj / up_proj / down_proj / act_fn   (`act_fn` has no params)
    model.norm
    lm_head                                                         (absent when tied)

Numerics follow `transformers.models.qwen2.modeling_qwen2`: LLaMA-like pre-norm blocks, grouped
query attention (`num_key_value_heads` key/value heads, each shared by
`num_attention_heads / num_key_value_heads` query heads), rotary embeddings on the whole head
(`rope_theta`, half-split rotation), SwiGLU MLP `down(act(gate(x)) * up(x))`, RMSNorm in
float32. `act_fn` is a parameter-free module, so pyvene's `mlp_activation` (the activation
before the product with `up_proj`) is the ordinary tap `mlp.act_fn.output`.

Sliding-window attention (off by default: `use_sliding_window=False`) is honoured per layer as
HF does (`layer_types`, or layers from `max_window_layers` on): a query at cache index i sees
keys at indices in `(i - sliding_window, i]`. Only unscaled rotary embeddings are supported.

:class:`FlaxQwen2ForCausalLM` is the HF-Flax-like wrapper jaxvene drives; :data:`QWEN2` is its
site table (pyvene's qwen2 component names).
"""

from __future__ import annotations

import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..families._spec import Family, LayerStackSpec, tied_or_lm_head_unembed
from ..families.llama import LLAMA
from ._base import NativeCausalLM

# Shared with the native GPT-NeoX. `_ACTIVATIONS` and `_dense_init` are private there but are
# exactly what is needed here; the attention subclasses GPT-NeoX's to inherit its cache write.
from .gpt_neox import (
    _ACTIVATIONS,
    Activation,
    FlaxGPTNeoXAttention,
    _dense_init,
    apply_rotary,
    load_pytorch_state,
)

__all__ = ["FlaxQwen2ForCausalLM", "FlaxQwen2ForCausalLMModule", "QWEN2", "check_config", "params_from_state"]


# ---------------------------------------------------------------------------------- config
def check_config(config) -> None:
    """Raise a clear error for a Qwen2 config this implementation does not reproduce."""
    model_type = getattr(config, "model_type", None)
    if model_type != "qwen2":
        raise ValueError(f"expected a Qwen2 config (model_type 'qwen2'), got model_type {model_type!r}")
    h, kv = config.num_attention_heads, config.num_key_value_heads
    if h % kv:
        raise ValueError(f"num_attention_heads {h} is not a multiple of num_key_value_heads {kv}")
    if getattr(config, "head_dim", None) is None and config.hidden_size % h:
        raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {h}")
    act = config.hidden_act
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise NotImplementedError(
            f"hidden_act {act!r} is not supported by jaxvene's Qwen2 (supported: {', '.join(sorted(_ACTIVATIONS))})"
        )
    scaling = getattr(config, "rope_scaling", None)
    if scaling and scaling.get("rope_type", scaling.get("type")) != "default":
        raise NotImplementedError(
            f"rope_scaling {scaling!r} is not supported by jaxvene's Qwen2 (only unscaled rotary embeddings)"
        )


def head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def layer_window(config, layer: int) -> int | None:
    """The sliding window of `layer` (None: full causal attention), as HF's config decides it."""
    window = getattr(config, "sliding_window", None)
    if not getattr(config, "use_sliding_window", False) or window is None:
        return None
    types = getattr(config, "layer_types", None)
    if types is not None:
        return int(window) if types[layer] == "sliding_attention" else None
    return int(window) if layer >= getattr(config, "max_window_layers", 0) else None  # transformers < 4.53


def rotary_tables(config, position_ids):
    """`cos, sin` of shape `(B, T, R)` in float32 (R = rotated features per head, HF's default rope)."""
    dim = int(head_dim(config) * float(getattr(config, "partial_rotary_factor", 1.0) or 1.0))
    inv_freq = 1.0 / (float(config.rope_theta) ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    freqs = position_ids.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


# ---------------------------------------------------------------------------------- modules
class FlaxQwen2RMSNorm(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", jax.nn.initializers.ones, (self.config.hidden_size,))
        h = x.astype(jnp.float32)
        h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + self.config.rms_norm_eps)
        return weight.astype(self.dtype) * h.astype(self.dtype)


class FlaxQwen2Attention(FlaxGPTNeoXAttention):
    """Grouped-query attention; `_concatenate_to_cache` (the `"cache"` write) is GPT-NeoX's."""

    layer: int = 0

    def setup(self):
        c = self.config
        self.num_heads, self.num_kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, head_dim(c)
        init = _dense_init(c)
        self.q_proj = nn.Dense(self.num_heads * self.head_dim, dtype=self.dtype, kernel_init=init)
        self.k_proj = nn.Dense(self.num_kv_heads * self.head_dim, dtype=self.dtype, kernel_init=init)
        self.v_proj = nn.Dense(self.num_kv_heads * self.head_dim, dtype=self.dtype, kernel_init=init)
        self.o_proj = nn.Dense(c.hidden_size, use_bias=False, dtype=self.dtype, kernel_init=init)

    def __call__(self, hidden_states, attention_mask=None, position_ids=None, init_cache: bool = False):
        b, t, _ = hidden_states.shape
        h, kv, dh = self.num_heads, self.num_kv_heads, self.head_dim
        query = self.q_proj(hidden_states).reshape(b, t, h, dh)
        key = self.k_proj(hidden_states).reshape(b, t, kv, dh)
        value = self.v_proj(hidden_states).reshape(b, t, kv, dh)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t)[None, :], (b, t))
        cos, sin = rotary_tables(self.config, position_ids)
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)

        start = 0
        if self.has_variable("cache", "cached_key") or init_cache:
            key, value, start = self._concatenate_to_cache(key, value, t)  # the cache holds kv heads only
        k_len = key.shape[1]
        q_index = start + jnp.arange(t)[:, None]
        k_index = jnp.arange(k_len)[None, :]
        allowed = k_index <= q_index  # (T, K), by cache index as HF's masks are
        window = layer_window(self.config, self.layer)
        if window is not None:
            allowed = allowed & (k_index > q_index - window)
        allowed = jnp.broadcast_to(allowed[None, None, None], (b, 1, 1, t, k_len))
        if attention_mask is not None:
            if attention_mask.shape[-1] != k_len:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but the keys are {k_len} long "
                    "(with a cache, pass the mask of the whole cache length)"
                )
            allowed = allowed & (attention_mask[:, None, None, None, :] > 0)

        # query heads grouped by the kv head they share: (B, T, KV, H/KV, Dh)
        grouped = query.reshape(b, t, kv, h // kv, dh)
        scores = jnp.einsum("bqkgd,bskd->bkgqs", grouped, key).astype(jnp.float32) * (dh**-0.5)
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
        out = jnp.einsum("bkgqs,bskd->bqkgd", weights, value).reshape(b, t, h * dh)
        return self.o_proj(out)


class FlaxQwen2MLP(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        init = _dense_init(c)
        self.gate_proj = nn.Dense(c.intermediate_size, use_bias=False, dtype=self.dtype, kernel_init=init)
        self.up_proj = nn.Dense(c.intermediate_size, use_bias=False, dtype=self.dtype, kernel_init=init)
        self.down_proj = nn.Dense(c.hidden_size, use_bias=False, dtype=self.dtype, kernel_init=init)
        self.act_fn = Activation(c.hidden_act)

    def __call__(self, hidden_states):
        return self.down_proj(self.act_fn(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))


class FlaxQwen2DecoderLayer(nn.Module):
    config: Any
    dtype: Any = jnp.float32
    layer: int = 0

    def setup(self):
        self.input_layernorm = FlaxQwen2RMSNorm(self.config, dtype=self.dtype)
        self.post_attention_layernorm = FlaxQwen2RMSNorm(self.config, dtype=self.dtype)
        self.self_attn = FlaxQwen2Attention(self.config, dtype=self.dtype, layer=self.layer)
        self.mlp = FlaxQwen2MLP(self.config, dtype=self.dtype)

    def __call__(self, hidden_states, attention_mask=None, position_ids=None, init_cache: bool = False):
        hidden_states = hidden_states + self.self_attn(
            self.input_layernorm(hidden_states), attention_mask, position_ids, init_cache
        )
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class FlaxQwen2LayerCollection(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.blocks = [
            FlaxQwen2DecoderLayer(self.config, dtype=self.dtype, layer=i, name=str(i))
            for i in range(self.config.num_hidden_layers)
        ]

    def __call__(self, hidden_states, attention_mask=None, position_ids=None, init_cache=False, all_hidden=None):
        for block in self.blocks:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            hidden_states = block(hidden_states, attention_mask, position_ids, init_cache)
        return hidden_states


class FlaxQwen2Module(nn.Module):
    """The base model (`model`): embeddings, layers, final norm."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(c.vocab_size, c.hidden_size, dtype=self.dtype, embedding_init=_dense_init(c))
        self.layers = FlaxQwen2LayerCollection(c, dtype=self.dtype)
        self.norm = FlaxQwen2RMSNorm(c, dtype=self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        deterministic: bool = True,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        from transformers.modeling_flax_outputs import FlaxBaseModelOutput

        if output_attentions:
            raise NotImplementedError("jaxvene's Qwen2 does not return attention weights")
        hidden = self.embed_tokens(jnp.asarray(input_ids, jnp.int32))
        all_hidden: list[Any] | None = [] if output_hidden_states else None
        hidden = self.norm(self.layers(hidden, attention_mask, position_ids, init_cache, all_hidden))
        hidden_states = tuple(all_hidden) + (hidden,) if all_hidden is not None else None
        if not return_dict:
            return tuple(v for v in (hidden, hidden_states) if v is not None)
        return FlaxBaseModelOutput(last_hidden_state=hidden, hidden_states=hidden_states)


class FlaxQwen2ForCausalLMModule(nn.Module):
    """`model` plus the LM head (`lm_head`, or the embedding table when tied)."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.model = FlaxQwen2Module(c, dtype=self.dtype)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Dense(c.vocab_size, use_bias=False, dtype=self.dtype, kernel_init=_dense_init(c))

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        deterministic: bool = True,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        from transformers.modeling_flax_outputs import FlaxCausalLMOutput

        input_ids = jnp.asarray(input_ids, jnp.int32)
        if attention_mask is not None:
            attention_mask = jnp.asarray(attention_mask, jnp.int32)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[1])[None, :], input_ids.shape)
        out = self.model(
            input_ids,
            attention_mask,
            jnp.asarray(position_ids, jnp.int32),
            deterministic=deterministic,
            init_cache=init_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = out.last_hidden_state
        if self.config.tie_word_embeddings:
            logits = self.model.embed_tokens.attend(hidden)
        else:
            logits = self.lm_head(hidden)
        if not return_dict:
            return (logits,) + ((out.hidden_states,) if output_hidden_states else ())
        return FlaxCausalLMOutput(logits=logits, hidden_states=out.hidden_states)


# ---------------------------------------------------------------------------------- site table
QWEN2 = Family(
    name="qwen2",
    layers="layers",
    model_types=("qwen2",),
    # pyvene's qwen2 mapping is LLaMA's; `mlp.act_fn` is a real (parameter-free) module here,
    # so `mlp_activation` needs no override
    components=LLAMA.components,
    heads=lambda config: {"query": config.num_attention_heads, "kv": config.num_key_value_heads},
    unembed=tied_or_lm_head_unembed("model.embed_tokens"),
    layer_stack=LayerStackSpec(  # for jaxvene.sweep, causal_trace and patching
        embed=lambda base, inputs: base.embed_tokens(inputs["input_ids"]),
        layer=lambda base, i: base.layers.blocks[i],
        call=lambda layer, h, inputs: layer(h, inputs["attention_mask"], inputs["position_ids"]),
        final=lambda base, h: base.norm(h),
        embedding="embed_tokens",
    ),
)


# ---------------------------------------------------------------------------------- checkpoints
def params_from_state(state: dict, config, dtype=jnp.float32) -> dict:
    """Flax params from a `Qwen2ForCausalLM` state dict (numpy arrays), checking every shape."""
    state = dict(state)
    if not any(k.startswith("model.") for k in state):  # saved from a bare Qwen2Model
        state = {f"model.{k}": v for k, v in state.items()}
    used = set()
    c = config
    d, f, dh = c.hidden_size, c.intermediate_size, head_dim(c)
    hq, hkv = c.num_attention_heads * dh, c.num_key_value_heads * dh

    def take(key, shape):
        if key not in state:
            raise KeyError(f"the checkpoint has no tensor {key!r}; it does not match this Qwen2 config")
        arr = np.asarray(state[key])
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"tensor {key!r} has shape {tuple(arr.shape)} but the config implies {tuple(shape)}")
        used.add(key)
        return jnp.asarray(arr.astype(np.float32), dtype=dtype)

    def dense(prefix, out_f, in_f, bias=False):
        p = {"kernel": take(f"{prefix}.weight", (out_f, in_f)).T}
        if bias:
            p["bias"] = take(f"{prefix}.bias", (out_f,))
        return p

    def norm(prefix):
        return {"weight": take(f"{prefix}.weight", (d,))}

    layers = {}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}"
        layers[str(i)] = {
            "input_layernorm": norm(f"{p}.input_layernorm"),
            "post_attention_layernorm": norm(f"{p}.post_attention_layernorm"),
            "self_attn": {
                "q_proj": dense(f"{p}.self_attn.q_proj", hq, d, bias=True),
                "k_proj": dense(f"{p}.self_attn.k_proj", hkv, d, bias=True),
                "v_proj": dense(f"{p}.self_attn.v_proj", hkv, d, bias=True),
                "o_proj": dense(f"{p}.self_attn.o_proj", d, hq),
            },
            "mlp": {
                "gate_proj": dense(f"{p}.mlp.gate_proj", f, d),
                "up_proj": dense(f"{p}.mlp.up_proj", f, d),
                "down_proj": dense(f"{p}.mlp.down_proj", d, f),
            },
        }
    params = {
        "model": {
            "embed_tokens": {"embedding": take("model.embed_tokens.weight", (c.vocab_size, d))},
            "layers": layers,
            "norm": norm("model.norm"),
        }
    }
    if c.tie_word_embeddings:
        used.add("lm_head.weight")  # a tied copy, if the checkpoint kept one
    elif "lm_head.weight" in state:
        params["lm_head"] = dense("lm_head", c.vocab_size, d)
    else:
        raise KeyError("the checkpoint has no 'lm_head.weight' and the config does not tie it to the embeddings")
    unexpected = sorted(k for k in state if k not in used and not k.endswith(".rotary_emb.inv_freq"))
    if unexpected:
        warnings.warn(
            f"Qwen2 checkpoint tensors not used: {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else ""),
            stacklevel=3,
        )
    return params


# ---------------------------------------------------------------------------------- the model
def _config_class():
    from transformers import Qwen2Config

    return Qwen2Config


class FlaxQwen2ForCausalLM(NativeCausalLM):
    """Qwen2 causal LM with the surface of a HF Flax model (`module`, `params`, `config`).

    Example::

        model = FlaxQwen2ForCausalLM.from_pretrained("path/to/Qwen2-0.5B")  # HF PyTorch folder
        model(input_ids).logits
    """

    module_class = FlaxQwen2ForCausalLMModule
    config_class = staticmethod(_config_class)
    model_type = "qwen2"
    family = QWEN2
    check_config = staticmethod(check_config)
    params_from_state = staticmethod(params_from_state)
    load_state = staticmethod(load_pytorch_state)

    def init_cache(self, batch_size: int, max_length: int) -> dict:
        """An empty KV cache (the `"cache"` collection) for `max_length` positions (kv heads only)."""
        c = self.config
        shape = (batch_size, max_length, c.num_key_value_heads, head_dim(c))

        def layer():
            return {
                "self_attn": {
                    "cached_key": jnp.zeros(shape, self.dtype),
                    "cached_value": jnp.zeros(shape, self.dtype),
                    "cache_index": jnp.array(0, dtype=jnp.int32),
                }
            }

        return {"model": {"layers": {str(i): layer() for i in range(c.num_hidden_layers)}}}
