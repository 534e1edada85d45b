"""What a native decoder's call returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CausalLMOutput"]


@dataclass
class CausalLMOutput:
    """A causal LM's outputs: `.logits` `(B, T, V)`; `hidden_states` (every layer's input and
    the final normed state) when asked; `loss` when labels were given. Also reads as a mapping
    (`out["logits"]`)."""

    logits: Any = None
    hidden_states: Any = None
    loss: Any = None

    def __getitem__(self, key):
        return getattr(self, key)

    def keys(self):
        return [k for k in ("logits", "hidden_states", "loss") if getattr(self, k) is not None]
