"""Interventions: pure functions from (base, source) activations to new base activations.

An intervention sees the activations gathered at its locations, never the whole model. With
`B` examples and `U` selected units (positions or heads) of width `D`, it receives

* `(B, U, D)` for a *localist* intervention (one that acts on each unit separately: Vanilla,
  Addition, Zero, ...), or when `keep_last_dim=True`;
* `(B, U * D)` for a *distributed* one (a rotation over several tokens at once), matching pyvene;
* `(B, Uh, Up, Dh)` for head-and-position units (`"h.pos"`) on a localist intervention, and
  `(B, Up, Uh * Dh)` on a distributed one.

`subspaces`, when given, is an int array `(B, K)` of indices into the intervention's subspace
axis (the last axis for most interventions), already expanded through `subspace_partition` and
padded with `-1` where examples select fewer indices. When it is `None`, the intervention acts on
`[..., :interchange_dim]`. As in pyvene, `interchange_dim` starts at `embed_dim` (so
`VanillaIntervention(embed_dim=2)` swaps the first 2 dimensions of a wider input; the
interventions `IntervenableModel` builds get the component's width, i.e. everything) and
:meth:`Intervention.set_interchange_dim` changes it. Interventions whose subspace axis is not
the representation (low-rank, PCA and autoencoder latents) start with `None`: all of it.

Interventions are immutable (Equinox modules): pyvene's in-place setters (`set_interchange_dim`,
`set_temperature`, `set_source_representation`, ...) return a new intervention and leave the
one they are called on unchanged. Called on `IntervenableModel.interventions[key]`, the model's
handle for its stored intervention, they also store the new one in the model.

Writing your own: subclass :class:`Intervention` (an `equinox.Module`, so its array fields are
trainable leaves) and implement `__call__(self, base, source, subspaces=None, *, key=None)`, or
pass any plain function `f(base, source)` / `f(base, source, subspaces)` as
`RepresentationConfig(intervention=f)`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, cast

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Int

__all__ = [
    "Intervention",
    "InterventionOutput",
    "LocalistRepresentationIntervention",
    "DistributedRepresentationIntervention",
    "ConstantSourceIntervention",
    "SourcelessIntervention",
    "TrainableIntervention",
    "BasisAgnosticIntervention",
    "VanillaIntervention",
    "AdditionIntervention",
    "SubtractionIntervention",
    "ZeroIntervention",
    "CollectIntervention",
    "SkipIntervention",
    "NoiseIntervention",
    "LambdaIntervention",
    "subspace_mask",
]


class InterventionOutput(NamedTuple):
    """What an intervention may return instead of a bare array: the new activations and a latent
    (e.g. SAE codes) that the caller gets back next to the collected activations."""

    output: Any
    latent: Any = None


def subspace_mask(subspaces: Int[Array, "B K"], size: int) -> Array:
    """Boolean `(B, size)` mask of the indices in `subspaces` (`-1` entries select nothing)."""
    hits = subspaces[..., None] == jnp.arange(size)
    return jnp.any(hits, axis=-2)


def _expand_mask(mask: Array, ndim: int) -> Array:
    """Insert unit axes so a `(B, n)` mask broadcasts against a `(B, ..., n)` array."""
    return mask.reshape(mask.shape[:1] + (1,) * (ndim - 2) + mask.shape[1:])


def _broadcast_source(source: Array, base: Array) -> Array:
    if source.shape == base.shape:
        return source
    if source.shape[-1] != base.shape[-1]:
        raise ValueError(
            f"source activations of shape {source.shape} cannot be broadcast into base "
            f"activations of shape {base.shape}: their last dimensions differ."
        )
    try:
        return jnp.broadcast_to(source, base.shape)
    except ValueError:
        flat = source.reshape(-1, source.shape[-1])
        if flat.shape[0] != 1:
            raise ValueError(
                f"source activations of shape {source.shape} cannot be broadcast into base "
                f"activations of shape {base.shape}."
            ) from None
        return jnp.broadcast_to(flat[0], base.shape)


def swap(
    base: Array,
    source: Array | None,
    mode: str,
    interchange_dim: int | None,
    subspaces: Array | None,
) -> Array:
    """The shared primitive: write `source` into `base` on the selected last-axis indices.

    `mode` is one of `"interchange"`, `"add"`, `"subtract"`, `"zero"`. Without subspaces the
    selection is the static slice `[..., :interchange_dim]`; with subspaces it is a per-example
    mask, so every example gets its own indices (pyvene pairs rows with the unit axis instead
    for 3-D inputs; that is a pyvene bug and is not reproduced here).
    """
    # `source` is None only in mode "zero", which never reads it
    src = cast(Array, source)
    if mode != "zero":
        src = _broadcast_source(src, base).astype(base.dtype)
    n = base.shape[-1]
    if subspaces is None:
        k = n if interchange_dim is None else min(int(interchange_dim), n)
        mask = jnp.arange(n) < k
    else:
        if subspaces.shape[0] != base.shape[0]:
            raise ValueError(
                f"subspaces are given for {subspaces.shape[0]} examples but the batch has {base.shape[0]}."
            )
        mask = _expand_mask(subspace_mask(subspaces, n), base.ndim)
    if mode == "interchange":
        return jnp.where(mask, src, base)
    if mode == "add":
        return base + jnp.where(mask, src, 0)
    if mode == "subtract":
        return base - jnp.where(mask, src, 0)
    if mode == "zero":
        return jnp.where(mask, jnp.zeros_like(base), base)
    raise ValueError(f"unknown swap mode {mode!r}")


class Intervention(eqx.Module):
    """Base class of every intervention.

    Fields shared by all interventions (pyvene's names):

    - `embed_dim`: width of the representation the intervention sees (component width times
      `max_number_of_units`, as in pyvene).
    - `interchange_dim`: act on `[..., :interchange_dim]` when no subspaces are given; starts
      at `embed_dim` (pyvene's rule) unless the class's subspace axis is another space.
    - `subspace_partition`: list of index groups; `subspaces` passed at call time then name
      groups instead of raw indices (expanded before the call).
    - `keep_last_dim`: never concatenate units, even for a distributed intervention.
    - `source_representation`: a constant source; the intervention then needs no source run.
    """

    embed_dim: int | None = eqx.field(static=True)
    interchange_dim: int | None = eqx.field(static=True)
    subspace_partition: tuple | None = eqx.field(static=True)
    keep_last_dim: bool = eqx.field(static=True)
    source_representation: Array | None

    #: acts on each unit separately (never sees units concatenated)
    localist: ClassVar[bool] = True
    #: needs no source activations (zero, noise, collect, ...)
    sourceless: ClassVar[bool] = False
    #: only reads activations; the model output is untouched
    collects: ClassVar[bool] = False
    #: gathers the module *input* of the source run (skip connections)
    reads_module_input: ClassVar[bool] = False
    #: has parameters that training updates
    trainable: ClassVar[bool] = False
    #: acts with or without source activations (a plain function: pyvene calls it with
    #: `source=None` when its source is `None`); others that need a source are skipped then
    source_optional: ClassVar[bool] = False
    #: `interchange_dim` indexes the representation itself, so it starts at `embed_dim`
    interchange_in_embed_space: ClassVar[bool] = True

    def __init__(
        self,
        embed_dim: int | None = None,
        *,
        interchange_dim: int | None = None,
        subspace_partition=None,
        keep_last_dim: bool = False,
        source_representation=None,
    ):
        self.embed_dim = None if embed_dim is None else int(embed_dim)
        if interchange_dim is None and self.interchange_in_embed_space:
            interchange_dim = self.embed_dim
        self.interchange_dim = None if interchange_dim is None else int(interchange_dim)
        self.subspace_partition = _normalise_partition(subspace_partition)
        self.keep_last_dim = bool(keep_last_dim)
        self.source_representation = None if source_representation is None else jnp.asarray(source_representation)

    @property
    def is_source_constant(self) -> bool:
        """True when no source run is needed (pyvene's name)."""
        return self.sourceless or self.source_representation is not None

    @property
    def subspace_size(self) -> int | None:
        """Length of the axis that `subspaces` index (the representation width by default)."""
        return self.embed_dim

    def __call__(self, base, source, subspaces=None, *, key=None):
        raise NotImplementedError

    def set_interchange_dim(self, interchange_dim: int | None):
        """A copy that acts on `[..., :interchange_dim]` when no subspaces are given (pyvene's
        method). It returns the new intervention and leaves this one unchanged (Equinox modules
        are immutable): write `iv = iv.set_interchange_dim(4)`; on
        `IntervenableModel.interventions[key]` the model also stores the result.
        """
        if interchange_dim is not None:
            value = np.asarray(interchange_dim)
            if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
                raise TypeError(f"interchange_dim must be an int (or None for all), got {interchange_dim!r}")
            interchange_dim = int(value)
            if interchange_dim < 0:
                raise ValueError(f"interchange_dim must be >= 0, got {interchange_dim}")
        new = copy.copy(self)
        object.__setattr__(new, "interchange_dim", interchange_dim)  # a static field: not a leaf
        return new

    def set_source_representation(self, source_representation):
        """A copy with a constant source (pyvene's method): it then needs no source run.
        Returns the new intervention, like :meth:`set_interchange_dim`."""
        value = None if source_representation is None else jnp.asarray(np.asarray(source_representation))
        return eqx.tree_at(lambda m: m.source_representation, self, value, is_leaf=lambda x: x is None)

    def _source(self, source):
        if self.source_representation is not None:
            return self.source_representation
        if source is None:
            raise ValueError(
                f"{type(self).__name__} needs source activations: pass `sources`, "
                "`source_representations`, or a `source_representation` in its config."
            )
        return source


def _normalise_partition(partition):
    """pyvene's rule: a `[start, end]` pair of ints is `range(start, end)`, anything else an
    explicit index list. Stored as a tuple of tuples (hashable, so it can be static)."""
    if partition is None:
        return None
    groups = []
    for group in partition:
        group = list(np.asarray(group).reshape(-1).tolist())
        if len(group) == 2 and all(isinstance(i, int) for i in group) and group[0] < group[1]:
            group = list(range(group[0], group[1]))
        groups.append(tuple(int(i) for i in group))
    return tuple(groups)


# pyvene's marker bases, kept so `isinstance` checks and subclasses port unchanged.
class LocalistRepresentationIntervention(Intervention):
    localist: ClassVar[bool] = True


class DistributedRepresentationIntervention(Intervention):
    localist: ClassVar[bool] = False


class ConstantSourceIntervention(Intervention):
    sourceless: ClassVar[bool] = True


SourcelessIntervention = ConstantSourceIntervention


class TrainableIntervention(Intervention):
    trainable: ClassVar[bool] = True


class BasisAgnosticIntervention(Intervention):
    pass


class VanillaIntervention(LocalistRepresentationIntervention):
    """Interchange: `base[I] = source[I]` on the selected indices `I`."""

    def __call__(self, base, source, subspaces=None, *, key=None):
        return swap(base, self._source(source), "interchange", self.interchange_dim, subspaces)


class AdditionIntervention(LocalistRepresentationIntervention, BasisAgnosticIntervention):
    """`base[I] += source[I]` (steering vectors when the source is a constant)."""

    def __call__(self, base, source, subspaces=None, *, key=None):
        return swap(base, self._source(source), "add", self.interchange_dim, subspaces)


class SubtractionIntervention(LocalistRepresentationIntervention, BasisAgnosticIntervention):
    """`base[I] -= source[I]`."""

    def __call__(self, base, source, subspaces=None, *, key=None):
        return swap(base, self._source(source), "subtract", self.interchange_dim, subspaces)


class ZeroIntervention(ConstantSourceIntervention, LocalistRepresentationIntervention):
    """`base[I] = 0`; needs no source."""

    def __call__(self, base, source=None, subspaces=None, *, key=None):
        return swap(base, None, "zero", self.interchange_dim, subspaces)


class CollectIntervention(ConstantSourceIntervention, LocalistRepresentationIntervention):
    """Returns the selected activations; the model output is not changed.

    With `U` positions it returns `(B, U, D)` (pyvene 0.1.8 returned `(B, U, D / U)` garbage
    for several positions; this follows its fixed behaviour). With subspaces, the selected
    indices of each example, `(B, U, K)`; every example must then select the same number.
    """

    collects: ClassVar[bool] = True

    def __call__(self, base, source=None, subspaces=None, *, key=None):
        if subspaces is None:
            if self.interchange_dim is None:
                return base
            return base[..., : self.interchange_dim]
        idx = subspaces.reshape(subspaces.shape[:1] + (1,) * (base.ndim - 2) + subspaces.shape[1:])
        idx = jnp.broadcast_to(idx, base.shape[:-1] + subspaces.shape[1:])
        return jnp.take_along_axis(base, idx, axis=-1)


class SkipIntervention(LocalistRepresentationIntervention, BasisAgnosticIntervention):
    """Replace a module's output by its input (skip the module).

    The source run is read at the module's *input*; pass the base itself as the source to skip
    the module on the base run, as pyvene does.
    """

    reads_module_input: ClassVar[bool] = True

    def __call__(self, base, source, subspaces=None, *, key=None):
        return swap(base, self._source(source), "interchange", self.interchange_dim, subspaces)


class NoiseIntervention(ConstantSourceIntervention, LocalistRepresentationIntervention):
    """Add Gaussian noise: `base[..., :k] += noise_level * eps`, `eps ~ N(0, 1)` drawn from an
    explicit PRNG `key` (pass `key=` to the call).

    The default `noise_level` is ROME's 3 x the standard deviation of GPT-2-XL's token
    embeddings (0.1346...); for another model, use 3 x the std of its own embeddings. pyvene
    draws one fixed noise tensor for exactly 4 positions instead; this draws fresh noise of
    the base's shape for every key.
    """

    noise_level: float = eqx.field(static=True)

    def __init__(self, embed_dim=None, *, noise_level: float = 0.13462981581687927, **kwargs):
        super().__init__(embed_dim, **kwargs)
        self.noise_level = float(noise_level)

    def __call__(self, base, source=None, subspaces=None, *, key=None):
        if key is None:
            raise ValueError("NoiseIntervention needs a PRNG key: call the model with key=jax.random.key(...).")
        noise = self.noise_level * jax.random.normal(key, base.shape, dtype=base.dtype)
        return swap(base, noise, "add", self.interchange_dim, subspaces)


class LambdaIntervention(Intervention):
    """Wrap a plain function `f(base, source)` or `f(base, source, subspaces)`.

    The function receives the gathered activations unflattened (`(B, U, D)`), like pyvene's.
    Returning `None` writes nothing back. As in pyvene it acts even when its source is `None`
    (no source input and no constant source): it is then called with `source=None`.
    """

    func: Callable = eqx.field(static=True)
    source_optional: ClassVar[bool] = True

    def __init__(self, func: Callable, **kwargs):
        super().__init__(**kwargs)
        self.func = func

    def __call__(self, base, source, subspaces=None, *, key=None):
        if subspaces is None:
            return self.func(base, source)
        return self.func(base, source, subspaces)
