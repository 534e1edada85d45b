"""Models written for jaxvene in Flax, for architectures transformers has no Flax version of."""

from .gpt_neox import GPT_NEOX as GPT_NEOX
from .gpt_neox import FlaxGPTNeoXForCausalLM as FlaxGPTNeoXForCausalLM

__all__ = ["FlaxGPTNeoXForCausalLM", "GPT_NEOX"]
