"""Rotary position embeddings with HF's scalings (`rope_type`), as pure functions.

`inverse_frequencies(spec, seq_len)` gives the `rotary_dim / 2` inverse frequencies and the
factor the cos/sin tables are multiplied by (YaRN's and LongRoPE's attention factor); `tables`
turns positions into `cos, sin` of shape `(B, T, rotary_dim)` in float32; `rotate` applies them
to the leading `rotary_dim` features of each head (half-split rotation, as HF's
`rotate_half`), passing the rest through.

Static kinds (default, linear, llama3, yarn) are computed in NumPy at trace time. The two kinds
whose frequencies depend on the sequence (dynamic NTK, LongRoPE) switch on the longest
position in the batch, `max(position_ids) + 1`, as HF does at each forward call; HF's dynamic
NTK also remembers the longest length it has seen across calls, which a pure function cannot:
a second call with shorter inputs after a longer one may differ from HF's stateful module.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._config import RopeSpec

__all__ = ["tables", "rotate", "inverse_frequencies"]


def _base_inv(theta: float, dim: int) -> np.ndarray:
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    return (np.float32(1.0) / (np.float32(theta) ** exponents)).astype(np.float32)


def _llama3(spec: RopeSpec, inv: np.ndarray) -> np.ndarray:
    factor, low, high = (
        float(spec.get("factor")),
        float(spec.get("low_freq_factor")),
        float(spec.get("high_freq_factor")),
    )
    old = float(spec.get("original_max_position_embeddings"))
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def _yarn(spec: RopeSpec, dim: int) -> tuple[np.ndarray, float]:
    theta, factor = float(spec.theta), float(spec.get("factor"))
    original = spec.get("original_max_position_embeddings") or spec.get("max_position_embeddings")

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = spec.get("attention_factor")
    if attention is None:
        m, m_all = spec.get("mscale"), spec.get("mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if (m and m_all) else mscale(factor)
    fast, slow = spec.get("beta_fast") or 32, spec.get("beta_slow") or 1

    def correction(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction(fast), correction(slow)
    if spec.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1)
    extrapolate = 1 - ramp
    pos = np.float32(theta) ** (np.arange(0, dim, 2).astype(np.float32) / np.float32(dim))
    inv = (1.0 / (factor * pos)) * (1 - extrapolate) + (1.0 / pos) * extrapolate
    return inv.astype(np.float32), float(attention)


def _longrope_attention(spec: RopeSpec) -> float:
    attention = spec.get("attention_factor")
    if attention is not None:
        return float(attention)
    original = spec.get("original_max_position_embeddings")
    if original:
        factor = spec.get("max_position_embeddings") / original
    else:
        factor, original = spec.get("factor") or 1.0, spec.get("max_position_embeddings")
    return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))


def inverse_frequencies(spec: RopeSpec, seq_len=None):
    """`(inv_freq (rotary_dim/2,), attention_factor)`; `seq_len` (maybe traced) only matters
    for the dynamic kinds."""
    dim, kind = spec.rotary_dim, spec.kind
    if kind == "default":
        return jnp.asarray(_base_inv(spec.theta, dim)), 1.0
    if kind == "linear":
        return jnp.asarray(_base_inv(spec.theta, dim) / np.float32(spec.get("factor"))), 1.0
    if kind == "llama3":
        return jnp.asarray(_llama3(spec, _base_inv(spec.theta, dim))), 1.0
    if kind == "yarn":
        inv, attention = _yarn(spec, dim)
        return jnp.asarray(inv), attention
    exponents = jnp.arange(0, dim, 2).astype(jnp.float32) / dim
    if kind == "dynamic":
        factor, max_pos = float(spec.get("factor")), float(spec.get("max_position_embeddings"))
        length = jnp.maximum(jnp.asarray(seq_len, jnp.float32), max_pos)
        base = spec.theta * ((factor * length / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (base**exponents), 1.0
    if kind == "longrope":
        original = spec.get("original_max_position_embeddings") or spec.get("max_position_embeddings")
        short = np.asarray(spec.get("short_factor"), np.float32)
        long = np.asarray(spec.get("long_factor"), np.float32)
        ext = jnp.where(jnp.asarray(seq_len) > original, jnp.asarray(long), jnp.asarray(short))
        return 1.0 / (ext * jnp.asarray(_base_inv(spec.theta, dim) ** -1.0)), _longrope_attention(spec)
    raise NotImplementedError(f"rope kind {kind!r}")


def tables(spec: RopeSpec, position_ids):
    """`cos, sin` of shape `(B, T, rotary_dim)`, float32, for integer `position_ids` `(B, T)`."""
    seq_len = jnp.max(position_ids) + 1 if spec.kind in ("dynamic", "longrope") else None
    inv, attention = inverse_frequencies(spec, seq_len)
    freqs = position_ids.astype(jnp.float32)[..., None] * inv
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb) * attention, jnp.sin(emb) * attention


def rotate(x, cos, sin):
    """Rotate the leading `cos.shape[-1]` features of each head of `x` `(B, T, heads, Dh)`."""
    rot = cos.shape[-1]
    cos, sin = cos[:, :, None, :].astype(x.dtype), sin[:, :, None, :].astype(x.dtype)
    head, rest = x[..., :rot], x[..., rot:]
    first, second = head[..., : rot // 2], head[..., rot // 2 :]
    rotated = head * cos + jnp.concatenate([-second, first], axis=-1) * sin
    return rotated if rest.shape[-1] == 0 else jnp.concatenate([rotated, rest], axis=-1)
