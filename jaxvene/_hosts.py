"""Reading arrays on the host when they may span several processes' devices.

With `jax.distributed`, a batch sharded over every process's devices is one global array of
which each process holds only its own shards; `np.asarray` of it raises. Checks of inputs
(token ids inside the vocabulary) need only the values this process holds: every process
checks its own share.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["local_values"]


def local_values(x) -> np.ndarray:
    """The values of `x` this process holds, as a NumPy array: all of `x` when it is a host
    array or fully addressable, else its addressable shards stacked (shape not preserved;
    for checks of the values, not their layout)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    shards = [np.asarray(s.data).ravel() for s in x.addressable_shards]
    return np.concatenate(shards) if shards else np.zeros((0,), x.dtype)
