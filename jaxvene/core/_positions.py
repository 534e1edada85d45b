"""Position ids from an attention mask (left padding gets the positions the model trained with)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Int

__all__ = ["position_ids_from_mask"]


def position_ids_from_mask(attention_mask: Int[Array, "B T"]) -> Int[Array, "B T"]:
    """Positions counted over the real tokens: `[0 0 1 2]` for the mask `[0 1 1 1]`.

    >>> import jax.numpy as jnp
    >>> position_ids_from_mask(jnp.array([[0, 1, 1, 1]])).tolist()
    [[0, 0, 1, 2]]
    """
    mask = jnp.asarray(attention_mask).astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)
