"""pyvene's configuration objects: `RepresentationConfig` and `IntervenableConfig`.

Same fields, defaults and accepted forms as pyvene 0.1.8, so configs port unchanged: a
representation may be a `RepresentationConfig`, a dict of its fields, or a positional list.
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

__all__ = ["RepresentationConfig", "IntervenableConfig"]

# The field names are written out in the call (not held in a variable) so that type checkers
# see the fields.
RepresentationConfig = namedtuple(
    "RepresentationConfig",
    [
        "layer",
        "component",
        "unit",
        "max_number_of_units",
        "low_rank_dimension",
        "intervention_type",
        "intervention",
        "subspace_partition",
        "group_key",
        "intervention_link_key",
        "moe_key",
        "source_representation",
        "hidden_source_representation",
        "latent_dim",
    ],
    defaults=(0, "block_output", "pos", 1, None, None, None, None, None, None, None, None, None, None),
)
_FIELDS = RepresentationConfig._fields
RepresentationConfig.__doc__ = """One intervention site (pyvene's fields and defaults).

layer, component: where (`component` is a pyvene name such as "block_output", or a module path
  ending in ".input"/".output", e.g. "transformer.h[0].mlp.output").
unit: "pos", "h" or "h.pos"; max_number_of_units: sizes distributed interventions.
intervention_type / intervention: a class, or a ready object or plain function.
subspace_partition, group_key, intervention_link_key, source_representation, low_rank_dimension,
latent_dim: as in pyvene.
"""


def _as_representation(rep) -> RepresentationConfig:
    if isinstance(rep, RepresentationConfig):
        return rep
    if isinstance(rep, dict):
        unknown = sorted(set(rep) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown representation fields {unknown}; valid fields: {', '.join(_FIELDS)}")
        return RepresentationConfig(**rep)
    if isinstance(rep, (list, tuple)):
        if len(rep) > len(_FIELDS):
            raise ValueError(f"a positional representation has at most {len(_FIELDS)} fields, got {len(rep)}")
        return RepresentationConfig(*rep)
    raise TypeError(f"a representation must be a RepresentationConfig, dict or list, got {type(rep).__name__}")


class IntervenableConfig:
    """The representations to intervene on, their intervention types and the mode.

    Args:
      representations: one representation or a list (`RepresentationConfig`, dicts or lists).
      intervention_types: one intervention class for every representation, or a list with one
        per representation; a representation's own `intervention_type` / `intervention` wins.
      mode: "parallel" (every source patched into the base at once) or "serial" (a chain
        source_0 -> source_1 -> ... -> base).
      model_type: kept as given, like pyvene's (deprecated there; jaxvene reads the model itself).

    As in pyvene, the attributes hold what was given: `intervention_types` is the class when
    one class was given (`VanillaIntervention` when none was), the list when a list was, and
    the representations' own types (a list) when they name them. :meth:`type_per_representation`
    is the one-class-per-representation list that jaxvene builds from.
    """

    def __init__(
        self,
        representations: Any = None,
        intervention_types: Any = None,
        mode: str = "parallel",
        sorted_keys: Sequence[str] | None = None,
        model_type: Any = None,
        intervention_dimensions: Any = None,
        intervention_constant_sources: Any = None,
        **kwargs,
    ):
        from ..interventions._basic import VanillaIntervention

        if representations is None:
            representations = [RepresentationConfig()]
        if isinstance(representations, (RepresentationConfig, dict)) or (
            isinstance(representations, (list, tuple))
            and representations
            and not isinstance(representations[0], (RepresentationConfig, dict, list, tuple))
        ):
            representations = [representations]
        self.representations = [_as_representation(r) for r in representations]
        if mode not in ("parallel", "serial"):
            raise ValueError(f"mode must be 'parallel' or 'serial', got {mode!r}")
        self.mode = mode
        self.sorted_keys = list(sorted_keys) if sorted_keys is not None else None
        self.model_type = model_type
        # pyvene's hidden fields (its saves write them); kept, not used
        self.intervention_dimensions = intervention_dimensions
        self.intervention_constant_sources = intervention_constant_sources
        self.extra = kwargs
        own = self._own_types()
        if own is not None:
            self.intervention_types: Any = own
        else:
            self.intervention_types = VanillaIntervention if intervention_types is None else intervention_types
        self.type_per_representation()  # checks the count of a list now, not at the first call

    def _own_types(self) -> list | None:
        """The representations' own types, or None when none names one."""
        reps = self.representations
        own = [r.intervention_type is not None or r.intervention is not None for r in reps]
        if not any(own):
            return None
        if not all(own):
            raise ValueError(
                "some representations name their own intervention_type/intervention and some do "
                "not; give one to every representation, or none and use intervention_types."
            )
        return [r.intervention_type if r.intervention is None else type(r.intervention) for r in reps]

    def type_per_representation(self) -> list:
        """One intervention class per representation, in order (what `build_plan` reads)."""
        types = self.intervention_types
        n = len(self.representations)
        if isinstance(types, (list, tuple)):
            if len(types) != n:
                raise ValueError(f"intervention_types has {len(types)} entries for {n} representations")
            return list(types)
        return [types] * n

    def add_intervention(self, representations) -> None:
        if isinstance(representations, (RepresentationConfig, dict)):
            representations = [representations]
        for rep in map(_as_representation, representations):
            if rep.intervention_type is None and rep.intervention is None:
                raise ValueError("add_intervention needs an intervention_type (or intervention) in each representation")
            types = self.type_per_representation()  # a single class becomes a list here (pyvene's +=)
            self.representations.append(rep)
            self.intervention_types = types + [rep.intervention_type or type(rep.intervention)]

    def to_dict(self) -> dict:
        """JSON-friendly form: classes by name, arrays and callables as placeholders."""

        def plain(value):
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            if isinstance(value, type):
                return value.__name__
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return "PLACEHOLDER"

        return {
            "model_type": plain(self.model_type),
            "representations": [{k: plain(v) for k, v in r._asdict().items()} for r in self.representations],
            "intervention_types": plain(self.intervention_types),
            "mode": self.mode,
            "sorted_keys": self.sorted_keys,
        }

    def __repr__(self) -> str:
        return "IntervenableConfig" + json.dumps(self.to_dict(), indent=2)
