"""Where each parameter of a native decoder comes from in a HF checkpoint, and its shape.

:func:`layout` maps every leaf of the params tree (a path of keys) to a :class:`Leaf`: its
shape (layers stacked on a leading axis), and the HF tensor it is read from (with `{i}` for
the layer), transposed for linear layers (HF stores `(out, in)`, the kernels are `(in, out)`)
and, for Phi-3's fused `qkv_proj` / `gate_up_proj`, the rows it takes. The loader reads
tensors through it; :func:`init_params` draws random params of the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ._config import DecoderConfig

__all__ = ["Leaf", "layout", "init_params", "tree_from_paths"]


@dataclass(frozen=True)
class Leaf:
    shape: tuple[int, ...]
    tensor: str  # HF tensor name relative to the base model ("layers.{i}.mlp.up_proj.weight") or "lm_head.weight"
    stacked: bool = False
    transpose: bool = False
    rows: tuple[int, int] | None = None  # rows of a fused HF tensor
    init: str = "normal"  # "normal", "ones" or "zeros" (for init_params)


def layout(cfg: DecoderConfig) -> dict[tuple[str, ...], Leaf]:
    """Every param leaf of `cfg`'s model: path -> :class:`Leaf`."""
    d, f, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    hq, hkv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    norm_init = "zeros" if cfg.norm == "gemma" else "ones"
    out: dict[tuple[str, ...], Leaf] = {
        ("embed_tokens", "embedding"): Leaf((cfg.vocab_size, d), "embed_tokens.weight"),
        ("norm", "weight"): Leaf((d,), "norm.weight", init=norm_init),
    }
    if not cfg.tie_word_embeddings:
        out[("lm_head", "kernel")] = Leaf((d, cfg.vocab_size), "lm_head.weight", transpose=True)

    def stacked(path, shape, tensor, **kw):
        out[("layers", *path)] = Leaf((L, *shape), f"layers.{{i}}.{tensor}", stacked=True, **kw)

    def linear(path, n_in, n_out, tensor, bias, rows=None):
        stacked((*path, "kernel"), (n_in, n_out), f"{tensor}.weight", transpose=True, rows=rows)
        if bias:
            stacked((*path, "bias"), (n_out,), f"{tensor}.bias", rows=rows)

    norms = {
        "pre": ("input_layernorm", "post_attention_layernorm"),
        "sandwich": (
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ),
        "post": ("post_attention_layernorm", "post_feedforward_layernorm"),
    }[cfg.block]
    for name in norms:
        stacked((name, "weight"), (d,), f"{name}.weight", init=norm_init)
    fused = cfg.model_type == "phi3"
    for name, width, start in (("q_proj", hq, 0), ("k_proj", hkv, hq), ("v_proj", hkv, hq + hkv)):
        tensor = "self_attn.qkv_proj" if fused else f"self_attn.{name}"
        rows = (start, start + width) if fused else None
        linear(("self_attn", name), d, width, tensor, cfg.attention_bias, rows)
    linear(("self_attn", "o_proj"), hq, d, "self_attn.o_proj", cfg.attention_out_bias)
    if cfg.qk_norm is not None:
        q_width, k_width = (cfg.head_dim, cfg.head_dim) if cfg.qk_norm == "head" else (hq, hkv)
        stacked(("self_attn", "q_norm", "weight"), (q_width,), "self_attn.q_norm.weight", init=norm_init)
        stacked(("self_attn", "k_norm", "weight"), (k_width,), "self_attn.k_norm.weight", init=norm_init)
    for name, start in (("gate_proj", 0), ("up_proj", f)):
        tensor = "mlp.gate_up_proj" if fused else f"mlp.{name}"
        linear(("mlp", name), d, f, tensor, cfg.mlp_bias, (start, start + f) if fused else None)
    linear(("mlp", "down_proj"), f, d, "mlp.down_proj", cfg.mlp_bias)
    return out


def tree_from_paths(flat: dict) -> dict:
    """`{("a", "b"): x}` -> `{"a": {"b": x}}`."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def init_params(cfg: DecoderConfig, key: jax.Array, dtype=jnp.float32, scale: float = 0.02) -> dict:
    """Random params for `cfg` (normal(0, scale) weights, norms at identity, zero biases)."""
    leaves = layout(cfg)
    keys = jax.random.split(key, len(leaves))
    flat = {}
    for k, (path, leaf) in zip(keys, leaves.items()):
        if leaf.init == "ones":
            flat[path] = jnp.ones(leaf.shape, dtype)
        elif leaf.init == "zeros" or path[-1] == "bias":
            flat[path] = jnp.zeros(leaf.shape, dtype)
        else:
            flat[path] = (scale * jax.random.normal(k, leaf.shape, jnp.float32)).astype(dtype)
    return tree_from_paths(flat)
