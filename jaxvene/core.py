"""The pure functional core, for `jit`, `vmap`, `grad` and sharding.

`run(adapter, plan, params, interventions, base, sources, locations, ...)` is a pure function
of its array arguments; `IntervenableModel.prepare` turns pyvene-style arguments into them, and
`IntervenableModel.plan()` / `.intervention_params()` give the plan and the interventions.

>>> model = jv.IntervenableModel(config, flax_model)
>>> base, sources, locations, subspaces, constants = model.prepare(
...     {"input_ids": ids}, [{"input_ids": src}], {"sources->base": 3})
>>> f = lambda locs: jv.core.run(model.adapter, model.plan(), model.adapter.params,
...                              model.intervention_params(), base, sources, locs)[0]["logits"]
>>> jax.jit(f)(locations)
"""

from ._adapters import HFFlaxAdapter as HFFlaxAdapter
from ._adapters import adapt as adapt
from ._adapters import position_ids_from_mask as position_ids_from_mask
from ._engine import Placement as Placement
from ._engine import Plan as Plan
from ._engine import gather as gather
from ._engine import run as run
from ._engine import scatter as scatter
from ._hooks import handling as handling
from ._interventions import subspace_mask as subspace_mask
from ._interventions import swap as swap
from ._sites import Site as Site
