"""Generation with interventions: jaxvene's own decode loop (`lax.scan`, KV cache).

One call runs the source passes once, the prompt pass, then `max_new_tokens - 1` decode steps,
all in one compiled program. The semantics, stated plainly:

* **The prompt pass** (all prompt tokens at once) is intervened when `prompt_active` is True,
  at the base-side `unit_locations` (or on every prompt position when they are `None`).
* **Decode step t** (t = 0, 1, ...) is the forward pass that reads the t-th generated token and
  predicts the next one. When `step_mask[t]` is True, every intervention acts on that token
  (unit "pos": the new token; unit "h"/"h.pos": the chosen heads at the new token). The last
  generated token is never read, so there are `max_new_tokens - 1` decode steps.
* Source activations come from one pass over each source, at the source-side locations; a
  decode step patches in the same source activation every time (one source unit per
  intervention, or a constant source).
* Collected activations come back for the prompt pass and, stacked, for every decode step.

pyvene's `generate` expresses three of these cases (see `IntervenableModel.generate`);
`timesteps` expresses any set of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ._plan import Plan
from ._positions import position_ids_from_mask
from ._protocols import CachedDecoder, require
from ._run import Execution

__all__ = ["generate"]


def _step_locations(plan: Plan, locations, batch: int):
    """Base-side locations for a decode step: the single new token, the same heads."""
    out: list[Any] = []
    for p, (_, base_loc) in zip(plan.placements, locations):
        if p.unit == "pos" or base_loc is None:
            out.append(None)  # the step's activation is (B, 1, D): all of it is the new token
        elif p.unit == "h":
            out.append(base_loc)
        else:
            out.append((base_loc[0], jnp.zeros((batch, 1), jnp.int32)))
    return out


def generate(
    adapter,
    plan: Plan,
    params,
    interventions,
    base: dict,
    sources: Sequence[dict | None],
    locations,
    subspaces=None,
    source_representations=None,
    key: jax.Array | None = None,
    *,
    max_new_tokens: int,
    prompt_active,
    step_mask,
    do_sample: bool = False,
    temperature: float = 1.0,
    sample_key: jax.Array | None = None,
):
    """Generate `max_new_tokens` tokens after `base`; a pure function (jit it whole).

    `prompt_active` (bool) and `step_mask` (`(max_new_tokens - 1,)` bools) say where the
    interventions act; both may be traced. Returns `(tokens (B, N), prompt_collected,
    step_collected)` where the collected tuples hold, per placement, what it collected (or None).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if do_sample and sample_key is None:
        raise ValueError("sampling needs a PRNG key: pass sample_key (key= on the facade)")
    require(adapter, CachedDecoder, "generate")
    ex = Execution(adapter, plan, params, interventions, sources, locations, subspaces, source_representations, key)
    source_acts = ex.run_sources()
    setters = ex.final_setters()
    ids = base["input_ids"]
    batch, length = ids.shape
    total = length + max_new_tokens
    check = getattr(adapter, "check_generation", None)  # a model that cannot cache some lengths
    if check is not None:
        check(length, total)
    cache = adapter.init_cache(batch, total)
    mask = jnp.ones((batch, total), jnp.int32).at[:, :length].set(base["attention_mask"])
    # The prompt's positions; decode step t is at the last one + 1 + t.
    positions = base["position_ids"] if "position_ids" in base else position_ids_from_mask(base["attention_mask"])

    def choose(logits, t):
        if not do_sample:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return jax.random.categorical(jax.random.fold_in(sample_key, t), logits / temperature).astype(jnp.int32)

    handler = ex.handler(setters, (), source_acts, gate=jnp.asarray(prompt_active))
    (logits, cache), reads = ex.traced_pass(handler, lambda: adapter.decode(params, cache, ids, mask, positions))
    prompt_collected = ex.collected(reads)
    first = choose(logits, 0)
    last_pos = positions[:, -1]
    step_locs = _step_locations(plan, locations, batch)
    step_mask = jnp.asarray(step_mask, bool)

    def step(carry, t):
        cache, token, pos = carry
        handler = ex.handler(setters, (), source_acts, base_locations=step_locs, gate=step_mask[t])
        (logits, cache), reads = ex.traced_pass(
            handler, lambda: adapter.decode(params, cache, token[:, None], mask, pos[:, None])
        )
        nxt = choose(logits, t + 1)
        return (cache, nxt, pos + 1), (nxt, ex.collected(reads))

    if max_new_tokens == 1:
        return first[:, None], prompt_collected, ()
    (_, _, _), (rest, step_collected) = jax.lax.scan(step, (cache, first, last_pos + 1), jnp.arange(max_new_tokens - 1))
    tokens = jnp.concatenate([first[:, None], rest.T], axis=1)
    return tokens, prompt_collected, step_collected
