"""The pure functional core, for `jit`, `vmap`, `grad` and sharding.

`run(adapter, plan, params, interventions, base, sources, locations, ...)` is a pure function
of its array arguments. :func:`build_plan` makes the plan and the interventions from a config
(no facade needed); `IntervenableModel.prepare` turns pyvene-style arguments into the arrays.
Every client changes activations through one function, :func:`write`.

Example (`model` a HF Flax model, `adapter = jv.adapters.adapt(model)`)::

    plan, interventions, _ = jv.core.build_plan(adapter, config)
    f = lambda locs: jv.core.run(adapter, plan, adapter.params, interventions,
                                 base, sources, locs)[0]["logits"]
    jax.jit(f)(locations)

The seams are written as protocols: :class:`ModelAdapter`, the capabilities
:class:`LayerwiseModel` and :class:`CachedDecoder`, and :class:`TapHandler`.
"""

from ..interventions._basic import subspace_mask as subspace_mask
from ..interventions._basic import swap as swap
from ._config import IntervenableConfig as IntervenableConfig
from ._config import RepresentationConfig as RepresentationConfig
from ._hooks import READS as READS
from ._hooks import flax_apply as flax_apply
from ._hooks import handling as handling
from ._hooks import scan_layers as scan_layers
from ._hooks import tap as tap
from ._plan import BuiltPlan as BuiltPlan
from ._plan import Placement as Placement
from ._plan import Plan as Plan
from ._plan import build_plan as build_plan
from ._programs import Structure as Structure
from ._programs import enable_compilation_cache as enable_compilation_cache
from ._programs import structure_key as structure_key
from ._protocols import CachedDecoder as CachedDecoder
from ._protocols import LayerwiseModel as LayerwiseModel
from ._protocols import MissingCapability as MissingCapability
from ._protocols import ModelAdapter as ModelAdapter
from ._protocols import TapHandler as TapHandler
from ._protocols import require as require
from ._run import Execution as Execution
from ._run import run as run
from ._sites import Site as Site
from ._write import gather as gather
from ._write import read as read
from ._write import scatter as scatter
from ._write import write as write
