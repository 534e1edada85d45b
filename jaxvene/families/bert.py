"""BERT's and RoBERTa's site tables (post-LayerNorm encoders; `FlaxBert{Model,ForMaskedLM,
ForSequenceClassification,...}`, `FlaxRoberta...`).

Component names are pyvene's; `unit="pos"` indexes tokens of `input_ids`, and q/k/v and the
per-head views split the hidden axis into `num_attention_heads` heads. Attention is
bidirectional, so a patch at one position reaches every position in later layers.
`block_output` is the layer's output (after its final LayerNorm). `attention_output` is the
attention output projection (`attention.output.dense`) *before* dropout, the residual add and
the LayerNorm; `mlp_output` likewise `output.dense` before its residual add and LayerNorm;
`mlp_activation` is `act(intermediate.dense(x))`. `attention_input` is the layer input (no
pre-norm), `mlp_input` the residual stream after the attention sublayer's LayerNorm.

Inputs: `input_ids`, `attention_mask`, `token_type_ids` (zeros when left out). Position ids are
what HF's wrapper uses and are not an input: `0..T-1` for BERT; for RoBERTa counted over
non-pad tokens from `pad_token_id + 1`.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._spec import Family, _bert_like_components, _same_heads

__all__ = ["BERT", "ROBERTA"]


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
        return module(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=positions(module, input_ids),
            head_mask=None,
            **kwargs,
        )

    return call


_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

BERT = Family(
    name="bert",
    layers="encoder.layer",
    model_types=("bert",),
    components=_bert_like_components("attention.self"),
    heads=_same_heads("num_attention_heads"),
    inputs=_ENCODER_INPUTS,
    call_kwargs={"method": _encoder_call(_bert_positions)},
)

ROBERTA = Family(
    name="roberta",
    layers="encoder.layer",
    model_types=("roberta",),
    components=_bert_like_components("attention.self"),
    heads=_same_heads("num_attention_heads"),
    inputs=_ENCODER_INPUTS,
    call_kwargs={"method": _encoder_call(_roberta_positions)},
)
