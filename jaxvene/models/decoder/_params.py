"""Where each parameter of a native decoder comes from in a HF checkpoint, and its shape.

:func:`layout` maps every leaf of the params tree (a path of keys) to a :class:`Leaf`: its
shape (layers stacked on a leading axis), and the HF tensor it is read from (with `{i}` for
the layer), transposed for linear layers (HF stores `(out, in)`, the kernels are `(in, out)`)
and, for fused HF tensors (Phi-3's `qkv_proj` / `gate_up_proj`, GPT-NeoX's per-head
interleaved `query_key_value`), the rows it takes. The loader reads
tensors through it; :func:`init_params` draws random params of the same shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ._config import DecoderConfig

__all__ = ["Leaf", "layout", "init_params", "tree_from_paths", "BASE_PREFIX"]


#: the prefix of the base model's tensors when a family's causal LM saves them
BASE_PREFIX = {"gpt_neox": "gpt_neox."}
_NEOX_NAMES = {
    "embed_tokens.weight": "embed_in.weight",
    "norm.weight": "final_layer_norm.weight",
    "norm.bias": "final_layer_norm.bias",
    "lm_head.weight": "embed_out.weight",
    "self_attn.qkv_proj": "attention.query_key_value",
    "self_attn.o_proj": "attention.dense",
    "mlp.up_proj": "mlp.dense_h_to_4h",
    "mlp.down_proj": "mlp.dense_4h_to_h",
}


@dataclass(frozen=True)
class Leaf:
    shape: tuple[int, ...]
    tensor: str  # HF tensor name relative to the base model ("layers.{i}.mlp.up_proj.weight"), or the LM head's
    stacked: bool = False
    transpose: bool = False
    #: rows of a fused HF tensor, as `(start, stop)` ranges taken in order (Phi-3: one range;
    #: GPT-NeoX's per-head interleaved q/k/v: one range per head)
    rows: tuple[tuple[int, int], ...] | None = None
    init: str = "normal"  # "normal", "ones" or "zeros" (for init_params)

    @property
    def is_head(self) -> bool:
        return self.tensor in ("lm_head.weight", _NEOX_NAMES["lm_head.weight"])

    def source_rows(self):
        """The fused tensor's row indices this leaf takes, in order (None: not fused)."""
        import numpy as np

        if self.rows is None:
            return None
        return np.concatenate([np.arange(a, b) for a, b in self.rows])


def layout(cfg: DecoderConfig) -> dict[tuple[str, ...], Leaf]:
    """Every param leaf of `cfg`'s model: path -> :class:`Leaf`."""
    d, f, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    nh, dh = cfg.num_attention_heads, cfg.head_dim
    hq, hkv = nh * dh, cfg.num_key_value_heads * dh
    neox = cfg.model_type == "gpt_neox"
    names = _NEOX_NAMES if neox else {}
    norm_init = "zeros" if cfg.norm == "gemma" else "ones"
    norm_bias = cfg.norm == "layer"
    out: dict[tuple[str, ...], Leaf] = {}

    def name(tensor):
        if tensor in names:  # top level
            return names[tensor]
        module, _, param = tensor.rpartition(".")
        layer, _, module = module.partition("}.")  # "layers.{i" and the module path
        return f"{layer}}}.{names.get(module, module)}.{param}" if module else tensor

    def leaf(path, shape, tensor, layered, **kw):
        if layered:
            out[("layers", *path)] = Leaf((L, *shape), name(f"layers.{{i}}.{tensor}"), stacked=True, **kw)
        else:
            out[path] = Leaf(shape, name(tensor), **kw)

    def linear(path, n_in, n_out, tensor, bias, rows=None):
        leaf((*path, "kernel"), (n_in, n_out), f"{tensor}.weight", True, transpose=True, rows=rows)
        if bias:
            leaf((*path, "bias"), (n_out,), f"{tensor}.bias", True, rows=rows)

    def norm(path, width, tensor, layered=True):
        leaf((*path, "weight"), (width,), f"{tensor}.weight", layered, init=norm_init)
        if norm_bias:
            leaf((*path, "bias"), (width,), f"{tensor}.bias", layered, init="zeros")

    leaf(("embed_tokens", "embedding"), (cfg.vocab_size, d), "embed_tokens.weight", False)
    norm(("norm",), d, "norm", layered=False)
    if not cfg.tie_word_embeddings:
        leaf(("lm_head", "kernel"), (d, cfg.vocab_size), "lm_head.weight", False, transpose=True)
    block_norms = {
        "pre": ("input_layernorm", "post_attention_layernorm"),
        "sandwich": (
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ),
        "post": ("post_attention_layernorm", "post_feedforward_layernorm"),
    }[cfg.block]
    for n in block_norms:
        norm((n,), d, n)
    for i, (proj, width, start) in enumerate((("q_proj", hq, 0), ("k_proj", hkv, hq), ("v_proj", hkv, hq + hkv))):
        if neox:  # per head: [q_h, k_h, v_h] rows of width dh
            rows = tuple((h * 3 * dh + i * dh, h * 3 * dh + (i + 1) * dh) for h in range(nh))
            linear(("self_attn", proj), d, width, "self_attn.qkv_proj", cfg.attention_bias, rows)
        elif cfg.model_type == "phi3":
            linear(("self_attn", proj), d, width, "self_attn.qkv_proj", cfg.attention_bias, ((start, start + width),))
        else:
            linear(("self_attn", proj), d, width, f"self_attn.{proj}", cfg.attention_bias)
    linear(("self_attn", "o_proj"), hq, d, "self_attn.o_proj", cfg.attention_out_bias)
    if cfg.qk_norm is not None:
        q_width, k_width = (dh, dh) if cfg.qk_norm == "head" else (hq, hkv)
        norm(("self_attn", "q_norm"), q_width, "self_attn.q_norm")
        norm(("self_attn", "k_norm"), k_width, "self_attn.k_norm")
    mlp = ("gate_proj", "up_proj") if cfg.mlp_gated else ("up_proj",)
    for k, proj in enumerate(mlp):
        if cfg.model_type == "phi3":
            linear(("mlp", proj), d, f, "mlp.gate_up_proj", cfg.mlp_bias, ((k * f, (k + 1) * f),))
        else:
            linear(("mlp", proj), d, f, f"mlp.{proj}", cfg.mlp_bias)
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
