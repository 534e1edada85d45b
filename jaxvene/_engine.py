"""The pure core: one function from (params, inputs, interventions, locations) to outputs.

Data flow of :func:`run`:

* **Static** (decides what is compiled): the :class:`Plan`, i.e. which interventions sit at
  which sites, their units, which source feeds which, parallel or serial mode. It is a frozen
  dataclass, hashable, and closed over by the jitted function.
* **Traced** (data; new values never recompile): model params, inputs, the intervention
  modules' arrays, locations (int arrays), subspaces (int arrays), constant sources, PRNG key.

Locations, per placement `i`, are a pair `(source_loc, base_loc)`; each is `None` (the whole
activation), an int array `(B, U)` of positions (unit `"pos"`) or heads (unit `"h"`), or a
pair `(heads (B, Uh), positions (B, Up))` for unit `"h.pos"`. They index the site's view:
`(B, S, D)` for ordinary components, `(B, H, S, Dh)` for head components.

Parallel mode runs each source once (a group's interventions share its run), reading the
activations at the source locations, then runs the base once with every intervention applied
in config order. Serial mode chains the runs: the interventions of group g read source g and
act on the run of source g+1 (the base for the last group). Source runs are ordinary forward
passes whose outputs are unused, so under `jit` XLA drops the layers after the last site read.

>>> outputs, collected = run(adapter, plan, params, interventions, base, sources, locations)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from ._hooks import handling
from ._interventions import Intervention, InterventionOutput
from ._sites import Site

__all__ = ["Placement", "Plan", "run", "gather", "scatter"]

UNITS = ("pos", "h", "h.pos")


@dataclass(frozen=True)
class Placement:
    """One representation: an intervention (by `slot`) at a `site`, fed by source `group`.

    `source_site` is where the source run is read; it differs from `site` only for
    interventions that read a module's input (Skip).
    """

    site: Site
    unit: str
    slot: int
    group: int
    source_site: Site


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...]
    mode: str = "parallel"
    num_groups: int = 1

    def __post_init__(self):
        if self.mode not in ("parallel", "serial"):
            raise ValueError(f"mode must be 'parallel' or 'serial', got {self.mode!r}")

    def taps(self) -> frozenset[str]:
        return frozenset(t for p in self.placements for t in (p.site.tap, p.source_site.tap))


# ---------------------------------------------------------------------------- indexing
def gather(view: jax.Array, unit: str, loc) -> jax.Array:
    """Select units of a view: `(B, U, D)` for positions, `(B, Uh, S, Dh)` for heads,
    `(B, Uh, Up, Dh)` for heads at positions. `loc=None` selects everything."""
    if loc is None:
        return view
    if unit == "h.pos":
        heads, pos = loc
        b = jnp.arange(view.shape[0])[:, None, None]
        return view[b, heads[:, :, None], pos[:, None, :]]
    idx = loc.reshape(loc.shape + (1,) * (view.ndim - 2))
    return jnp.take_along_axis(view, idx, axis=1)


def scatter(view: jax.Array, unit: str, loc, new: jax.Array) -> jax.Array:
    """Write `new` (shaped like `gather(view, unit, loc)`) back into `view`."""
    new = new.astype(view.dtype)
    if loc is None:
        if new.shape != view.shape:
            raise ValueError(f"an intervention returned shape {new.shape} for an activation of shape {view.shape}")
        return new
    if unit == "h.pos":
        heads, pos = loc
        b = jnp.arange(view.shape[0])[:, None, None]
        return view.at[b, heads[:, :, None], pos[:, None, :]].set(new)
    b = jnp.arange(view.shape[0])[:, None]
    return view.at[b, loc].set(new)


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


def _apply_intervention(iv: Intervention, base, source, subspaces, key):
    distributed = not iv.localist and not iv.keep_last_dim and base.ndim > 2
    b_in = _flatten(base) if distributed else base
    s_in = _flatten(source) if (distributed and source is not None and source.ndim == base.ndim) else source
    out = iv(b_in, s_in, subspaces, key=key)
    latent = None
    if isinstance(out, InterventionOutput):
        out, latent = out.output, out.latent
    if out is not None and distributed:
        out = _unflatten(out, base)
    return out, latent


# ---------------------------------------------------------------------------- the core
def run(
    adapter,
    plan: Plan,
    params,
    interventions: Sequence[Intervention],
    base: dict,
    sources: Sequence[Optional[dict]],
    locations: Sequence[tuple[Any, Any]],
    subspaces: Optional[Sequence[Optional[jax.Array]]] = None,
    source_representations: Optional[Sequence[Optional[jax.Array]]] = None,
    key: Optional[jax.Array] = None,
    logit_positions: Optional[jax.Array] = None,
):
    """Run the model on `base` with the plan's interventions; a pure function.

    Args:
      adapter: the model (e.g. :class:`jaxvene.HFFlaxAdapter`); static.
      plan: the placements; static.
      params: the model's params pytree.
      interventions: one intervention module per slot (linked representations share a slot).
      base: model inputs, e.g. `{"input_ids": (B, T) ints, "attention_mask": (B, T)}`.
      sources: one input dict (or `None`) per group.
      locations: per placement, `(source_loc, base_loc)` as in the module docstring.
      subspaces: per placement, `None` or an int array `(B, K)` of indices (`-1` pads).
      source_representations: per placement, `None` or a constant source activation.
      key: PRNG key for stochastic interventions (split per placement).
      logit_positions: `(B, K)` ints: compute the base run's logits at these positions only
        (HF causal LMs), `(B, K, V)`; the rest of the model is unchanged.

    Returns:
      `(outputs, collected)`: the base run's output fields (a dict, e.g. `{"logits": ...}`)
      and a tuple with, per placement, the collected activations (Collect interventions),
      the latent an intervention returned, or `None`.
    """
    ex = Execution(adapter, plan, params, interventions, sources, locations, subspaces, source_representations, key)
    ex.run_sources()
    outputs = ex.model_pass(base, ex.final_setters(), (), logit_positions)
    return outputs, tuple(ex.collected)


class _Handler:
    """Routes tap events to an :class:`Execution`. Taps inside `jaxvene.scan_layers` arrive
    through :meth:`indexed` with the (traced) layer index; what they read leaves the scan as
    scan outputs and is picked per layer in :meth:`finish_scan`."""

    def __init__(self, ex, by_tap, base_locations, gate):
        self.ex, self.by_tap, self.base_locations, self.gate = ex, by_tap, base_locations, gate

    def __call__(self, name, value):
        ex = self.ex
        for op, i in self.by_tap.get(name, ()):
            if op == "get":
                p = ex.plan.placements[i]
                ex.source_acts[i] = gather(p.source_site.view(value), p.unit, ex.locations[i][0])
            else:
                value = self._set(i, value, None)
        return value

    def _set(self, i, value, when):
        ex = self.ex
        loc = ex.locations[i][1] if self.base_locations is None else self.base_locations[i]
        new = ex.write(i, value, loc)
        gate = self.gate
        if when is not None:
            gate = when if gate is None else gate & when
        return new if gate is None else jnp.where(gate, new, value)

    def indexed(self, name, value, index, reads, length):
        ex = self.ex
        for op, i in self.by_tap.get(name, ()):
            p = ex.plan.placements[i]
            if op == "get":
                reads[("get", i)] = gather(p.source_site.view(value), p.unit, ex.locations[i][0])
            else:
                before = ex.collected[i]
                value = self._set(i, value, index == p.site.layer)
                if ex.collected[i] is not before:  # collected inside the scan: carry it out
                    reads[("collect", i)] = ex.collected[i]
                    ex.collected[i] = before
        return value

    def finish_scan(self, reads):
        ex = self.ex
        for (kind, i), stacked in reads.items():
            layer = ex.plan.placements[i].site.layer
            picked = jax.tree_util.tree_map(lambda x: x[layer], stacked)
            if kind == "get":
                ex.source_acts[i] = picked
            else:
                ex.collected[i] = picked


class Execution:
    """The state of one intervened call, inside a trace: source activations read so far and
    activations collected. :func:`run` and the decode loop of :mod:`jaxvene._generate` drive it."""

    def __init__(self, adapter, plan, params, interventions, sources, locations, subspaces=None,
                 source_representations=None, key=None):
        n = len(plan.placements)
        self.subspaces = tuple(subspaces) if subspaces is not None else (None,) * n
        self.constants = tuple(source_representations) if source_representations is not None else (None,) * n
        if len(locations) != n or len(self.subspaces) != n or len(self.constants) != n:
            raise ValueError(
                f"the plan has {n} placements; locations, subspaces and source representations need one entry each"
            )
        if len(sources) != plan.num_groups:
            raise ValueError(f"the plan has {plan.num_groups} source groups but {len(sources)} sources were given")
        self.adapter, self.plan, self.params = adapter, plan, params
        self.interventions, self.sources, self.locations, self.key = interventions, sources, locations, key
        self.source_acts: dict[int, jax.Array] = {}
        self.collected: list = [None] * n
        self.groups = [
            [i for i, p in enumerate(plan.placements) if p.group == g and self.active(i)]
            for g in range(plan.num_groups)
        ]

    def needs_source(self, i: int) -> bool:
        iv = self.interventions[self.plan.placements[i].slot]
        return not iv.is_source_constant and self.constants[i] is None

    def active(self, i: int) -> bool:
        # an intervention whose source group has no input is skipped (pyvene's "smart jump")
        return not self.needs_source(i) or self.sources[self.plan.placements[i].group] is not None

    def handler(self, setters: Sequence[int], getters: Sequence[int], base_locations=None, gate=None):
        """A tap handler: read sources at `getters`, intervene at `setters`. `base_locations`
        overrides the base-side locations (decode steps); `gate` (a traced bool) turns the
        setters off without changing the program."""
        by_tap: dict[str, list] = {}
        for i in setters:
            by_tap.setdefault(self.plan.placements[i].site.tap, []).append(("set", i))
        for i in getters:
            by_tap.setdefault(self.plan.placements[i].source_site.tap, []).append(("get", i))

        return _Handler(self, by_tap, base_locations, gate), set(by_tap)

    def model_pass(self, inputs, setters: Sequence[int], getters: Sequence[int], logit_positions=None):
        handle, taps = self.handler(setters, getters)
        with handling(handle, taps, self.adapter.overrides(taps)):
            if logit_positions is None:
                return self.adapter.apply(self.params, inputs)
            return self.adapter.apply(self.params, inputs, logit_positions=logit_positions)

    def write(self, i: int, value, loc):
        """The tap value with placement `i`'s intervention applied at `loc`."""
        p = self.plan.placements[i]
        iv = self.interventions[p.slot]
        view = p.site.view(value)
        selected = gather(view, p.unit, loc)
        subkey = None if self.key is None else jax.random.fold_in(self.key, i)
        if iv.collects:
            self.collected[i] = iv(selected, None, self.subspaces[i], key=subkey)
            return value
        source = self.constants[i] if self.constants[i] is not None else self.source_acts.get(i)
        new, latent = _apply_intervention(iv, selected, source, self.subspaces[i], subkey)
        if latent is not None:
            self.collected[i] = latent
        if new is None:
            return value
        return p.site.unview(value, scatter(view, p.unit, loc, new))

    def run_sources(self) -> None:
        """Every source run; in serial mode each one carries the previous group's interventions."""
        if self.plan.mode == "parallel":
            for g, members in enumerate(self.groups):
                getters = [i for i in members if self.needs_source(i)]
                if getters:
                    self.model_pass(self.sources[g], (), getters)
            return
        previous: list[int] = []
        for g, members in enumerate(self.groups):
            if self.sources[g] is not None:
                self.model_pass(self.sources[g], previous, [i for i in members if self.needs_source(i)])
            previous = members

    def final_setters(self) -> list[int]:
        """The placements that act on the base run."""
        if self.plan.mode == "parallel":
            return [i for members in self.groups for i in members]
        return list(self.groups[-1]) if self.groups else []
