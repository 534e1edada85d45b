"""Site tables for HuggingFace Flax encoders (BERT, RoBERTa), ViT and T5.

Component names are pyvene's (see `_families`). `unit="pos"` indexes the family's position
axis; q/k/v and the per-head views split the hidden axis into `num_attention_heads` heads.
What the names mean here:

* **BERT, RoBERTa** (post-LayerNorm; `FlaxBert{Model,ForMaskedLM,ForSequenceClassification,...}`,
  `FlaxRoberta...`). Positions are tokens of `input_ids`; attention is bidirectional, so a patch
  at one position reaches every position in later layers. `block_output` is the layer's output
  (after its final LayerNorm). `attention_output` is the attention output projection
  (`attention.output.dense`) *before* dropout, the residual add and the LayerNorm; `mlp_output`
  likewise `output.dense` before its residual add and LayerNorm; `mlp_activation` is
  `act(intermediate.dense(x))`. `attention_input` is the layer input (no pre-norm), `mlp_input`
  the residual stream after the attention sublayer's LayerNorm. Inputs: `input_ids`,
  `attention_mask`, `token_type_ids` (zeros when left out). Position ids are what HF's wrapper
  uses and are not an input: `0..T-1` for BERT; for RoBERTa counted over non-pad tokens from
  `pad_token_id + 1`.
* **ViT** (pre-LayerNorm; `FlaxViTModel`, `FlaxViTForImageClassification`). Input
  `pixel_values`, `(B, C, H, W)` as HF's image processors and `FlaxViTModel.__call__` take it.
  Position 0 of every site is the class token, positions `1..N` the patches in row-major order:
  patch `(r, c)` is position `1 + r * (W // patch_size) + c`. `attention_input` / `mlp_input` are
  the LayerNorm outputs that feed the sublayers; `attention_output` / `mlp_output` the sublayer
  outputs before the residual add.
* **T5** (`FlaxT5ForConditionalGeneration`, `FlaxT5Model`; `FlaxT5EncoderModel` for the
  `encoder_*` names). Plain names are the *decoder* stack, which the logits come from
  (positions over `decoder_input_ids`); `encoder_<name>` the same site in the encoder stack
  (positions over `input_ids`), e.g. `encoder_block_output`, `encoder_head_query_output`. Layer
  numbers count within a stack. The decoder's cross-attention: `cross_attention_input` (its
  normed input), `cross_attention_output`, `cross_attention_value_output`,
  `head_cross_attention_value_output` (queries from the decoder; keys and values, which sit
  on encoder positions, are not exposed). Attention and MLP outputs are taken before the
  residual add, inputs after the pre-norm; `mlp_activation` is the input of `wo`: `act(wi x)`,
  or `act(wi_0 x) * wi_1 x` for gated T5 (v1.1). Inputs: `input_ids`, `attention_mask`,
  `decoder_input_ids` (required, except by `FlaxT5EncoderModel`, which ignores decoder inputs),
  `decoder_attention_mask`.

Importing this module also repairs Flax T5 on JAX versions without `jnp.clip(a_max=...)`, which
transformers' `FlaxT5Attention._relative_position_bucket` still calls (the model cannot even be
built): once `transformers.models.t5.modeling_flax_t5` is imported, that method is replaced by
the same computation written with `jnp.minimum`. Nothing changes where JAX has `a_max`.
"""

from __future__ import annotations

import importlib.abc
import inspect
import sys

import jax.numpy as jnp

from ._base import Component, Family

__all__ = ["ENCODER_FAMILIES", "BERT", "ROBERTA", "VIT", "T5"]


# ---------------------------------------------------------------------------- BERT, RoBERTa
def _bert_like_components(self_attention: str) -> dict:
    """The components of a BERT-style layer (`attention.output.dense`, `intermediate`,
    `output.dense`); `self_attention` is the path of the module holding query/key/value."""
    dense_in = Component("attention.output.dense", "input")
    return {
        "block_input": Component("", "input"),
        "block_output": Component("", "output"),
        "mlp_input": Component("intermediate", "input"),
        "mlp_activation": Component("intermediate", "output"),
        "mlp_output": Component("output.dense", "output"),
        "attention_input": Component("attention", "input"),
        "attention_output": Component("attention.output.dense", "output"),
        "attention_value_output": dense_in,
        "head_attention_value_output": Component(dense_in.path, "input", heads="query"),
        "query_output": Component(f"{self_attention}.query", "output"),
        "key_output": Component(f"{self_attention}.key", "output"),
        "value_output": Component(f"{self_attention}.value", "output"),
        "head_query_output": Component(f"{self_attention}.query", "output", heads="query"),
        "head_key_output": Component(f"{self_attention}.key", "output", heads="query"),
        "head_value_output": Component(f"{self_attention}.value", "output", heads="query"),
    }


def _bert_positions(module, input_ids):
    return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)


def _roberta_positions(module, input_ids):
    pad = module.config.pad_token_id
    real = (input_ids != pad).astype(jnp.int32)
    return jnp.cumsum(real, axis=1) * real + pad


def _encoder_call(positions):
    """A `method` for `module.apply` (passed through `Family.call_kwargs`) that fills the
    arguments HF's wrapper normally fills (token types, position ids, no head mask) and calls
    the module. These families set no `unembed`, whose path passes its own `method`."""

    def call(module, input_ids, attention_mask, token_type_ids=None, **kwargs):
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        # keywords: the causal-LM heads take position_ids before token_type_ids
        return module(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                      position_ids=positions(module, input_ids), head_mask=None, **kwargs)

    return call


def _encoder_heads(config):
    return {"query": config.num_attention_heads, "kv": config.num_attention_heads}


_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

BERT = Family(
    name="bert",
    layers="encoder.layer",
    model_types=("bert",),
    components=_bert_like_components("attention.self"),
    heads=_encoder_heads,
    inputs=_ENCODER_INPUTS,
    call_kwargs={"method": _encoder_call(_bert_positions)},
)

ROBERTA = Family(
    name="roberta",
    layers="encoder.layer",
    model_types=("roberta",),
    components=_bert_like_components("attention.self"),
    heads=_encoder_heads,
    inputs=_ENCODER_INPUTS,
    call_kwargs={"method": _encoder_call(_roberta_positions)},
)


# ---------------------------------------------------------------------------- ViT
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
    heads=_encoder_heads,
    inputs=("pixel_values",),
    tokens=None,
    dummy=lambda config: {
        "pixel_values": jnp.zeros((1, config.num_channels, config.image_size, config.image_size), jnp.float32)
    },
    site_length=_vit_length,
    call_kwargs={"method": _vit_call},
)


# ---------------------------------------------------------------------------- T5
def _t5_attention(prefix: str, module: str, stack) -> dict:
    """`<prefix>attention_input/output/value_output` and the per-head value output."""
    name = prefix + "attention"
    return {
        f"{name}_input": Component(module, "input", stack=stack),
        f"{name}_output": Component(module, "output", stack=stack),
        f"{name}_value_output": Component(f"{module}.o", "input", stack=stack),
        f"head_{name}_value_output": Component(f"{module}.o", "input", heads="query", stack=stack),
    }


def _t5_stack(stack, mlp_index: int) -> dict:
    """One T5 stack's components, unprefixed (`layer.0` self-attention, `layer.<mlp_index>` MLP)."""
    mlp, attn = f"layer.{mlp_index}.DenseReluDense", "layer.0.SelfAttention"
    table = {
        "block_input": Component("", "input", stack=stack),
        "block_output": Component("", "output", stack=stack),
        "mlp_input": Component(mlp, "input", stack=stack),
        "mlp_activation": Component(f"{mlp}.wo", "input", stack=stack),
        "mlp_output": Component(mlp, "output", stack=stack),
        **_t5_attention("", attn, stack),
    }
    for name in ("query", "key", "value"):
        table[f"{name}_output"] = Component(f"{attn}.{name[0]}", "output", stack=stack)
        table[f"head_{name}_output"] = Component(f"{attn}.{name[0]}", "output", heads="query", stack=stack)
    return table


def _t5_call(module, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
             **kwargs):
    if "decoder_input_ids" not in inspect.signature(type(module).__call__).parameters:
        return module(input_ids=input_ids, attention_mask=attention_mask, **kwargs)  # FlaxT5EncoderModel
    if decoder_input_ids is None:
        raise ValueError(
            "T5 inputs need 'decoder_input_ids' as well as 'input_ids' (e.g. the decoder start token "
            f"{module.config.decoder_start_token_id} followed by the target so far)"
        )
    return module(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                  decoder_attention_mask=decoder_attention_mask, **kwargs)


T5 = Family(
    name="t5",
    # The encoder is the main stack: `config.num_hidden_layers` counts its layers, and the
    # decoder's count (`num_decoder_layers`) may differ.
    layers="encoder.block",
    model_types=("t5",),
    components={
        **_t5_stack("decoder", 2),
        **_t5_attention("cross_", "layer.1.EncDecAttention", "decoder"),
        **{f"encoder_{k}": v for k, v in _t5_stack(None, 1).items()},
    },
    heads=lambda config: {"query": config.num_heads, "kv": config.num_heads},
    inputs=("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"),
    dummy=lambda config: {"input_ids": jnp.zeros((1, 4), jnp.int32),
                          "decoder_input_ids": jnp.zeros((1, 4), jnp.int32)},
    stacks={"decoder": ("decoder.block", lambda config: int(config.num_decoder_layers), "decoder_input_ids")},
    call_kwargs={"method": _t5_call},
)


# ---------------------------------------------------------------------------- Flax T5 on new JAX
_T5_MODULE = "transformers.models.t5.modeling_flax_t5"


def _relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """transformers' T5 bucketing (Mesh TensorFlow's), with `jnp.minimum` for `jnp.clip(a_max=)`."""
    buckets = 0
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0) * num_buckets
        relative_position = jnp.abs(relative_position)
    else:
        relative_position = -jnp.minimum(relative_position, 0)
    exact = num_buckets // 2
    log_ratio = jnp.log(relative_position / exact) / jnp.log(max_distance / exact)
    large = jnp.minimum(exact + log_ratio * (num_buckets - exact), num_buckets - 1)
    buckets += jnp.where(relative_position < exact, relative_position, large)
    return buckets.astype("i4")


def _repair_t5(module) -> None:
    module.FlaxT5Attention._relative_position_bucket = staticmethod(_relative_position_bucket)


class _RepairingLoader(importlib.abc.Loader):
    """Another loader's module, repaired after it runs."""

    def __init__(self, inner, finder):
        self._inner, self._finder = inner, finder

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _repair_t5(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)

    def __getattr__(self, name):  # get_source, get_resource_reader, ...
        return getattr(self._inner, name)


class _RepairT5OnImport(importlib.abc.MetaPathFinder):
    """Repairs transformers' Flax T5 right after it is imported (then leaves `sys.meta_path`)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _T5_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if hasattr(spec.loader, "exec_module"):
            spec.loader = _RepairingLoader(spec.loader, self)
        return spec


def _clip_lacks_a_max() -> bool:
    try:
        return "a_max" not in inspect.signature(jnp.clip).parameters
    except (TypeError, ValueError):  # no signature to read: leave transformers alone
        return False


if _clip_lacks_a_max():
    if _T5_MODULE in sys.modules:
        _repair_t5(sys.modules[_T5_MODULE])
    else:
        sys.meta_path.insert(0, _RepairT5OnImport())


#: Families this module defines; `_families` registers them.
ENCODER_FAMILIES: tuple[Family, ...] = (BERT, ROBERTA, VIT, T5)
