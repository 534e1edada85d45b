"""T5's site table (`FlaxT5ForConditionalGeneration`, `FlaxT5Model`; `FlaxT5EncoderModel` for
the `encoder_*` names), and a repair of Flax T5 on new JAX.

Plain names are the *decoder* stack, which the logits come from (positions over
`decoder_input_ids`); `encoder_<name>` the same site in the encoder stack (positions over
`input_ids`), e.g. `encoder_block_output`, `encoder_head_query_output`. Layer numbers count
within a stack. The decoder's cross-attention: `cross_attention_input` (its normed input),
`cross_attention_output`, `cross_attention_value_output`, `head_cross_attention_value_output`
(queries from the decoder; keys and values, which sit on encoder positions, are not exposed).
Attention and MLP outputs are taken before the residual add, inputs after the pre-norm;
`mlp_activation` is the input of `wo`: `act(wi x)`, or `act(wi_0 x) * wi_1 x` for gated T5
(v1.1). q/k/v and the per-head views split the hidden axis into `num_heads` heads. Inputs:
`input_ids`, `attention_mask`, `decoder_input_ids` (required, except by `FlaxT5EncoderModel`,
which ignores decoder inputs), `decoder_attention_mask`.

Importing this module (which `import jaxvene` does) also repairs Flax T5 on JAX versions
without `jnp.clip(a_max=...)`, which transformers' `FlaxT5Attention._relative_position_bucket`
still calls (the model cannot even be built): once `transformers.models.t5.modeling_flax_t5` is
imported, that method is replaced by the same computation written with `jnp.minimum`. Nothing
changes where JAX has `a_max`, or where the installed transformers has no Flax T5 (none, or 5.x):
then no import hook is installed.
"""

from __future__ import annotations

import importlib.abc
import inspect
import sys

import jax.numpy as jnp

from .._transformers import flax_transformers_installed
from ._spec import Component, Family, _same_heads

__all__ = ["T5"]


# ---------------------------------------------------------------------------- site table
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


def _t5_call(module, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None, **kwargs):
    if "decoder_input_ids" not in inspect.signature(type(module).__call__).parameters:
        return module(input_ids=input_ids, attention_mask=attention_mask, **kwargs)  # FlaxT5EncoderModel
    if decoder_input_ids is None:
        raise ValueError(
            "T5 inputs need 'decoder_input_ids' as well as 'input_ids' (e.g. the decoder start token "
            f"{module.config.decoder_start_token_id} followed by the target so far)"
        )
    return module(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
        **kwargs,
    )


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
    heads=_same_heads("num_heads"),
    inputs=("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"),
    dummy=lambda config: {"input_ids": jnp.zeros((1, 4), jnp.int32), "decoder_input_ids": jnp.zeros((1, 4), jnp.int32)},
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


if _clip_lacks_a_max() and flax_transformers_installed():
    if _T5_MODULE in sys.modules:
        _repair_t5(sys.modules[_T5_MODULE])
    else:
        sys.meta_path.insert(0, _RepairT5OnImport())
