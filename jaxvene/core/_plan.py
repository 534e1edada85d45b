"""Plans: which interventions sit at which sites, as static data.

A :class:`Plan` is the static half of a call of :func:`jaxvene.core.run` (it decides what is
compiled); :func:`build_plan` makes one from an :class:`~jaxvene.IntervenableConfig` and a
model, as `IntervenableModel` does, so users of the pure core need no facade:

Example (`adapter = jaxvene.adapters.adapt(model)`)::

    plan, interventions, keys = jaxvene.core.build_plan(adapter, config)
    outputs, collected = jaxvene.core.run(adapter, plan, params, interventions, ...)
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..interventions._basic import Intervention, LambdaIntervention
from ._config import IntervenableConfig, RepresentationConfig
from ._protocols import ModelAdapter
from ._sites import Site

__all__ = ["UNITS", "Placement", "Plan", "BuiltPlan", "build_plan"]

UNITS = ("pos", "h", "h.pos")
# pyvene's unit for the time steps of recurrent models (GRU): a position axis here
_UNIT_ALIASES = {"t": "pos"}


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
    """The static structure of an intervened call: placements (in config order), parallel or
    serial mode, and the number of source groups. Hashable; part of the compiled program."""

    placements: tuple[Placement, ...]
    mode: str = "parallel"
    num_groups: int = 1

    def __post_init__(self):
        if self.mode not in ("parallel", "serial"):
            raise ValueError(f"mode must be 'parallel' or 'serial', got {self.mode!r}")

    def taps(self) -> frozenset[str]:
        """Every tap the plan reads or writes."""
        return frozenset(t for p in self.placements for t in (p.site.tap, p.source_site.tap))


class BuiltPlan(NamedTuple):
    """What :func:`build_plan` returns."""

    plan: Plan
    #: one intervention module per slot (linked representations share one)
    interventions: tuple[Intervention, ...]
    #: pyvene's key of each representation, in config order (`layer_2_comp_block_output_...#0`)
    keys: tuple[str, ...]


def build_plan(adapter: ModelAdapter, config: Any) -> BuiltPlan:
    """Resolve `config` against a model: sites, intervention modules, groups and links.

    Args:
      adapter: the model's adapter (:func:`jaxvene.adapters.adapt` makes one from a HF Flax
        model; `FunctionAdapter` and the others are adapters already).
      config: an :class:`~jaxvene.IntervenableConfig`, or what its constructor takes (a
        representation dict, a list of them, ...).

    Returns:
      A :class:`BuiltPlan` `(plan, interventions, keys)`.
    """
    config = config if isinstance(config, IntervenableConfig) else IntervenableConfig(config)
    reps = config.representations
    counter: dict = {}
    keys = tuple(_representation_key(r, counter) for r in reps)
    reps = [r._replace(unit=_UNIT_ALIASES.get(r.unit, r.unit)) for r in reps]
    sites = [_site(adapter, r) for r in reps]
    shapes = adapter.tap_shapes(sorted({s.tap for s in sites}))
    groups = _groups(reps)
    unique: list[Intervention] = []
    links: dict = {}
    placements = []
    for rep, site, cls, group in zip(reps, sites, config.type_per_representation(), groups):
        site.check_tap_shape(shapes[site.tap])
        width = site.view_shape(shapes[site.tap])[-1]
        if rep.intervention_link_key is not None and rep.intervention_link_key in links:
            slot = links[rep.intervention_link_key]
        else:
            slot = len(unique)
            unique.append(_make_intervention(rep, cls, width * int(rep.max_number_of_units)))
            if rep.intervention_link_key is not None:
                links[rep.intervention_link_key] = slot
        placements.append(Placement(site, rep.unit, slot, group, _source_site(site, unique[slot], rep)))
    plan = Plan(tuple(placements), config.mode, max(groups) + 1 if groups else 0)
    return BuiltPlan(plan, tuple(unique), keys)


def _representation_key(rep: RepresentationConfig, counter: dict) -> str:
    unit = rep.unit.replace(".", "_")
    if "." in rep.component:
        proposal = f"comp_{rep.component.replace('.', '_')}_unit_{unit}_nunit_{rep.max_number_of_units}"
    else:
        proposal = f"layer_{rep.layer}_comp_{rep.component}_unit_{unit}_nunit_{rep.max_number_of_units}"
    counter[proposal] = counter.get(proposal, -1) + 1
    return f"{proposal}#{counter[proposal]}"


def _site(adapter, rep: RepresentationConfig) -> Site:
    if rep.unit not in UNITS:
        raise ValueError(f"unknown unit {rep.unit!r}; valid units are {', '.join(UNITS)}")
    if rep.moe_key is not None:
        raise NotImplementedError("moe_key is not supported: no built-in family has experts")
    site = adapter.site(rep.component, rep.layer)
    if site.is_head_site and rep.unit == "pos":
        raise ValueError(
            f"{rep.component} is a per-head component: use unit 'h' (heads) or 'h.pos' (heads at positions), not 'pos'."
        )
    if not site.is_head_site and rep.unit != "pos":
        raise ValueError(f"unit {rep.unit!r} needs a head component (head_*); {rep.component} takes unit 'pos'.")
    return site


def _construct(cls, rep: RepresentationConfig, embed_dim: int) -> Intervention:
    """Instantiate an intervention class with the config fields its constructor takes."""
    if not (isinstance(cls, type) and issubclass(cls, Intervention)):
        raise TypeError(f"intervention_type must be a jaxvene Intervention class, got {cls!r}")
    offered = {k: v for k, v in rep._asdict().items() if v is not None}
    offered["embed_dim"] = embed_dim
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        base = inspect.signature(Intervention.__init__).parameters
        accepted = set(params) | set(base)
    else:
        accepted = set(params)
    return cls(**{k: v for k, v in offered.items() if k in accepted})


def _make_intervention(rep, cls, embed_dim) -> Intervention:
    if rep.intervention is not None:
        iv = rep.intervention
        if isinstance(iv, Intervention):
            return iv
        if callable(iv):
            return LambdaIntervention(iv)
        raise TypeError(f"representation.intervention must be an Intervention or a function, got {iv!r}")
    return _construct(cls, rep, embed_dim)


def _groups(reps) -> list[int]:
    keys = [r.group_key for r in reps]
    if all(k is None for k in keys):
        return list(range(len(reps)))
    if any(k is None for k in keys):
        raise ValueError("group_key must be set on every representation or on none")
    if any(b < a for a, b in zip(keys, keys[1:])):
        raise ValueError(f"group_key values must not decrease in config order; got {keys}")
    order = sorted(set(keys))
    return [order.index(k) for k in keys]


def _source_site(site: Site, iv: Intervention, rep) -> Site:
    if not iv.reads_module_input:
        return site
    if not site.tap.endswith(".output"):
        raise ValueError(f"{type(iv).__name__} needs a module output component; {rep.component} is a module input")
    return dataclasses.replace(site, tap=site.tap[: -len(".output")] + ".input")
