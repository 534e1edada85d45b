"""ViT's site table (pre-LayerNorm; `FlaxViTModel`, `FlaxViTForImageClassification`).

Input `pixel_values`, `(B, C, H, W)` as HF's image processors and `FlaxViTModel.__call__` take
it. `unit="pos"` indexes positions: position 0 of every site is the class token, positions
`1..N` the patches in row-major order: patch `(r, c)` is position `1 + r * (W // patch_size) + c`.
q/k/v and the per-head views split the hidden axis into `num_attention_heads` heads.
`attention_input` / `mlp_input` are the LayerNorm outputs that feed the sublayers;
`attention_output` / `mlp_output` the sublayer outputs before the residual add.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._spec import Family, _bert_like_components, _same_heads

__all__ = ["VIT"]


def _vit_check(config, pixel_values) -> None:
    shape = tuple(pixel_values.shape)
    channels, size, patch = config.num_channels, config.image_size, config.patch_size
    if len(shape) != 4 or shape[1] != channels:
        raise ValueError(
            f"pixel_values must be (batch, {channels}, {size}, {size}) (channels first, as HF's image "
            f"processors give them); got shape {shape}"
        )
    if shape[2] != size or shape[3] != size:
        raise ValueError(
            f"pixel_values are {shape[2]}x{shape[3]} but this ViT takes {size}x{size} images "
            f"({(size // patch) ** 2} patches of {patch}x{patch})"
        )


def _vit_call(module, pixel_values, **kwargs):
    _vit_check(module.config, pixel_values)
    return module(jnp.transpose(pixel_values, (0, 2, 3, 1)).astype(jnp.float32), **kwargs)


def _vit_length(config, inputs) -> int:
    pixels = inputs["pixel_values"]
    _vit_check(config, pixels)
    patch = config.patch_size
    return 1 + (pixels.shape[2] // patch) * (pixels.shape[3] // patch)


VIT = Family(
    name="vit",
    layers="encoder.layer",
    model_types=("vit",),
    components=_bert_like_components("attention.attention"),
    heads=_same_heads("num_attention_heads"),
    inputs=("pixel_values",),
    tokens=None,
    dummy=lambda config: {
        "pixel_values": jnp.zeros((1, config.num_channels, config.image_size, config.image_size), jnp.float32)
    },
    site_length=_vit_length,
    call_kwargs={"method": _vit_call},
)
