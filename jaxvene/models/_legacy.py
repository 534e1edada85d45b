"""The names of jaxvene's first native models, which the native decoder replaced.

`FlaxGPTNeoXForCausalLM` and `FlaxQwen2ForCausalLM` were Flax ports with unrolled layers;
GPT-NeoX and Qwen2 are now families of :class:`~jaxvene.models.decoder.NativeDecoder`. The
old names still load a checkpoint folder (with a DeprecationWarning) and build a random model
from a transformers config, returning a `NativeDecoder`.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp

from .decoder import NativeDecoder, from_pretrained

__all__ = ["FlaxGPTNeoXForCausalLM", "FlaxQwen2ForCausalLM"]


class _Legacy:
    model_type: str

    def __new__(cls, config, params=None, seed: int = 0, dtype=jnp.float32):
        _warn(cls)
        raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        if raw.get("model_type") != cls.model_type:
            raise ValueError(f"expected a {cls.model_type} config, got model_type {raw.get('model_type')!r}")
        return NativeDecoder.random(raw, seed=seed, dtype=dtype)

    @classmethod
    def from_pretrained(cls, folder, dtype=jnp.float32) -> NativeDecoder:
        _warn(cls)
        model = from_pretrained(folder, dtype=dtype)
        if model.config.model_type != cls.model_type:
            raise ValueError(f"{folder} holds a {model.config.model_type} checkpoint, not {cls.model_type!r}")
        return model


def _warn(cls):
    warnings.warn(
        f"jaxvene.{cls.__name__} is now jaxvene.from_pretrained(folder) (a NativeDecoder)",
        DeprecationWarning,
        stacklevel=3,
    )


class FlaxGPTNeoXForCausalLM(_Legacy):
    """Deprecated: `jaxvene.from_pretrained(folder)` loads GPT-NeoX (Pythia) checkpoints."""

    model_type = "gpt_neox"


class FlaxQwen2ForCausalLM(_Legacy):
    """Deprecated: `jaxvene.from_pretrained(folder)` loads Qwen2 checkpoints."""

    model_type = "qwen2"
