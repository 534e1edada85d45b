"""Sharding rules for the native decoders' params (for `from_pretrained(mesh=, sharding=)`).

Rules map regular expressions over dotted param paths (`layers.mlp.up_proj.kernel`) to
`PartitionSpec`s of the full param shape, the stacked layer axis first.
"""

from __future__ import annotations

from jax.sharding import PartitionSpec as P

__all__ = ["tensor_parallel"]


def tensor_parallel(axis: str = "model") -> dict[str, P]:
    """Megatron-style tensor parallelism over the mesh axis `axis`: q/k/v, gate and up
    projections split their outputs (heads, MLP features), o and down projections their inputs,
    so each layer needs one reduction after attention and one after the MLP. The head counts
    and MLP width should be divisible by the axis size (else XLA reshards inside the layer). An
    untied LM head splits the vocabulary; embeddings and norms are replicated."""
    return {
        r"layers\.self_attn\.(q|k|v)_proj\.kernel": P(None, None, axis),
        r"layers\.self_attn\.(q|k|v)_proj\.bias": P(None, axis),
        r"layers\.self_attn\.o_proj\.kernel": P(None, axis, None),
        r"layers\.mlp\.(gate|up)_proj\.kernel": P(None, None, axis),
        r"layers\.mlp\.(gate|up)_proj\.bias": P(None, axis),
        r"layers\.mlp\.down_proj\.kernel": P(None, axis, None),
        r"lm_head\.kernel": P(None, axis),
    }
