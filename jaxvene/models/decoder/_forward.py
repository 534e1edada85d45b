"""The decoder as pure functions of `(config, params, inputs)`, with a tap at every site.

Conventions:

* Arrays are `(B, T, D)`; heads are split as `(B, T, heads, head_dim)`. Query head `h` uses
  key/value head `h // (num_attention_heads // num_key_value_heads)`, as HF's `repeat_kv`.
* `params` mirrors HF's module tree with the layers stacked on a leading axis `L`:
  `{"embed_tokens": {"embedding"}, "layers": {"input_layernorm": {"weight": (L, D)},
  "self_attn": {"q_proj": {"kernel": (L, D, H * Dh), "bias"?}, ...}, "mlp": {...}},
  "norm": {"weight"}, "lm_head": {"kernel": (D, V)}?}`. Kernels are `(in, out)`.
* The layers run through :func:`jaxvene.scan_layers` (one traced layer, whatever the depth);
  what differs between layers (the sliding window, Gemma 3's local rotary base) is data in the
  scan, not a different program.
* Taps are named relative to the layer, after HF's module paths (:data:`LAYER_TAPS`), so one
  name serves every layer and the scan addresses the layer by its index. Outside a jaxvene run
  a tap is the identity.
* Norms, softmax and rotary tables are computed in float32, matmuls in the params' dtype, as
  HF does.
* Masks are by cache index, as HF's: a query at index i sees keys at indices `<= i`, within
  `(i - window, i]` on a sliding layer, and never a key whose `attention_mask` is 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ...core._hooks import scan_layers, tap
from ._config import DecoderConfig
from ._rope import rotate, tables

__all__ = ["forward", "embed", "layer", "final", "unembed", "LAYER_TAPS", "attention_context"]

#: every tap inside a layer, in the order the layer reports them
LAYER_TAPS = (
    "input",
    "self_attn.input",
    "self_attn.q_proj.output",
    "self_attn.k_proj.output",
    "self_attn.v_proj.output",
    "self_attn.softmax.output",
    "self_attn.o_proj.input",
    "self_attn.output",
    "mlp.input",
    "mlp.gate_proj.output",
    "mlp.up_proj.output",
    "mlp.act_fn.output",
    "mlp.down_proj.input",
    "mlp.output",
    "output",
)


# ---------------------------------------------------------------------------- pieces
def _norm(cfg: DecoderConfig, p, x):
    if cfg.norm == "layer":
        h = x.astype(jnp.float32)
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        h = (h - mean) * jax.lax.rsqrt(var + cfg.rms_norm_eps)
        return (h * p["weight"].astype(jnp.float32) + p["bias"].astype(jnp.float32)).astype(x.dtype)
    h = x.astype(jnp.float32)
    h = h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + cfg.rms_norm_eps)
    w = p["weight"]
    if cfg.norm == "gemma":
        return (h * (1.0 + w.astype(jnp.float32))).astype(x.dtype)
    if cfg.norm == "olmo2":
        return (w.astype(jnp.float32) * h).astype(x.dtype)
    return w * h.astype(x.dtype)


def _dense(p, x):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def _act(name: str, x):
    if name == "silu":
        return jax.nn.silu(x)
    if name in ("gelu_pytorch_tanh", "gelu_new"):
        return jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    return jax.nn.relu(x)


def _softcap(x, cap):
    return x if cap is None else jnp.tanh(x / cap) * cap


# ---------------------------------------------------------------------------- context
def attention_context(cfg: DecoderConfig, attention_mask, position_ids, start=0, key_length=None) -> dict:
    """What every layer's attention shares: rotary tables, the key mask, query/key indices.

    `attention_mask` `(B, K)` covers the keys (the whole cache when decoding); `start` is the
    cache index of the first query.
    """
    t = position_ids.shape[1]
    k_len = attention_mask.shape[1] if key_length is None else key_length
    ctx = {
        "rope": tables(cfg.rope, position_ids),
        "mask": attention_mask > 0,
        "q_index": start + jnp.arange(t),
        "k_index": jnp.arange(k_len),
        "start": start,
    }
    if cfg.local_rope is not None:
        ctx["local_rope"] = tables(cfg.local_rope, position_ids)
    return ctx


def layer_meta(cfg: DecoderConfig):
    """Per-layer data for the scan: the sliding window (0: none), or None if no layer has one."""
    if not cfg.has_windows:
        return None
    return jnp.asarray([w or 0 for w in cfg.layer_windows], jnp.int32)


# ---------------------------------------------------------------------------- layer
def _attention(cfg: DecoderConfig, p, x, ctx, window, cache):
    b, t, _ = x.shape
    nh, kv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    x = tap("self_attn.input", x)
    q = tap("self_attn.q_proj.output", _dense(p["q_proj"], x))
    k = tap("self_attn.k_proj.output", _dense(p["k_proj"], x))
    v = tap("self_attn.v_proj.output", _dense(p["v_proj"], x))
    if cfg.qk_norm == "full":
        q, k = _norm(cfg, p["q_norm"], q), _norm(cfg, p["k_norm"], k)
    q, k, v = q.reshape(b, t, nh, dh), k.reshape(b, t, kv, dh), v.reshape(b, t, kv, dh)
    if cfg.qk_norm == "head":
        q, k = _norm(cfg, p["q_norm"], q), _norm(cfg, p["k_norm"], k)
    cos, sin = ctx["rope"]
    if "local_rope" in ctx and window is not None:  # Gemma 3: sliding layers rotate with their own base
        lcos, lsin = ctx["local_rope"]
        cos, sin = jnp.where(window > 0, lcos, cos), jnp.where(window > 0, lsin, sin)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    new_cache = None
    if cache is not None:
        k = jax.lax.dynamic_update_slice_in_dim(cache["key"], k.astype(cache["key"].dtype), ctx["start"], axis=1)
        v = jax.lax.dynamic_update_slice_in_dim(cache["value"], v.astype(cache["value"].dtype), ctx["start"], axis=1)
        new_cache = {"key": k, "value": v}
    s = k.shape[1]
    grouped = q.reshape(b, t, kv, nh // kv, dh)
    scale = float(cfg.query_scale)  # type: ignore[arg-type]  # set by DecoderConfig.__post_init__
    scores = jnp.einsum("bqkgd,bskd->bkgqs", grouped, k, preferred_element_type=jnp.float32) * scale
    scores = _softcap(scores, cfg.attn_logit_softcapping)
    qi, ki = ctx["q_index"][:, None], ctx["k_index"][None, :]
    allowed = ki <= qi
    if window is not None:
        allowed = allowed & ((window == 0) | (ki > qi - window))
    allowed = allowed[None, None, None] & ctx["mask"][:, None, None, None, :]
    scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)  # (B, KV, G, T, S)
    # the probabilities as a site: (B, T, H * S), so a head view is (B, H, T, S)
    flat = tap("self_attn.softmax.output", probs.reshape(b, nh, t, s).transpose(0, 2, 1, 3).reshape(b, t, nh * s))
    probs = flat.reshape(b, t, nh, s).transpose(0, 2, 1, 3).reshape(b, kv, nh // kv, t, s)
    out = jnp.einsum("bkgqs,bskd->bqkgd", probs, v).reshape(b, t, nh * dh)
    out = _dense(p["o_proj"], tap("self_attn.o_proj.input", out))
    return tap("self_attn.output", out), new_cache


def _mlp(cfg: DecoderConfig, p, x):
    x = tap("mlp.input", x)
    up = tap("mlp.up_proj.output", _dense(p["up_proj"], x))
    if cfg.mlp_gated:
        gate = tap("mlp.gate_proj.output", _dense(p["gate_proj"], x))
        hidden = tap("mlp.act_fn.output", _act(cfg.hidden_act, gate)) * up
    else:
        hidden = tap("mlp.act_fn.output", _act(cfg.hidden_act, up))
    return tap("mlp.output", _dense(p["down_proj"], tap("mlp.down_proj.input", hidden)))


def layer(cfg: DecoderConfig, p, h, ctx, window=None, cache=None):
    """One decoder layer: `(h, new cache slice or None)`."""
    h = tap("input", h)
    if cfg.parallel_residual:  # GPT-NeoX: both sublayers read the block's input
        a, cache = _attention(cfg, p["self_attn"], _norm(cfg, p["input_layernorm"], h), ctx, window, cache)
        m = _mlp(cfg, p["mlp"], _norm(cfg, p["post_attention_layernorm"], h))
        h = m + a + h
    elif cfg.block == "pre":
        a, cache = _attention(cfg, p["self_attn"], _norm(cfg, p["input_layernorm"], h), ctx, window, cache)
        h = h + a
        h = h + _mlp(cfg, p["mlp"], _norm(cfg, p["post_attention_layernorm"], h))
    elif cfg.block == "sandwich":
        a, cache = _attention(cfg, p["self_attn"], _norm(cfg, p["input_layernorm"], h), ctx, window, cache)
        h = h + _norm(cfg, p["post_attention_layernorm"], a)
        m = _mlp(cfg, p["mlp"], _norm(cfg, p["pre_feedforward_layernorm"], h))
        h = h + _norm(cfg, p["post_feedforward_layernorm"], m)
    else:  # post
        a, cache = _attention(cfg, p["self_attn"], h, ctx, window, cache)
        h = h + _norm(cfg, p["post_attention_layernorm"], a)
        h = h + _norm(cfg, p["post_feedforward_layernorm"], _mlp(cfg, p["mlp"], h))
    return tap("output", h), cache


# ---------------------------------------------------------------------------- model
def embed(cfg: DecoderConfig, params, input_ids):
    """Hidden states entering layer 0 (Gemma's scale included), `(B, T, D)`."""
    table = params["embed_tokens"]["embedding"]
    h = tap("embed_tokens.output", jnp.take(table, input_ids, axis=0))
    if cfg.embed_scale:
        h = h * jnp.asarray(cfg.hidden_size**0.5, h.dtype)
    return h


def final(cfg: DecoderConfig, params, h):
    """The final norm."""
    return tap("norm.output", _norm(cfg, params["norm"], h))


def unembed(cfg: DecoderConfig, params, h):
    """Logits from final hidden states (tied or `lm_head`, Gemma 2's final soft-cap)."""
    if "lm_head" in params:
        logits = h @ params["lm_head"]["kernel"]
    else:
        logits = h @ params["embed_tokens"]["embedding"].T.astype(h.dtype)
    return _softcap(logits, cfg.final_logit_softcapping)


def _batch_shards(sharding) -> int:
    """How many ways `sharding` (a `NamedSharding`) splits the batch axis."""
    spec = tuple(sharding.spec)
    axes = spec[0] if spec else None
    if axes is None:
        return 1
    names = (axes,) if isinstance(axes, str) else tuple(axes)
    return int(math.prod(sharding.mesh.shape[a] for a in names))


def forward(
    cfg: DecoderConfig,
    params,
    input_ids,
    attention_mask,
    position_ids,
    *,
    embeds=None,
    logit_positions=None,
    cache=None,
    hidden_states: bool = False,
    remat: bool = False,
    batch_sharding=None,
):
    """The whole model: `{"logits": ...}` (plus `"hidden_states"`, `"cache"` when asked).

    `cache` (`{"key", "value": (L, B, S, KV, Dh), "index": ()}`) makes this a decode step:
    the inputs are written at `index` and attend to the cache; `attention_mask` is then
    `(B, S)`. `logit_positions` `(B, K)` computes the logits at those positions only.
    `batch_sharding` (a `jax.sharding.Sharding` of the batch axis) pins the residual stream
    entering and leaving each layer to it, so that with FSDP params XLA gathers each layer's
    weights rather than the activations of the whole batch.
    """
    h = embed(cfg, params, input_ids) if embeds is None else embeds
    start = 0 if cache is None else cache["index"]
    ctx = attention_context(cfg, attention_mask, position_ids, start)
    meta = layer_meta(cfg)
    kv = None if cache is None else {"key": cache["key"], "value": cache["value"]}

    def pin(x):
        if batch_sharding is None or x.shape[0] % _batch_shards(batch_sharding):
            return x  # a batch the axis does not divide (a single prompt, say) is left to XLA
        return jax.lax.with_sharding_constraint(x, batch_sharding)

    def body(h, xs):
        p, window, c = xs
        h = pin(h)
        out, c = layer(cfg, p, h, ctx, window, c)
        return pin(out), (c, h if hidden_states else None)

    h, (new_kv, inputs_seen) = scan_layers(
        body, h, (params["layers"], meta, kv), length=cfg.num_hidden_layers, remat=remat
    )
    h = final(cfg, params, h)
    out: dict = {}
    if hidden_states:
        out["hidden_states"] = tuple(inputs_seen) + (h,)
    if logit_positions is not None:
        h = jnp.take_along_axis(h, jnp.asarray(logit_positions)[..., None], axis=1)
    out["logits"] = unembed(cfg, params, h)
    if cache is not None:
        out["cache"] = {**new_kv, "index": cache["index"] + input_ids.shape[1]}
    return out
