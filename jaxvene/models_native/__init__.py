"""Models written for jaxvene in Flax, for architectures transformers has no Flax version of."""

from .gpt_neox import GPT_NEOX as GPT_NEOX
from .gpt_neox import FlaxGPTNeoXForCausalLM as FlaxGPTNeoXForCausalLM

from .qwen2 import QWEN2 as QWEN2
from .qwen2 import FlaxQwen2ForCausalLM as FlaxQwen2ForCausalLM

__all__ = ["FlaxGPTNeoXForCausalLM", "GPT_NEOX", "FlaxQwen2ForCausalLM", "QWEN2"]
