"""Sharding rules for the native decoders' params (for `from_pretrained(mesh=, sharding=)`).

Rules map regular expressions over dotted param paths (`layers.mlp.up_proj.kernel`) to
`PartitionSpec`s of the full param shape, the stacked layer axis first (first match wins;
unmatched params are replicated).

:func:`sharding_rules` combines two axes of a 2-D mesh: tensor parallelism over `model`
(Megatron's split: q/k/v, gate and up projections split their outputs, o and down projections
their inputs, so a layer needs one reduction after attention and one after the MLP) and
fully-sharded data parallelism over `data` (every large param also split along its other axis;
the layers run as a scan, so XLA gathers one layer's weights at a time). Either axis may be
None. :func:`tensor_parallel` is the first alone.
"""

from __future__ import annotations

from jax.sharding import PartitionSpec as P

__all__ = ["sharding_rules", "tensor_parallel"]


def sharding_rules(data: str | None = "data", model: str | None = "model") -> dict[str, P]:
    """FSDP over the mesh axis `data` and tensor parallelism over `model` (see the module
    docstring). Head counts and widths should be divisible by the axis sizes, else XLA
    reshards inside the layer. Norms and biases of the outputs not split stay replicated."""
    return {
        r"layers\.self_attn\.(q|k|v)_proj\.kernel": P(None, data, model),
        r"layers\.self_attn\.(q|k|v)_proj\.bias": P(None, model),
        r"layers\.self_attn\.o_proj\.kernel": P(None, model, data),
        r"layers\.mlp\.(gate|up)_proj\.kernel": P(None, data, model),
        r"layers\.mlp\.(gate|up)_proj\.bias": P(None, model),
        r"layers\.mlp\.down_proj\.kernel": P(None, model, data),
        r"lm_head\.kernel": P(data, model),
        r"embed_tokens\.embedding": P(None, data),
    }


def tensor_parallel(axis: str = "model") -> dict[str, P]:
    """Tensor parallelism alone over the mesh axis `axis` (an untied LM head splits the
    vocabulary; embeddings and norms are replicated)."""
    return sharding_rules(data=None, model=axis)
