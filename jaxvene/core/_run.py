"""The pure core: one function from (params, inputs, interventions, locations) to outputs.

Data flow of :func:`run`:

* **Static** (decides what is compiled): the :class:`~jaxvene.core.Plan`, i.e. which
  interventions sit at which sites, their units, which source feeds which, parallel or serial
  mode. It is a frozen dataclass, hashable, and closed over by the jitted function.
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

**Reads are values.** A pass returns what it read (source activations, collected
activations, latents) next to the model's outputs; nothing is stored from inside the traced
model. Reads made inside `jaxvene.scan_layers` leave the scan as scan outputs, reads made
inside a Flax module travel in the `"jaxvene"` variable collection, which Flax's lifted
transforms (`nn.remat`, `nn.jit`, ...) carry out; see :mod:`jaxvene.core._hooks`.

Example::

    outputs, collected = run(adapter, plan, params, interventions, base, sources, locations)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..interventions._basic import Intervention
from ._hooks import handling, keep
from ._plan import Plan
from ._write import read, write

__all__ = ["run", "Execution", "Reads"]

#: What one pass read: `("get", i)` -> the source units of placement i, `("collect", i)` ->
#: what placement i collected (a Collect intervention's input, or a latent).
Reads = dict


def run(
    adapter,
    plan: Plan,
    params,
    interventions: Sequence[Intervention],
    base: dict,
    sources: Sequence[dict | None],
    locations: Sequence[tuple[Any, Any]],
    subspaces: Sequence[jax.Array | None] | None = None,
    source_representations: Sequence[jax.Array | None] | None = None,
    key: jax.Array | None = None,
    logit_positions: jax.Array | None = None,
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
    source_reads = ex.run_sources()
    outputs, reads = ex.model_pass(base, ex.final_setters(), (), source_reads, logit_positions)
    # in serial mode a group's interventions act on the next source's run: what they collect
    # there is returned too (the base pass's reads win where both have one)
    return outputs, ex.collected({**source_reads, **reads})


class _Handler:
    """Routes tap events of one pass: reads source units at `getters`, intervenes at `setters`.

    Everything it reads goes to :func:`jaxvene.core._hooks.keep`, which returns it as a value
    of the pass (see the module docstring). Taps inside `jaxvene.scan_layers` arrive through
    :meth:`indexed` with the (traced) layer index; what they read leaves the scan as scan
    outputs and :meth:`finish_scan` picks each placement's layer.
    """

    def __init__(self, ex: Execution, setters, getters, source_acts: Reads, base_locations=None, gate=None):
        self.ex, self.source_acts, self.base_locations, self.gate = ex, source_acts, base_locations, gate
        self.by_tap: dict[str, list] = {}
        for i in setters:
            self.by_tap.setdefault(ex.plan.placements[i].site.tap, []).append(("set", i))
        for i in getters:
            self.by_tap.setdefault(ex.plan.placements[i].source_site.tap, []).append(("get", i))
        self.reads: Reads = {}

    @property
    def taps(self) -> frozenset[str]:
        return frozenset(self.by_tap)

    def __call__(self, name, value):
        for op, i in self.by_tap.get(name, ()):
            if op == "get":
                p = self.ex.plan.placements[i]
                keep(self, ("get", i), read(p.source_site, p.unit, value, self.ex.locations[i][0]))
            else:
                value = self._set(i, value, None, lambda k, v: keep(self, k, v))
        return value

    def _set(self, i, value, when, store: Callable):
        ex = self.ex
        p = ex.plan.placements[i]
        loc = ex.locations[i][1] if self.base_locations is None else self.base_locations[i]
        source = ex.constants[i] if ex.constants[i] is not None else self.source_acts.get(("get", i))
        subkey = None if ex.key is None else jax.random.fold_in(ex.key, i)
        new, extra = write(p.site, p.unit, ex.interventions[p.slot], value, loc, source, ex.subspaces[i], subkey)
        if extra is not None:
            store(("collect", i), extra)
        gate = self.gate
        if when is not None:
            gate = when if gate is None else gate & when
        return new if gate is None else jnp.where(gate, new, value)

    def indexed(self, name, value, index, reads, length, span=None):
        """A tap inside `jaxvene.scan_layers` at the traced layer `index`, in a scan over the
        layers `span = (start, stop)` (all `length` layers when None): placements whose layer
        lies outside the span are left out of this scan's program altogether, so a scan below
        the first intervened layer does not depend on the interventions at all."""
        ex = self.ex
        for op, i in self.by_tap.get(name, ()):
            p = ex.plan.placements[i]
            layer = (p.source_site if op == "get" else p.site).layer
            if span is not None and layer is not None and not span[0] <= layer < span[1]:
                continue
            if op == "get":
                reads[("get", i)] = read(p.source_site, p.unit, value, ex.locations[i][0])
            else:
                value = self._set(i, value, index == p.site.layer, reads.__setitem__)
        return value

    def scan_cuts(self, length: int) -> tuple[int, ...]:
        """Where :func:`jaxvene.scan_layers` splits a scan over `length` layers: around each
        layer an intervention acts on, and after the last layer read or written.

        The layers before the first cut do not depend on the interventions, so `jax.grad`
        runs them forward only (one scan differentiated whole keeps every layer's residuals:
        its carry depends on the trained params from the intervened layer on, which makes the
        whole loop differentiated). An intervened layer is a piece of its own, so the pieces
        between and above do not compute the intervention masked off by `where` (nor sum its
        gradient across devices in every iteration). The layers after the last cut of a
        source run feed nothing and XLA drops them."""
        placements = self.ex.plan.placements
        acting, touched = [], []
        for ops in self.by_tap.values():
            for op, i in ops:
                site = placements[i].site if op == "set" else placements[i].source_site
                if site.indexed and site.layer is not None:
                    touched.append(site.layer)
                    if op == "set":
                        acting.append(site.layer)
        cuts = {c for a in acting for c in (a, a + 1)} | ({max(touched) + 1} if touched else set())
        return tuple(sorted(c for c in cuts if 0 < c < length))

    def finish_scan(self, reads, start: int, stop: int):
        """Pick each placement's layer from what the taps of layers `start .. stop-1` read
        (stacked, one entry per layer of that range)."""
        for (kind, i), stacked in reads.items():
            p = self.ex.plan.placements[i]
            layer = (p.source_site if kind == "get" else p.site).layer
            if layer is None or not start <= layer < stop:
                continue
            self.reads[(kind, i)] = jax.tree_util.tree_map(lambda x, k=layer - start: x[k], stacked)

    def absorb(self, found: Reads) -> None:
        """Reads that left the model through Flax's variable collection."""
        self.reads.update(found)


class Execution:
    """One intervened call, inside a trace: the plan, its arguments, and the passes it runs.

    :func:`run` and the decode loop of :mod:`jaxvene.core._generate` drive it. It holds no
    activations: every pass returns what it read.
    """

    def __init__(
        self,
        adapter,
        plan,
        params,
        interventions,
        sources,
        locations,
        subspaces=None,
        source_representations=None,
        key=None,
    ):
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
        self.groups = [
            [i for i, p in enumerate(plan.placements) if p.group == g and self.active(i)]
            for g in range(plan.num_groups)
        ]

    def reads_source(self, i: int) -> bool:
        """Placement `i` reads source activations when its group has an input (not a sourceless
        intervention, no constant source)."""
        iv = self.interventions[self.plan.placements[i].slot]
        return not iv.is_source_constant and self.constants[i] is None

    def needs_source(self, i: int) -> bool:
        """Placement `i` cannot act without source activations (a function intervention can: it
        is then called with `source=None`, as pyvene calls it)."""
        return self.reads_source(i) and not self.interventions[self.plan.placements[i].slot].source_optional

    def active(self, i: int) -> bool:
        """pyvene's "smart jump": which placements act, given which sources are `None`.

        Parallel mode skips only the placements that need a source and whose group has none;
        sourceless interventions, constant sources and function interventions act anyway.
        Serial mode, as pyvene, skips every placement of a group whose source is `None` (that
        hop of the chain is off)."""
        has_source = self.sources[self.plan.placements[i].group] is not None
        if self.plan.mode == "serial":
            return has_source
        return has_source or not self.needs_source(i)

    def handler(
        self,
        setters: Sequence[int],
        getters: Sequence[int],
        source_acts: Reads | None = None,
        base_locations=None,
        gate=None,
    ) -> _Handler:
        """A tap handler for one pass: read sources at `getters`, intervene at `setters` with
        the source units `source_acts`. `base_locations` overrides the base-side locations
        (decode steps); `gate` (a traced bool) turns the setters off without changing the
        program."""
        return _Handler(self, setters, getters, source_acts or {}, base_locations, gate)

    def traced_pass(self, handler: _Handler, fn: Callable[[], Any]) -> tuple[Any, Reads]:
        """`fn()` (a forward pass of the model) with `handler` listening: `(its output, reads)`."""
        with handling(handler, handler.taps, self.adapter.overrides(handler.taps)):
            out = fn()
        return out, handler.reads

    def model_pass(
        self,
        inputs,
        setters: Sequence[int],
        getters: Sequence[int],
        source_acts: Reads | None = None,
        logit_positions=None,
    ) -> tuple[Any, Reads]:
        """One forward pass of the model on `inputs`: `(outputs, reads)`."""
        handler = self.handler(setters, getters, source_acts)
        if logit_positions is None:
            return self.traced_pass(handler, lambda: self.adapter.apply(self.params, inputs))
        return self.traced_pass(
            handler, lambda: self.adapter.apply(self.params, inputs, logit_positions=logit_positions)
        )

    def run_sources(self) -> Reads:
        """Every source run: what they read (the source units each placement reads, and in
        serial mode, where each run carries the previous group's interventions, what those
        collect)."""
        acts: Reads = {}
        if self.plan.mode == "parallel":
            for g, members in enumerate(self.groups):
                getters = [i for i in members if self.reads_source(i)]
                if getters and self.sources[g] is not None:
                    acts.update(self.model_pass(self.sources[g], (), getters)[1])
            return acts
        previous: list[int] = []
        for g, members in enumerate(self.groups):
            if self.sources[g] is not None:
                getters = [i for i in members if self.reads_source(i)]
                acts.update(self.model_pass(self.sources[g], previous, getters, acts)[1])
            previous = members
        return acts

    def final_setters(self) -> list[int]:
        """The placements that act on the base run."""
        if self.plan.mode == "parallel":
            return [i for members in self.groups for i in members]
        return list(self.groups[-1]) if self.groups else []

    def collected(self, reads: Reads) -> tuple:
        """Per placement, what it collected in the pass that returned `reads` (or `None`)."""
        return tuple(reads.get(("collect", i)) for i in range(len(self.plan.placements)))
