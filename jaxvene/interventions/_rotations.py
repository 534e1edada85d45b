"""Distributed interventions in a learned or given basis: DAS rotations (full, low-rank,
boundless, sigmoid-masked) and PCA (pyvene's names). Masks in the original basis and
autoencoders are in :mod:`._masks`.

Conventions shared with pyvene, so weights copy over: a rotation acts on row vectors,
`x @ R`; a low-rank projection `W` is `(n, m)` with orthonormal columns.

**Orthogonality is exact by construction.** Every rotation stores an unconstrained matrix
`raw` and uses `Q = qr(raw).Q` with the signs of `diag(qr(raw).R)` folded in (the unique
orthonormal factor with a positive triangular part). Why QR:

* it is exact to float precision after any optimiser step (no penalty, no drift, no
  re-orthogonalisation schedule), so `R R^T = I` holds however long you train;
* for the low-rank `(n, m)` projection of DAS it costs `O(n m^2)`, trivial even at n = 4096,
  while pyvene's `torch...parametrizations.orthogonal` builds `n x n` matrices (pyreft #26);
* `jnp.linalg.qr` is differentiable, so Optax trains `raw` like any other array;
* a given orthogonal matrix is its own QR factor, so `from_matrix(R)` loads pyvene's
  materialised rotation exactly.

The square `n x n` case costs `O(n^3)` per step, like the matrix exponential or the Cayley
transform would.

pyvene's `intervention.rotate_layer` (the rotation as a layer, `.weight` its matrix, calling it
computes `x @ weight`) is a read-only view here; build a rotation from a given matrix with
`from_matrix`. Integer inputs are computed in the rotation's float dtype and the result cast
back to the input's dtype, as pyvene's rotations do. Non-trained arrays (temperatures, PCA statistics) pass through
`jax.lax.stop_gradient`, and classes list them in `frozen_fields`, which the training step
leaves out of the optimiser (so weight decay cannot touch them either).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._basic import (
    DistributedRepresentationIntervention,
    TrainableIntervention,
    _expand_mask,
    subspace_mask,
    swap,
)

__all__ = [
    "orthonormal",
    "RotateLayer",
    "RotatedSpaceIntervention",
    "LowRankRotatedSpaceIntervention",
    "BoundlessRotatedSpaceIntervention",
    "SigmoidMaskRotatedSpaceIntervention",
    "PCARotatedSpaceIntervention",
]


def orthonormal(raw: jax.Array) -> jax.Array:
    """The orthonormal factor of `raw` `(n, m)`, `m <= n`, with a positive triangular part."""
    q, r = jnp.linalg.qr(raw)
    signs = jnp.sign(jnp.diagonal(r))
    signs = jnp.where(signs == 0, 1.0, signs)
    return q * signs[None, :]


class RotateLayer(eqx.Module):
    """pyvene's `rotate_layer`: the (orthonormal) `weight`, `(n, n)` or `(n, m)`; calling it
    computes `x @ weight` (an integer `x` in the weight's dtype, as pyvene's layer does).

    A view derived from the intervention's parameters: to change the rotation, make a new
    intervention with `from_matrix(weight)` (or `eqx.tree_at` on its `raw` field).
    """

    weight: jax.Array

    def __call__(self, x):
        return _as_compute(x, self.weight) @ self.weight


def _as_compute(x, param):
    """`x` for computing with `param`: a float stays as it is (`param` is cast to it by the
    caller), an integer array takes `param`'s float dtype (pyvene casts inputs the same way)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(param.dtype)


def _compute_dtype(base, param):
    """The dtype a rotation computes in: the base's when it is a float, else the param's."""
    return base.dtype if jnp.issubdtype(base.dtype, jnp.inexact) else param.dtype


def _random_orthonormal(n: int, m: int, key) -> jax.Array:
    return orthonormal(jax.random.normal(key, (n, m), jnp.float32))


def _key(seed):
    return jax.random.key(0 if seed is None else int(seed))


def _require(embed_dim, name):
    if embed_dim is None:
        raise ValueError(f"{name} needs embed_dim (IntervenableModel sets it from the component)")
    return int(embed_dim)


class RotatedSpaceIntervention(TrainableIntervention, DistributedRepresentationIntervention):
    """DAS: rotate, interchange the selected rotated dimensions, rotate back.

    `out = swap(b R, s R) R^T`; subspaces index the rotated dimensions.
    """

    raw: jax.Array
    localist: ClassVar[bool] = False
    trainable: ClassVar[bool] = True

    def __init__(self, embed_dim=None, *, seed: int | None = 0, **kwargs):
        super().__init__(embed_dim, **kwargs)
        n = _require(embed_dim, type(self).__name__)
        self.raw = _random_orthonormal(n, n, _key(seed))

    @property
    def rotation(self) -> jax.Array:
        """The orthogonal matrix `R` (`n x n`)."""
        return orthonormal(self.raw)

    @property
    def rotate_layer(self) -> RotateLayer:
        """pyvene's `rotate_layer`: `.weight` is `R`; read-only (see :class:`RotateLayer`)."""
        return RotateLayer(self.rotation)

    @classmethod
    def from_matrix(cls, matrix, **kwargs):
        """An intervention whose rotation is `matrix` (e.g. pyvene's `rotate_layer.weight`)."""
        matrix = jnp.asarray(np.asarray(matrix), jnp.float32)
        iv = cls(matrix.shape[0], **kwargs)
        return eqx.tree_at(lambda m: m.raw, iv, matrix)

    def __call__(self, base, source, subspaces=None, *, key=None):
        base = jnp.asarray(base)
        dtype = _compute_dtype(base, self.raw)
        r = self.rotation.astype(dtype)
        rb, rs = base.astype(dtype) @ r, jnp.asarray(self._source(source)).astype(dtype) @ r
        rotated = swap(rb, rs, "interchange", self.interchange_dim, subspaces)
        return (rotated @ r.T).astype(base.dtype)


class LowRankRotatedSpaceIntervention(TrainableIntervention, DistributedRepresentationIntervention):
    """DAS with an `(n, m)` orthonormal projection `W`: `out = b + (s W - b W)_I W_I^T`.

    Subspaces (and `interchange_dim`) select columns of `W`. `low_rank_dimension` is `m`.
    """

    raw: jax.Array
    low_rank_dimension: int = eqx.field(static=True)
    localist: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    interchange_in_embed_space: ClassVar[bool] = False  # it indexes the m columns of W

    def __init__(self, embed_dim=None, *, low_rank_dimension: int | None = None, seed: int | None = 0, **kwargs):
        super().__init__(embed_dim, **kwargs)
        n = _require(embed_dim, type(self).__name__)
        if low_rank_dimension is None:
            raise ValueError("LowRankRotatedSpaceIntervention needs low_rank_dimension")
        m = int(low_rank_dimension)
        if not 0 < m <= n:
            raise ValueError(f"low_rank_dimension must be in 1..{n}, got {m}")
        self.low_rank_dimension = m
        self.raw = _random_orthonormal(n, m, _key(seed))

    @property
    def subspace_size(self) -> int:
        return self.low_rank_dimension

    @property
    def weight(self) -> jax.Array:
        """The `(n, m)` matrix with orthonormal columns."""
        return orthonormal(self.raw)

    @property
    def rotate_layer(self) -> RotateLayer:
        """pyvene's `rotate_layer`: `.weight` is `W` `(n, m)`; read-only (see :class:`RotateLayer`)."""
        return RotateLayer(self.weight)

    @classmethod
    def from_matrix(cls, matrix, **kwargs):
        matrix = jnp.asarray(np.asarray(matrix), jnp.float32)
        iv = cls(matrix.shape[0], low_rank_dimension=matrix.shape[1], **kwargs)
        return eqx.tree_at(lambda m: m.raw, iv, matrix)

    def __call__(self, base, source, subspaces=None, *, key=None):
        out_dtype = jnp.asarray(base).dtype
        dtype = _compute_dtype(jnp.asarray(base), self.raw)
        w = self.weight.astype(dtype)
        base = jnp.asarray(base).astype(dtype)
        source = jnp.asarray(self._source(source)).astype(dtype)
        diff = source @ w - base @ w  # (..., m)
        m = w.shape[1]
        if subspaces is not None:
            diff = jnp.where(_expand_mask(subspace_mask(subspaces, m), diff.ndim), diff, 0)
        elif self.interchange_dim is not None and self.interchange_dim < m:
            diff = jnp.where(jnp.arange(m) < self.interchange_dim, diff, 0)
        return (base + diff @ w.T).astype(out_dtype)


class _Tempered(TrainableIntervention, DistributedRepresentationIntervention):
    """A rotation with a temperature that is set, never trained."""

    raw: jax.Array
    temperature: jax.Array
    localist: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    frozen_fields: ClassVar[tuple] = ("temperature",)

    def __init__(self, embed_dim=None, **kwargs):
        super().__init__(embed_dim, **kwargs)

    def set_temperature(self, temperature):
        """A copy with the given temperature (pyvene's method, which sets it in place).

        Returns the new intervention and leaves this one unchanged (Equinox modules are
        immutable): write `iv = iv.set_temperature(0.1)`. On
        `IntervenableModel.interventions[key]` the model also stores the result, so pyvene's
        `for v in model.interventions.values(): v.set_temperature(t)` works there;
        `IntervenableModel.set_temperature(t)` sets every tempered intervention at once.
        """
        return eqx.tree_at(lambda m: m.temperature, self, jnp.asarray(temperature, jnp.float32))

    def get_temperature(self) -> jax.Array:
        """The temperature (pyvene's getter)."""
        return self.temperature

    @property
    def rotation(self) -> jax.Array:
        return orthonormal(self.raw)

    @property
    def rotate_layer(self) -> RotateLayer:
        """pyvene's `rotate_layer`: `.weight` is `R`; read-only (see :class:`RotateLayer`)."""
        return RotateLayer(self.rotation)

    def _t(self):
        return jax.lax.stop_gradient(self.temperature)

    def _mix(self, base, source, mask):
        base = jnp.asarray(base)
        dtype = _compute_dtype(base, self.raw)
        r = self.rotation.astype(dtype)
        rb, rs = base.astype(dtype) @ r, jnp.asarray(self._source(source)).astype(dtype) @ r
        mask = mask.astype(dtype)
        return (((1 - mask) * rb + mask * rs) @ r.T).astype(base.dtype)


class BoundlessRotatedSpaceIntervention(_Tempered):
    """Boundless DAS: a learned soft boundary selects the first `beta * n` rotated dims.

    `m_i = sigmoid(i / T) * sigmoid((beta n - i) / T)`, `beta = clip(boundary, 1e-3, 1)`,
    `out = ((1 - m) b R + m s R) R^T`. `intervention_boundaries` starts at 0.5, the
    temperature at 50 (anneal it with :meth:`set_temperature`). Subspaces are ignored.
    """

    intervention_boundaries: jax.Array

    def __init__(self, embed_dim=None, *, seed: int | None = 0, **kwargs):
        super().__init__(embed_dim, **kwargs)
        n = _require(embed_dim, type(self).__name__)
        self.raw = _random_orthonormal(n, n, _key(seed))
        self.intervention_boundaries = jnp.array([0.5], jnp.float32)
        self.temperature = jnp.array(50.0, jnp.float32)

    def set_intervention_boundaries(self, intervention_boundaries):
        """A copy with the boundary `beta` (pyvene's method; returns the new intervention, like
        :meth:`set_temperature`)."""
        value = jnp.asarray(intervention_boundaries, jnp.float32).reshape(1)
        return eqx.tree_at(lambda m: m.intervention_boundaries, self, value)

    def get_boundary_parameters(self) -> jax.Array:
        """The boundary `beta` (pyvene's getter)."""
        return self.intervention_boundaries

    def mask(self, n: int) -> jax.Array:
        beta = jnp.clip(self.intervention_boundaries, 1e-3, 1.0)
        i = jnp.arange(n, dtype=jnp.float32)
        t = self._t()
        return jax.nn.sigmoid(i / t) * jax.nn.sigmoid((beta * n - i) / t)

    def __call__(self, base, source, subspaces=None, *, key=None):
        return self._mix(base, source, self.mask(base.shape[-1]))


class SigmoidMaskRotatedSpaceIntervention(_Tempered):
    """Rotation with a learned per-dimension mask `sigmoid(w / T)` (w starts at 100, T at 50)."""

    masks: jax.Array

    def __init__(self, embed_dim=None, *, seed: int | None = 0, **kwargs):
        super().__init__(embed_dim, **kwargs)
        n = _require(embed_dim, type(self).__name__)
        self.raw = _random_orthonormal(n, n, _key(seed))
        self.masks = jnp.full((n,), 100.0, jnp.float32)
        self.temperature = jnp.array(50.0, jnp.float32)

    def __call__(self, base, source, subspaces=None, *, key=None):
        return self._mix(base, source, jax.nn.sigmoid(self.masks / self._t()))


class PCARotatedSpaceIntervention(DistributedRepresentationIntervention):
    """Interchange in a standardised PCA basis: `z = ((x - mean) / std) C^T`, swap the
    selected components, `out = (z C) std + mean`. Built from `components` `(k, n)` (e.g.
    sklearn's `pca.components_`), `mean` and `std`; nothing is trained."""

    components: jax.Array
    pca_mean: jax.Array
    pca_std: jax.Array
    localist: ClassVar[bool] = False
    interchange_in_embed_space: ClassVar[bool] = False  # it indexes the k components

    def __init__(self, embed_dim=None, *, components=None, pca_mean=None, pca_std=None, pca=None, **kwargs):
        super().__init__(embed_dim, **kwargs)
        if components is None and pca is not None:
            components = pca.components_
        if components is None:
            raise ValueError("PCARotatedSpaceIntervention needs components (k, n) or a fitted pca")
        self.components = jnp.asarray(np.asarray(components), jnp.float32)
        n = self.components.shape[1]
        self.pca_mean = jnp.zeros((n,)) if pca_mean is None else jnp.asarray(np.asarray(pca_mean), jnp.float32)
        self.pca_std = jnp.ones((n,)) if pca_std is None else jnp.asarray(np.asarray(pca_std), jnp.float32)

    @property
    def subspace_size(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, base, source, subspaces=None, *, key=None):
        # an integer input is computed (and returned) in float, as pyvene's PCA does
        dtype = _compute_dtype(jnp.asarray(base), self.components)
        c, mu, sd = (jax.lax.stop_gradient(a).astype(dtype) for a in (self.components, self.pca_mean, self.pca_std))
        zb = ((jnp.asarray(base).astype(dtype) - mu) / sd) @ c.T
        zs = ((jnp.asarray(self._source(source)).astype(dtype) - mu) / sd) @ c.T
        return (swap(zb, zs, "interchange", self.interchange_dim, subspaces) @ c) * sd + mu
