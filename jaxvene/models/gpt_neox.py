"""GPT-NeoX (Pythia) in Flax linen, with HuggingFace Flax's calling conventions.

transformers never shipped a Flax GPT-NeoX; this is one, written for jaxvene. The module tree
mirrors HF's PyTorch model, so pyvene-style module paths name the same things::

    gpt_neox.embed_in
    gpt_neox.layers.<i>.input_layernorm / post_attention_layernorm
    gpt_neox.layers.<i>.attention.query_key_value / .dense
    gpt_neox.layers.<i>.mlp.dense_h_to_4h / .act / .dense_4h_to_h   (`act` has no params)
    gpt_neox.final_layer_norm
    embed_out

Numerics follow `transformers.models.gpt_neox.modeling_gpt_neox`: the fused projection's
output is viewed as `(B, T, H, 3 * Dh)` and split on the last axis, so it is laid out per head
as `[q_h | k_h | v_h]` (not `[q | k | v]`); rotary embeddings act on the first
`rotary_pct * Dh` features of each head (GPT-NeoX's half-split rotation); the residual is
parallel (`x + attn(ln1(x)) + mlp(ln2(x))`) or sequential per `use_parallel_residual`.

Because that fused layout is interleaved per head, a third of the fused output is *not* the
queries. The attention therefore passes q, k and v (before rotary, heads concatenated,
`(B, T, H * Dh)`) through parameter-free identity modules named `query`, `key` and `value`:
their calls are ordinary module taps (`...attention.query.output`), readable and writable like
any other, and they add nothing to the params.

:class:`FlaxGPTNeoXForCausalLM` is the HF-Flax-like wrapper jaxvene drives (`.module`,
`.params`, `.config`, `init_cache`, a `"cache"` collection for decoding, `from_pretrained` of
an HF PyTorch checkpoint folder); :data:`GPT_NEOX` is its site table.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..families._spec import Component, Family, LayerStackSpec
from ._base import NativeCausalLM

__all__ = ["FlaxGPTNeoXForCausalLM", "FlaxGPTNeoXForCausalLMModule", "GPT_NEOX", "load_pytorch_state"]


# ---------------------------------------------------------------------------------- config
def _gelu_fast(x):
    return 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_python": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": _gelu_fast,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def check_config(config) -> None:
    """Raise a clear error for a GPT-NeoX config this implementation does not reproduce."""
    model_type = getattr(config, "model_type", None)
    if model_type != "gpt_neox":
        raise ValueError(f"expected a GPT-NeoX config (model_type 'gpt_neox'), got model_type {model_type!r}")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}"
        )
    act = config.hidden_act
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise NotImplementedError(
            f"hidden_act {act!r} is not supported by jaxvene's GPT-NeoX (supported: {', '.join(sorted(_ACTIVATIONS))})"
        )
    scaling = getattr(config, "rope_scaling", None)
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind != "default":
            raise NotImplementedError(
                f"rope_scaling {scaling!r} is not supported by jaxvene's GPT-NeoX (only unscaled rotary embeddings)"
            )
    pct = _rotary_fraction(config)
    if not 0.0 <= pct <= 1.0:
        raise ValueError(f"rotary_pct must be in [0, 1], got {pct}")


def _rotary_fraction(config) -> float:
    # HF's rotary embedding reads `partial_rotary_factor` (set from rotary_pct by the config).
    return float(getattr(config, "partial_rotary_factor", None) or config.rotary_pct)


def _rope_theta(config) -> float:
    return float(getattr(config, "rope_theta", None) or config.rotary_emb_base)


def rotary_tables(config, position_ids):
    """`cos, sin` of shape `(B, T, R)` (R rotated features per head), as HF computes them in float32."""
    head_dim = config.hidden_size // config.num_attention_heads
    dim = int(head_dim * _rotary_fraction(config))
    exponents = jnp.arange(0, dim, 2, dtype=jnp.float32) / max(dim, 1)
    inv_freq = 1.0 / (_rope_theta(config) ** exponents)  # (R/2,)
    freqs = position_ids.astype(jnp.float32)[..., None] * inv_freq  # (B, T, R/2)
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x, cos, sin):
    """Rotate the first R features of each head of `x` `(B, T, H, Dh)`; `cos`/`sin` are `(B, T, R)`."""
    rot = cos.shape[-1]
    if rot == 0:
        return x
    cos, sin = cos[:, :, None, :].astype(x.dtype), sin[:, :, None, :].astype(x.dtype)
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    return jnp.concatenate([x_rot * cos + _rotate_half(x_rot) * sin, x_pass], axis=-1)


# ---------------------------------------------------------------------------------- modules
def _dense_init(config):
    return jax.nn.initializers.normal(stddev=config.initializer_range)


class Identity(nn.Module):
    """A parameter-free module call: its input/output is a tap (`attention.query.output`)."""

    @nn.compact
    def __call__(self, x):
        return x


class Activation(nn.Module):
    """`hidden_act` as a parameter-free module, so `mlp.act.output` is a tap as in HF's tree."""

    function: str = "gelu"

    @nn.compact
    def __call__(self, x):
        return _ACTIVATIONS[self.function](x)


class FlaxGPTNeoXAttention(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.num_heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        bias = bool(getattr(c, "attention_bias", True))
        init = _dense_init(c)
        self.query_key_value = nn.Dense(3 * c.hidden_size, use_bias=bias, dtype=self.dtype, kernel_init=init)
        self.dense = nn.Dense(c.hidden_size, use_bias=bias, dtype=self.dtype, kernel_init=init)
        self.query = Identity()
        self.key = Identity()
        self.value = Identity()

    @nn.compact
    def _concatenate_to_cache(self, key, value, query_length):
        """Write this call's keys/values into the cache; return the full cache and the write index."""
        is_initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        start = cache_index.value
        if is_initialized:
            key = jax.lax.dynamic_update_slice(cached_key.value, key.astype(cached_key.value.dtype), (0, start, 0, 0))
            value = jax.lax.dynamic_update_slice(
                cached_value.value, value.astype(cached_value.value.dtype), (0, start, 0, 0)
            )
            cached_key.value = key
            cached_value.value = value
            cache_index.value = start + query_length
        return key, value, start

    def __call__(self, hidden_states, attention_mask=None, position_ids=None, init_cache: bool = False):
        b, t, _ = hidden_states.shape
        h, dh = self.num_heads, self.head_dim
        # HF: qkv.view(B, T, H, 3 * Dh).chunk(3, dim=-1): per head [q | k | v]
        qkv = self.query_key_value(hidden_states).reshape(b, t, h, 3 * dh)
        query = self.query(qkv[..., :dh].reshape(b, t, h * dh)).reshape(b, t, h, dh)
        key = self.key(qkv[..., dh : 2 * dh].reshape(b, t, h * dh)).reshape(b, t, h, dh)
        value = self.value(qkv[..., 2 * dh :].reshape(b, t, h * dh)).reshape(b, t, h, dh)

        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t)[None, :], (b, t))
        cos, sin = rotary_tables(self.config, position_ids)
        query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)

        start = 0
        if self.has_variable("cache", "cached_key") or init_cache:
            key, value, start = self._concatenate_to_cache(key, value, t)
        k_len = key.shape[1]
        q_index = start + jnp.arange(t)
        allowed = jnp.arange(k_len)[None, :] <= q_index[:, None]  # (T, K) causal
        allowed = jnp.broadcast_to(allowed[None, None], (b, 1, t, k_len))
        if attention_mask is not None:
            if attention_mask.shape[-1] != k_len:
                raise ValueError(
                    f"attention_mask covers {attention_mask.shape[-1]} positions but the keys are {k_len} long "
                    "(with a cache, pass the mask of the whole cache length)"
                )
            allowed = allowed & (attention_mask[:, None, None, :] > 0)

        scores = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32) * (dh**-0.5)
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(b, t, h * dh)
        return self.dense(out)


class FlaxGPTNeoXMLP(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        init = _dense_init(c)
        self.dense_h_to_4h = nn.Dense(c.intermediate_size, dtype=self.dtype, kernel_init=init)
        self.dense_4h_to_h = nn.Dense(c.hidden_size, dtype=self.dtype, kernel_init=init)
        self.act = Activation(c.hidden_act)

    def __call__(self, hidden_states):
        return self.dense_4h_to_h(self.act(self.dense_h_to_4h(hidden_states)))


def _layer_norm(config, dtype):
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, use_fast_variance=False)


class FlaxGPTNeoXLayer(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.input_layernorm = _layer_norm(self.config, self.dtype)
        self.post_attention_layernorm = _layer_norm(self.config, self.dtype)
        self.attention = FlaxGPTNeoXAttention(self.config, dtype=self.dtype)
        self.mlp = FlaxGPTNeoXMLP(self.config, dtype=self.dtype)

    def __call__(self, hidden_states, attention_mask=None, position_ids=None, init_cache: bool = False):
        attn = self.attention(self.input_layernorm(hidden_states), attention_mask, position_ids, init_cache)
        if self.config.use_parallel_residual:
            mlp = self.mlp(self.post_attention_layernorm(hidden_states))
            return mlp + attn + hidden_states
        attn = attn + hidden_states
        return self.mlp(self.post_attention_layernorm(attn)) + attn


class FlaxGPTNeoXLayerCollection(nn.Module):
    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        self.blocks = [
            FlaxGPTNeoXLayer(self.config, dtype=self.dtype, name=str(i)) for i in range(self.config.num_hidden_layers)
        ]

    def __call__(self, hidden_states, attention_mask=None, position_ids=None, init_cache=False, all_hidden=None):
        for block in self.blocks:
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            hidden_states = block(hidden_states, attention_mask, position_ids, init_cache)
        return hidden_states


class FlaxGPTNeoXModule(nn.Module):
    """The base model (`gpt_neox`): embeddings, layers, final layer norm."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.embed_in = nn.Embed(c.vocab_size, c.hidden_size, dtype=self.dtype, embedding_init=_dense_init(c))
        self.layers = FlaxGPTNeoXLayerCollection(c, dtype=self.dtype)
        self.final_layer_norm = _layer_norm(c, self.dtype)

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
            raise NotImplementedError("jaxvene's GPT-NeoX does not return attention weights")
        hidden = self.embed_in(jnp.asarray(input_ids, jnp.int32))
        all_hidden: list[Any] | None = [] if output_hidden_states else None
        hidden = self.layers(hidden, attention_mask, position_ids, init_cache, all_hidden)
        hidden = self.final_layer_norm(hidden)
        hidden_states = None
        if all_hidden is not None:  # i.e. output_hidden_states
            hidden_states = tuple(all_hidden) + (hidden,)
        if not return_dict:
            return tuple(v for v in (hidden, hidden_states) if v is not None)
        return FlaxBaseModelOutput(last_hidden_state=hidden, hidden_states=hidden_states)


class FlaxGPTNeoXForCausalLMModule(nn.Module):
    """`gpt_neox` plus the untied LM head `embed_out` (HF's `GPTNeoXForCausalLM`)."""

    config: Any
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.gpt_neox = FlaxGPTNeoXModule(c, dtype=self.dtype)
        self.embed_out = nn.Dense(c.vocab_size, use_bias=False, dtype=self.dtype, kernel_init=_dense_init(c))

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
        position_ids = jnp.asarray(position_ids, jnp.int32)
        out = self.gpt_neox(
            input_ids,
            attention_mask,
            position_ids,
            deterministic=deterministic,
            init_cache=init_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.embed_out(out.last_hidden_state)
        if not return_dict:
            return (logits,) + ((out.hidden_states,) if output_hidden_states else ())
        return FlaxCausalLMOutput(logits=logits, hidden_states=out.hidden_states)


# ---------------------------------------------------------------------------------- site table
GPT_NEOX = Family(
    name="gpt_neox",
    layers="layers",
    model_types=("gpt_neox",),
    components={
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("mlp", "input"),
        "mlp_activation": Component("mlp.dense_4h_to_h", "input"),
        "mlp_output": Component("mlp", "output"),
        "attention_input": Component("attention", "input"),
        "attention_output": Component("attention", "output"),
        "attention_value_output": Component("attention.dense", "input"),
        "head_attention_value_output": Component("attention.dense", "input", heads="query"),
        # q/k/v before rotary, from the identity taps (the fused output is interleaved per head)
        "query_output": Component("attention.query", "output"),
        "key_output": Component("attention.key", "output"),
        "value_output": Component("attention.value", "output"),
        "head_query_output": Component("attention.query", "output", heads="query"),
        "head_key_output": Component("attention.key", "output", heads="kv"),
        "head_value_output": Component("attention.value", "output", heads="kv"),
    },
    heads=lambda config: {"query": config.num_attention_heads, "kv": config.num_attention_heads},
    unembed=lambda params, hidden, config: hidden @ params["embed_out"]["kernel"].astype(hidden.dtype),
    layer_stack=LayerStackSpec(  # for jaxvene.sweep, causal_trace and patching
        embed=lambda base, inputs: base.embed_in(inputs["input_ids"]),
        layer=lambda base, i: base.layers.blocks[i],
        call=lambda layer, h, inputs: layer(h, inputs["attention_mask"], inputs["position_ids"]),
        final=lambda base, h: base.final_layer_norm(h),
        embedding="embed_in",
    ),
)


# ---------------------------------------------------------------------------------- checkpoints
_BUFFER_SUFFIXES = (".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq")


def _read_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except KeyError:  # a dtype numpy lacks (bfloat16): read the file ourselves
        return _read_safetensors_raw(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read the safetensors checkpoint {path}: {err} (is the file complete?)") from err


def _read_safetensors_raw(path: str) -> dict:
    import ml_dtypes

    types = {
        "F64": np.float64,
        "F32": np.float32,
        "F16": np.float16,
        "BF16": ml_dtypes.bfloat16,
        "I64": np.int64,
        "I32": np.int32,
        "I16": np.int16,
        "I8": np.int8,
        "U8": np.uint8,
        "BOOL": np.bool_,
    }
    try:
        with open(path, "rb") as f:
            blob = f.read()
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + n])
        data = memoryview(blob)[8 + n :]
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            begin, end = info["data_offsets"]
            if end > len(data):
                raise ValueError(f"tensor {name} runs past the end of the file")
            arr = np.frombuffer(data[begin:end], dtype=types[info["dtype"]]).reshape(info["shape"])
            out[name] = arr.astype(np.float32) if info["dtype"] == "BF16" else arr.copy()
        return out
    except (ValueError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the safetensors checkpoint {path}: {err} (is the file complete?)") from err


def _read_torch_bin(path: str) -> dict:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a test dependency
        raise ImportError(f"{path} is a PyTorch pickle; reading it needs torch (or convert it to safetensors)") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read the PyTorch checkpoint {path}: {err}") from err
    return {k: v.detach().to(torch.float32).numpy() if v.is_floating_point() else v.numpy() for k, v in state.items()}


def load_pytorch_state(folder: str) -> dict:
    """The tensors of the HF PyTorch checkpoint in `folder`, as numpy arrays (safetensors first)."""
    candidates = [
        ("model.safetensors", _read_safetensors),
        ("model.safetensors.index.json", None),
        ("pytorch_model.bin", _read_torch_bin),
        ("pytorch_model.bin.index.json", None),
    ]
    for name, reader in candidates:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        if reader is not None:
            return reader(path)
        try:
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"cannot read the checkpoint index {path}: {err}") from err
        shard_reader = _read_safetensors if name.startswith("model.safetensors") else _read_torch_bin
        state = {}
        for shard in shards:
            shard_path = os.path.join(folder, shard)
            if not os.path.isfile(shard_path):
                raise FileNotFoundError(f"{path} lists the shard {shard}, which is not in {folder}")
            state.update(shard_reader(shard_path))
        return state
    raise FileNotFoundError(f"no PyTorch checkpoint in {folder}: looked for {', '.join(n for n, _ in candidates)}")


def params_from_state(state: dict, config, dtype=jnp.float32) -> dict:
    """Flax params from a `GPTNeoXForCausalLM` state dict (numpy arrays), checking every shape."""
    state = dict(state)
    if not any(k.startswith("gpt_neox.") for k in state):  # saved from a bare GPTNeoXModel
        state = {f"gpt_neox.{k}": v for k, v in state.items()}
    used = set()
    c = config
    d, f = c.hidden_size, c.intermediate_size

    def take(key, shape):
        if key not in state:
            raise KeyError(f"the checkpoint has no tensor {key!r}; it does not match this GPT-NeoX config")
        arr = np.asarray(state[key])
        if tuple(arr.shape) != tuple(shape):
            raise ValueError(f"tensor {key!r} has shape {tuple(arr.shape)} but the config implies {tuple(shape)}")
        used.add(key)
        return jnp.asarray(arr.astype(np.float32), dtype=dtype)

    def dense(prefix, out_f, in_f, bias=True):
        p = {"kernel": take(f"{prefix}.weight", (out_f, in_f)).T}
        if bias:
            p["bias"] = take(f"{prefix}.bias", (out_f,))
        return p

    def norm(prefix):
        return {"scale": take(f"{prefix}.weight", (d,)), "bias": take(f"{prefix}.bias", (d,))}

    attn_bias = bool(getattr(c, "attention_bias", True))
    layers = {}
    for i in range(c.num_hidden_layers):
        p = f"gpt_neox.layers.{i}"
        layers[str(i)] = {
            "input_layernorm": norm(f"{p}.input_layernorm"),
            "post_attention_layernorm": norm(f"{p}.post_attention_layernorm"),
            "attention": {
                "query_key_value": dense(f"{p}.attention.query_key_value", 3 * d, d, attn_bias),
                "dense": dense(f"{p}.attention.dense", d, d, attn_bias),
            },
            "mlp": {
                "dense_h_to_4h": dense(f"{p}.mlp.dense_h_to_4h", f, d),
                "dense_4h_to_h": dense(f"{p}.mlp.dense_4h_to_h", d, f),
            },
        }
    embed = take("gpt_neox.embed_in.weight", (c.vocab_size, d))
    if "embed_out.weight" in state:
        head = take("embed_out.weight", (c.vocab_size, d)).T
    elif getattr(c, "tie_word_embeddings", False):
        head = embed.T
    else:
        raise KeyError("the checkpoint has no 'embed_out.weight' (the LM head); is it a bare GPTNeoXModel?")
    params = {
        "gpt_neox": {
            "embed_in": {"embedding": embed},
            "layers": layers,
            "final_layer_norm": norm("gpt_neox.final_layer_norm"),
        },
        "embed_out": {"kernel": head},
    }
    unexpected = sorted(k for k in state if k not in used and not k.endswith(_BUFFER_SUFFIXES))
    if unexpected:
        warnings.warn(
            f"GPT-NeoX checkpoint tensors not used: {', '.join(unexpected[:8])}"
            + (" ..." if len(unexpected) > 8 else ""),
            stacklevel=3,
        )
    return params


# ---------------------------------------------------------------------------------- the model
def _config_class():
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig


class FlaxGPTNeoXForCausalLM(NativeCausalLM):
    """GPT-NeoX causal LM with the surface of a HF Flax model (`module`, `params`, `config`).

    Example::

        model = FlaxGPTNeoXForCausalLM.from_pretrained("path/to/pythia-70m")  # HF PyTorch folder
        model(input_ids).logits
    """

    module_class = FlaxGPTNeoXForCausalLMModule
    config_class = staticmethod(_config_class)
    model_type = "gpt_neox"
    family = GPT_NEOX
    check_config = staticmethod(check_config)
    params_from_state = staticmethod(params_from_state)
    load_state = staticmethod(load_pytorch_state)

    def init_cache(self, batch_size: int, max_length: int) -> dict:
        """An empty KV cache (the `"cache"` collection) for `max_length` positions."""
        c = self.config
        h, dh = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        shape = (batch_size, max_length, h, dh)

        def layer():
            return {
                "attention": {
                    "cached_key": jnp.zeros(shape, self.dtype),
                    "cached_value": jnp.zeros(shape, self.dtype),
                    "cache_index": jnp.array(0, dtype=jnp.int32),
                }
            }

        return {"gpt_neox": {"layers": {str(i): layer() for i in range(c.num_hidden_layers)}}}
