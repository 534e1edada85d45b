"""Interventions in the original basis or a learned latent one: a sigmoid mask, and one-layer
ReLU / JumpReLU autoencoders (SAEs) whose latents are interchanged (pyvene's names)."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._basic import LocalistRepresentationIntervention, TrainableIntervention, swap
from ._rotations import _compute_dtype, _key, _require

__all__ = ["SigmoidMaskIntervention", "AutoencoderIntervention", "JumpReLUAutoencoderIntervention"]


class SigmoidMaskIntervention(TrainableIntervention, LocalistRepresentationIntervention):
    """A learned mask in the original basis: `out = (1 - m) b + m s`, `m = sigmoid(w / T)`.

    `mask` starts at 0 (m = 0.5), the temperature at 0.01; the temperature is not trained
    (pyvene's never receives a gradient either).
    """

    mask: jax.Array
    temperature: jax.Array
    trainable: ClassVar[bool] = True
    frozen_fields: ClassVar[tuple] = ("temperature",)

    def __init__(self, embed_dim=None, **kwargs):
        super().__init__(embed_dim, **kwargs)
        self.mask = jnp.zeros((_require(embed_dim, "SigmoidMaskIntervention"),), jnp.float32)
        self.temperature = jnp.array(0.01, jnp.float32)

    def set_temperature(self, temperature):
        """A copy with the given temperature (pyvene's method, which sets it in place).

        Returns the new intervention and leaves this one unchanged (Equinox modules are
        immutable): write `iv = iv.set_temperature(0.1)`. On
        `IntervenableModel.interventions[key]` the model also stores the result.
        """
        return eqx.tree_at(lambda m: m.temperature, self, jnp.asarray(temperature, jnp.float32))

    def get_temperature(self) -> jax.Array:
        """The temperature (pyvene's getter)."""
        return self.temperature

    def __call__(self, base, source, subspaces=None, *, key=None):
        # an integer input is computed (and returned) in the mask's float dtype, as in pyvene
        dtype = _compute_dtype(jnp.asarray(base), self.mask)
        m = jax.nn.sigmoid(self.mask / jax.lax.stop_gradient(self.temperature)).astype(dtype)
        return (1 - m) * jnp.asarray(base).astype(dtype) + m * jnp.asarray(self._source(source)).astype(dtype)


class AutoencoderIntervention(TrainableIntervention):
    """Interchange latents of a one-layer ReLU autoencoder:
    `z = relu((x - b_dec) W_enc + b_enc)`, `out = z W_dec + b_dec`.

    The latent indices come from `subspaces`, or `interchange_dim` (pyvene uses it as an
    index, not a slice; here it keeps the meaning it has everywhere else: the first k).
    """

    W_enc: jax.Array
    b_enc: jax.Array
    W_dec: jax.Array
    b_dec: jax.Array
    latent_dim: int = eqx.field(static=True)
    interchange_in_embed_space: ClassVar[bool] = False  # it indexes the latents

    def __init__(self, embed_dim=None, *, latent_dim: int | None = None, seed: int | None = 0, **kwargs):
        super().__init__(embed_dim, **kwargs)
        n = _require(embed_dim, "AutoencoderIntervention")
        if latent_dim is None:
            raise ValueError("AutoencoderIntervention needs latent_dim")
        self.latent_dim = int(latent_dim)
        k1, k2 = jax.random.split(_key(seed))
        bound = 1 / np.sqrt(n)
        self.W_enc = jax.random.uniform(k1, (n, self.latent_dim), minval=-bound, maxval=bound)
        self.b_enc = jnp.zeros((self.latent_dim,))
        self.W_dec = jax.random.uniform(
            k2, (self.latent_dim, n), minval=-1 / np.sqrt(self.latent_dim), maxval=1 / np.sqrt(self.latent_dim)
        )
        self.b_dec = jnp.zeros((n,))

    @property
    def subspace_size(self) -> int:
        return self.latent_dim

    def encode(self, x):
        return jax.nn.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def __call__(self, base, source, subspaces=None, *, key=None):
        base = jnp.asarray(base)
        dtype = _compute_dtype(base, self.W_enc)  # integers in the weights' dtype, as in pyvene
        zb = self.encode(base.astype(dtype))
        zs = self.encode(jnp.asarray(self._source(source)).astype(dtype))
        z = swap(zb, zs, "interchange", self.interchange_dim, subspaces)
        return (z @ self.W_dec + self.b_dec).astype(base.dtype)


class JumpReLUAutoencoderIntervention(TrainableIntervention):
    """A JumpReLU sparse autoencoder (Gemma Scope's format) as the intervention space:
    `z = 1[x W_enc + b_enc > threshold] relu(x W_enc + b_enc)`, swap latents, decode.

    As in pyvene the output is the SAE *reconstruction*: even with nothing swapped, the SAE's
    error is dropped. `keep_error=True` adds it back (`out = decode(z') + x - decode(z)`), so
    an intervention changes only what the swapped latents change. `low_rank_dimension` is
    the SAE width. Weights start at zero, for loading trained SAEs with `eqx.tree_at`.
    Without subspaces every latent is swapped (`interchange_dim` starts at None; pyvene's
    starts at `embed_dim`, so it swaps only the first `embed_dim` latents of a wider SAE).
    """

    W_enc: jax.Array
    W_dec: jax.Array
    threshold: jax.Array
    b_enc: jax.Array
    b_dec: jax.Array
    keep_error: bool = eqx.field(static=True)
    interchange_in_embed_space: ClassVar[bool] = False  # it indexes the SAE's latents

    def __init__(self, embed_dim=None, *, low_rank_dimension: int | None = None, keep_error: bool = False, **kwargs):
        kwargs["keep_last_dim"] = True
        super().__init__(embed_dim, **kwargs)
        n = _require(embed_dim, "JumpReLUAutoencoderIntervention")
        if low_rank_dimension is None:
            raise ValueError("JumpReLUAutoencoderIntervention needs low_rank_dimension (the SAE width)")
        w = int(low_rank_dimension)
        self.W_enc = jnp.zeros((n, w))
        self.W_dec = jnp.zeros((w, n))
        self.threshold = jnp.zeros((w,))
        self.b_enc = jnp.zeros((w,))
        self.b_dec = jnp.zeros((n,))
        self.keep_error = bool(keep_error)

    @property
    def subspace_size(self) -> int:
        return int(self.W_enc.shape[1])

    def encode(self, x):
        pre = x @ self.W_enc + self.b_enc
        return jnp.where(pre > self.threshold, jax.nn.relu(pre), 0.0)

    def decode(self, z):
        return z @ self.W_dec + self.b_dec

    def __call__(self, base, source, subspaces=None, *, key=None):
        base = jnp.asarray(base)
        dtype = _compute_dtype(base, self.W_enc)  # integers in the weights' dtype
        x = base.astype(dtype)
        zb = self.encode(x)
        zs = self.encode(jnp.asarray(self._source(source)).astype(dtype))
        out = self.decode(swap(zb, zs, "interchange", self.interchange_dim, subspaces))
        if self.keep_error:
            out = out + x - self.decode(zb)
        return out.astype(base.dtype)
