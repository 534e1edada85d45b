"""Activation patching helpers in the style TransformerLens users know, and attribution patching.

Convention (TransformerLens's): the *corrupted* run is the base and the *clean* run the source;
each cell patches the clean activation into the corrupted run and reports `metric`. Every
helper is one compiled :func:`jaxvene.sweep`.

:func:`attribution_patching` estimates a whole sweep from one clean forward pass and one
forward and backward pass on the corrupted input (Nanda 2023): for each site,
`metric(patched) - metric(corrupted) ~= sum_d (clean - corrupted)_d * d metric / d act_d`.
It is exact for linear effects and cheap (`O(1)` passes instead of `O(cells)`); check it
against exact patching on the sites that matter.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..adapters._adapt import layer_stack
from ._sweep import sweep

__all__ = [
    "LogitDiff",
    "logit_diff",
    "patch_residual",
    "patch_attention_output",
    "patch_mlp_output",
    "patch_heads",
    "attribution_patching",
]


class LogitDiff(eqx.Module):
    """Metric: `logit[correct] - logit[incorrect]` at `position`, averaged over the batch;
    `correct`/`incorrect` may be per-example arrays `(B,)`. Token ids are array fields, so a
    sweep with other tokens reuses the compiled program."""

    correct: jax.Array
    incorrect: jax.Array
    position: int = eqx.field(static=True)

    def __call__(self, logits):
        at = logits[:, self.position]
        rows = jnp.arange(at.shape[0])
        correct = jnp.broadcast_to(self.correct, rows.shape)
        incorrect = jnp.broadcast_to(self.incorrect, rows.shape)
        return jnp.mean(at[rows, correct] - at[rows, incorrect])


def logit_diff(correct, incorrect, position: int = -1) -> LogitDiff:
    """Metric: `logit[correct] - logit[incorrect]` at `position`, averaged over the batch.
    `correct` and `incorrect` are token ids, or `(B,)` arrays of them (one per example)."""
    return LogitDiff(jnp.asarray(correct, jnp.int32), jnp.asarray(incorrect, jnp.int32), int(position))


def _patch(model, clean, corrupted, metric, component, **kwargs):
    # the sweep hands the metric the logits at the last position only, as `(B, 1, V)`, so a
    # metric written for full logits that reads position -1 (like `logit_diff`) works as is
    return sweep(model, corrupted, clean, metric=metric, component=component, metric_positions=(-1,), **kwargs)


def patch_residual(model, clean: dict, corrupted: dict, metric: Callable, **kwargs) -> np.ndarray:
    """Patch the residual stream (`block_output`) at every (layer, position): `(L, T)`."""
    return _patch(model, clean, corrupted, metric, "block_output", **kwargs)


def patch_attention_output(model, clean: dict, corrupted: dict, metric: Callable, **kwargs) -> np.ndarray:
    """Patch each layer's attention output at every position: `(L, T)`."""
    return _patch(model, clean, corrupted, metric, "attention_output", **kwargs)


def patch_mlp_output(model, clean: dict, corrupted: dict, metric: Callable, **kwargs) -> np.ndarray:
    """Patch each layer's MLP output at every position: `(L, T)`."""
    return _patch(model, clean, corrupted, metric, "mlp_output", **kwargs)


def patch_heads(
    model, clean: dict, corrupted: dict, metric: Callable, by_position: bool = False, **kwargs
) -> np.ndarray:
    """Patch each head's output (before the output projection): `(L, H)` over all positions,
    or `(L, H, T)` with `by_position=True`."""
    unit = "h.pos" if by_position else "h"
    return _patch(model, clean, corrupted, metric, "head_attention_value_output", unit=unit, **kwargs)


def attribution_patching(
    model,
    clean: dict,
    corrupted: dict,
    metric: Callable,
    component: str = "block_output",
    by_head: bool = False,
    params=None,
) -> np.ndarray:
    """Linear estimate of patching `component` at every (layer, position).

    `metric(logits)` gets the full logits `(B, T, V)` and must return a scalar. Returns
    `(L, T)`, or `(L, H, T)` for head components with `by_head=True` (otherwise heads are
    summed), estimating `metric(corrupted with the clean activation patched in) -
    metric(corrupted)`.
    """
    stack = layer_stack(model, "attribution_patching")
    adapter = stack.adapter
    params = adapter.params if params is None else params
    site = stack.local_site(component)
    clean_in, corrupted_in = adapter.prepare(clean), adapter.prepare(corrupted)
    if clean_in["input_ids"].shape != corrupted_in["input_ids"].shape:
        raise ValueError("clean and corrupted inputs must have the same shape")

    @jax.jit
    def estimate(params, clean_in, corrupted_in):
        # in the tap's own space: the site's view (a third of a fused q/k/v, heads) is taken
        # of the contributions, so what lies outside the view counts for nothing
        _, clean_values = stack.scan(params, clean_in, site=site, record=True)
        _, corrupted_values = stack.scan(params, corrupted_in, site=site, record=True)

        def objective(delta):
            hs, _ = stack.scan(params, corrupted_in, site=site, edit=lambda i, value: value + delta[i])
            return metric(stack.head(params, hs[-1]))

        grads = jax.grad(objective)(jnp.zeros_like(corrupted_values))
        contribution = jax.vmap(site.view)((clean_values - corrupted_values) * grads)  # (L, B, ..., D)
        return contribution.sum(axis=-1).sum(axis=1)  # over features, then the batch

    out = np.asarray(estimate(params, clean_in, corrupted_in))
    if site.is_head_site and not by_head:
        out = out.sum(axis=1)
    return out
