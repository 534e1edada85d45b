"""Training on the frozen model's cache: what does not change between epochs is computed once.

The model is frozen, so for a fixed batch everything below the trained interventions is
fixed too: the source activations the interventions read, the base's hidden state entering
the lowest intervened layer, and (causal decoders) the base's keys and values. A *frozen
cache* holds them; a step on it runs only the layers from the lowest intervened one up, and
only at the positions an intervention can change: from the earliest intervened (or read)
position on, attending to the cached keys and values before it. The loss and gradients are
those of the full step (`tests/training/test_frozen_cache.py` checks both).

Data flow: the cache is a dict of arrays (the batch's leaves, sharded as the batch was when
it is built from a sharded batch); what is static is the lowest intervened layer (from the
plan) and the first recomputed position (the cache's shapes: `T - hidden.shape[1]`), so one
compiled step serves every cached batch of a dataset built with one :func:`cache_frozen`
call.

Memory: per example, one `(T - start, D)` hidden state, the keys and values of the layers
from the lowest intervened one up, `(L - first) * T * 2 * KV * Dh` numbers, and the source
units read. Built batch by batch, on the device the batch is on.

Supported plans: parallel mode, every placement at a pyvene component of a model with a layer
stack (`jv.adapters.layer_stack`), unit "pos", "h" or "h.pos". Any other parallel plan (a
model without a layer stack, such as an MLP or any JAX function, or module-path sites) gets a
cache of the source activations only: the base run is then the whole model, and only the
source runs are saved. Serial mode and `None` sources are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core._protocols import LayerwiseModel
from ..core._run import Execution
from ..core._write import write

__all__ = ["cache_frozen", "cached_logits"]


def _local_sites(adapter, plan):
    """`(stack, per placement (layer-relative site, layer))` when the layer stack can serve the
    plan, else `(None, None)` (a cache of the sources only)."""
    if plan.mode != "parallel":
        raise NotImplementedError("a frozen cache needs mode='parallel' (serial mode chains the source runs)")
    supports = getattr(adapter, "supports", None)
    if not isinstance(adapter, LayerwiseModel) or (supports is not None and not supports(LayerwiseModel)):
        return None, None
    stack = adapter.layer_stack()
    out = []
    for p in plan.placements:
        if p.site.layer is None or not p.site.component or p.unit not in ("pos", "h", "h.pos"):
            return None, None
        try:
            out.append((stack.local_site(p.site.component), int(p.site.layer)))
        except ValueError:  # not a component of the stack's layers
            return None, None
    return stack, tuple(out)


def _positions(unit, loc):
    """The position indices of a base location (None: the whole sequence or a head unit)."""
    if loc is None or unit == "h":
        return None
    return loc[1] if unit == "h.pos" else loc


def _shift(unit, loc, start):
    if start == 0 or loc is None or unit == "h":
        return loc
    return (loc[0], loc[1] - start) if unit == "h.pos" else loc - start


def _first_position(plan, batch) -> int:
    """The earliest position any intervention writes or the loss reads, over `batch`."""
    firsts = []
    for p, (_, base_loc) in zip(plan.placements, batch["locations"]):
        pos = _positions(p.unit, base_loc)
        if pos is None:
            return 0
        firsts.append(int(np.min(np.asarray(jax.device_get(pos)))))
    if batch.get("logit_positions") is None:
        return 0
    firsts.append(int(np.min(np.asarray(jax.device_get(batch["logit_positions"])))))
    return max(0, min(firsts)) if firsts else 0


def cache_frozen(model, batches: Iterable[dict], params=None, start: int | None = None) -> list[dict]:
    """The frozen cache of each batch of an :class:`~jaxvene.IntervenableModel` (batches from
    :func:`jaxvene.training.make_batch`), to train on with `cached=True`.

    `start`, the first recomputed position, defaults to the earliest position any batch
    intervenes at or reads logits at (one start for all: one compiled step). Positions before
    it must be untouched by every intervention; causal decoders only (a bidirectional model
    would need every position: use the uncached step).
    """
    batches = list(batches)
    adapter, plan = model.adapter, model.plan()
    stack, sites = _local_sites(adapter, plan)
    params = _own_params(model) if params is None else params
    for b in batches:
        if any(source is None for source in b["sources"]):
            raise NotImplementedError("a frozen cache needs every source group's input (no None sources)")
    interventions = model.intervention_params()
    if stack is None:
        if start:
            raise NotImplementedError("start= needs a layer stack serving the plan (this cache holds sources only)")
        return [_cache_sources(adapter, plan, params, interventions, b) for b in batches]
    if start is None:
        start = min(_first_position(plan, b) for b in batches) if batches else 0
        start = start if getattr(stack, "causal", False) else 0
    if start > 0 and not getattr(stack, "causal", False):
        raise NotImplementedError(f"positions before {start} can be skipped only in a causal decoder")
    first = min(layer for _, layer in sites)
    return [_cache_one(adapter, plan, stack, first, int(start), params, interventions, b) for b in batches]


def _execution(adapter, plan, params, interventions, batch, sources=None):
    return Execution(
        adapter,
        plan,
        params,
        interventions,
        batch["sources"] if sources is None else sources,
        batch["locations"],
        batch.get("subspaces"),
        batch.get("source_representations"),
    )


@eqx.filter_jit
def _cache_sources(adapter, plan, params, interventions, batch):
    reads = _execution(adapter, plan, params, interventions, batch).run_sources()
    cache = {k: batch[k] for k in ("base", "locations", "subspaces", "source_representations") if k in batch}
    cache["source_reads"] = tuple(reads.get(("get", i)) for i in range(len(plan.placements)))
    for name in ("labels", "logit_positions"):
        if batch.get(name) is not None:
            cache[name] = batch[name]
    return cache


@eqx.filter_jit
def _cache_one(adapter, plan, stack, first, start, params, interventions, batch):
    base = adapter.prepare(batch["base"]) if "attention_mask" not in batch["base"] else batch["base"]
    ex = _execution(adapter, plan, params, interventions, batch)
    reads = ex.run_sources()
    if getattr(stack, "causal", False):
        hs, kv = stack.scan_kv(params, base)
        kv = jax.tree_util.tree_map(lambda x: x[first:], kv)
    else:
        hs, kv = stack.scan(params, base)[0], None
    sources = tuple(
        ex.constants[i] if ex.constants[i] is not None else reads.get(("get", i)) for i in range(len(plan.placements))
    )
    locations = tuple(_shift(p.unit, loc[1], start) for p, loc in zip(plan.placements, batch["locations"]))
    cache = {
        "base": {k: v for k, v in base.items() if k != "input_ids"},  # the layers' mask and positions
        "hidden": hs[first][:, start:],
        "kv": kv,
        "sources": sources,
        "locations": locations,
        "subspaces": tuple(batch["subspaces"]) if batch.get("subspaces") is not None else None,
    }
    for name in ("labels", "logit_positions"):
        if batch.get(name) is not None:
            cache[name] = batch[name] - (start if name == "logit_positions" else 0)
    return cache


def cached_logits(model_or_adapter, plan, params, interventions: Sequence, cache: dict):
    """The base run's logits at the cache's `logit_positions` (minus its start), with the
    interventions applied as :func:`jaxvene.core.run` applies them, from a frozen cache:
    layers from the lowest intervened one up, on the cached positions only. Differentiable in
    `interventions`; pure."""
    adapter = getattr(model_or_adapter, "adapter", model_or_adapter)
    if "source_reads" in cache:  # sources only: the whole base run, on the cached source units
        reads = {("get", i): r for i, r in enumerate(cache["source_reads"]) if r is not None}
        ex = _execution(adapter, plan, params, interventions, cache, sources=({},) * plan.num_groups)
        outputs, _ = ex.model_pass(cache["base"], ex.final_setters(), (), reads, cache.get("logit_positions"))
        return outputs["logits"]
    stack, sites = _local_sites(adapter, plan)
    if stack is None:  # pragma: no cover - a stack cache is only built when the stack serves the plan
        raise ValueError("this cache was built for a layer stack that does not serve this plan")
    first = min(layer for _, layer in sites)
    base = cache["base"]
    start = base["attention_mask"].shape[1] - cache["hidden"].shape[1]
    n = len(plan.placements)
    subspaces = cache["subspaces"] if cache.get("subspaces") is not None else (None,) * n
    acting = range(n)

    def handler(layer, name, value):
        for i in acting:
            site, at = sites[i]
            if name != site.tap:
                continue
            p = plan.placements[i]
            loc, source = cache["locations"][i], cache["sources"][i]
            new, _ = write(site, p.unit, interventions[p.slot], value, loc, source, subspaces[i])
            value = jnp.where(layer == at, new, value)
        return value

    taps = {sites[i][0].tap for i in acting}
    stacked = stack.layer_params(params)
    if cache["kv"] is not None:
        h = stack.run_suffix(stacked, cache["hidden"], base, cache["kv"], start, first, handler, taps, kv_from=first)
    else:
        h = stack.run_layers(stacked, cache["hidden"], base, first, handler=handler, taps=taps)
    if cache.get("logit_positions") is not None:
        h = jnp.take_along_axis(h, cache["logit_positions"][..., None], axis=1)
    return stack.head(params, h)


def _own_params(model):
    own = getattr(model, "params", None)
    return model.adapter.params if own is None else own
