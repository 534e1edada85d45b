"""The write path: how an intervention is applied to one tap value. Every client calls it.

`IntervenableModel`, `jaxvene.core.run`, sweeps, causal tracing, the patching helpers,
attribution patching and generation all change activations through :func:`write`, and read
source activations through :func:`read`, so a cell of a sweep and the facade's call at that
cell run the same code. The steps, for a tap value `value` and a :class:`~jaxvene.core.Site`:

1. **view** the value (`Site.view`: a slice of fused q/k/v, heads split before positions);
2. **gather** the units at the locations (`(B, U, D)` positions, `(B, Uh, S, Dh)` heads,
   `(B, Uh, Up, Dh)` heads at positions; `None` selects everything);
3. for a *distributed* intervention, **flatten** the units onto the last axis (pyvene's layout:
   `(B, U * D)`; `(B, Up, Uh * Dh)` for heads at positions), the source likewise;
4. **apply** the intervention with its subspaces and key, in the compute dtype (float32 by
   default: a bfloat16 or float16 activation and its source are cast up first, so rotations
   and their gradients are float32 and an intervention that returns its base leaves a bfloat16
   activation bit-identical); a Collect intervention returns what it saw and leaves the value
   alone; an intervention may return a latent next to its output;
5. **unflatten**, **scatter** the new units back, **unview**.

The gather and the scatter are written per example (`vmap` over the batch), so XLA sees the
batch as a parallel axis of both: with the batch sharded over devices each device reads and
writes only its own examples. (Indexing with an explicit batch iota, `view[arange(B), loc]`,
made XLA's partitioner all-gather the indices and the updates of a batch-sharded scatter.)

Everything here is a pure function of arrays; which steps run is decided by static facts (the
site, the unit, the intervention's class), so nothing here is traced twice.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..interventions._basic import Intervention, InterventionOutput
from ._sites import Site

__all__ = ["Location", "gather", "scatter", "read", "write", "COMPUTE_DTYPE"]

#: What interventions compute in when the activation is a narrower float (see :func:`write`).
COMPUTE_DTYPE = jnp.float32

#: `None` (everything), an int array `(B, U)` of positions or heads, or for unit "h.pos" a pair
#: `(heads (B, Uh), positions (B, Up))`.
Location = Any


def gather(view: jax.Array, unit: str, loc: Location) -> jax.Array:
    """Select units of a view: `(B, U, D)` for positions, `(B, Uh, S, Dh)` for heads,
    `(B, Uh, Up, Dh)` for heads at positions. `loc=None` selects everything."""
    if loc is None:
        return view
    if unit == "h.pos":
        heads, pos = loc
        return jax.vmap(lambda v, h, p: v[h[:, None], p[None, :]])(view, heads, pos)
    return jax.vmap(lambda v, i: v[i])(view, loc)


def scatter(view: jax.Array, unit: str, loc: Location, new: jax.Array) -> jax.Array:
    """Write `new` (shaped like `gather(view, unit, loc)`) back into `view`."""
    new = new.astype(view.dtype)
    if loc is None:
        if new.shape != view.shape:
            raise ValueError(f"an intervention returned shape {new.shape} for an activation of shape {view.shape}")
        return new
    if unit == "h.pos":
        heads, pos = loc
        return jax.vmap(lambda v, h, p, n: v.at[h[:, None], p[None, :]].set(n))(view, heads, pos, new)
    return jax.vmap(lambda v, i, n: v.at[i].set(n))(view, loc, new)


def _flatten(x: jax.Array) -> jax.Array:
    """pyvene's layout for distributed interventions: units concatenated on the last axis."""
    if x.ndim == 3:
        return x.reshape(x.shape[0], -1)
    if x.ndim == 4:  # (B, Uh, Up, Dh) -> (B, Up, Uh * Dh)
        b, h, p, d = x.shape
        return x.transpose(0, 2, 1, 3).reshape(b, p, h * d)
    return x


def _unflatten(x: jax.Array, like: jax.Array) -> jax.Array:
    if like.ndim == 3:
        return x.reshape(like.shape)
    if like.ndim == 4:
        b, h, p, d = like.shape
        return x.reshape(b, p, h, d).transpose(0, 2, 1, 3)
    return x


def _widen(x, dtype):
    """`x` cast to `dtype` if it is a narrower float (bfloat16 -> float32); else `x`."""
    if dtype is None or x is None or not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(dtype) if jnp.finfo(x.dtype).bits < jnp.finfo(dtype).bits else x


def _distributed(iv: Intervention, selected: jax.Array) -> bool:
    return not iv.localist and not iv.keep_last_dim and selected.ndim > 2


def read(site: Site, unit: str, value: jax.Array, loc: Location) -> jax.Array:
    """What an intervention reads from a source run: the units of `site`'s view of `value`."""
    return gather(site.view(value), unit, loc)


def write(
    site: Site,
    unit: str,
    intervention: Intervention,
    value: jax.Array,
    loc: Location,
    source: jax.Array | None = None,
    subspaces: jax.Array | None = None,
    key: jax.Array | None = None,
    compute_dtype=COMPUTE_DTYPE,
) -> tuple[jax.Array, Any]:
    """Apply `intervention` to the tap value `value` at `loc`: `(new value, collected)`.

    Args:
      site: where the value comes from and how to view it.
      unit: "pos", "h" or "h.pos".
      intervention: the intervention module.
      value: the tap value, e.g. `(B, T, D)`.
      loc: the base-side location (see :data:`Location`).
      source: the source units, as :func:`read` returned them (or a constant source), or `None`.
      subspaces: `None` or an int array `(B, K)` (`-1` pads).
      key: PRNG key for stochastic interventions.
      compute_dtype: a float activation narrower than this (bfloat16, float16) and its source
        are cast to it before the intervention, and the result back to the activation's dtype
        at the scatter; `None` computes in the activation's dtype.

    Returns:
      The new tap value, and what the intervention hands back besides it: the activations a
      Collect intervention saw, a latent, or `None`.
    """
    view = site.view(value)
    selected = gather(view, unit, loc)
    if intervention.collects:
        return value, intervention(selected, None, subspaces, key=key)
    distributed = _distributed(intervention, selected)
    base_in = _flatten(selected) if distributed else selected
    if distributed and source is not None and source.ndim == selected.ndim:
        source = _flatten(source)
    base_in, source = _widen(base_in, compute_dtype), _widen(source, compute_dtype)
    out = intervention(base_in, source, subspaces, key=key)
    latent = None
    if isinstance(out, InterventionOutput):
        out, latent = out.output, out.latent
    if out is None:
        return value, latent
    if out.shape != base_in.shape:  # scatter would broadcast a wrong shape without a word
        raise ValueError(
            f"{type(intervention).__name__} at {site.describe()} returned shape {tuple(out.shape)} for "
            f"activations of shape {tuple(base_in.shape)}; an intervention returns its base's shape"
        )
    if distributed:
        out = _unflatten(out, selected)
    return site.unview(value, scatter(view, unit, loc, out)), latent
