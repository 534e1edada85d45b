"""Adapters: any model as a pure function with named sites (:class:`jaxvene.core.ModelAdapter`).

- :class:`HFFlaxAdapter`: HuggingFace Flax models (and jaxvene's native models), by family
  site tables (:mod:`jaxvene.families`);
- :class:`FunctionAdapter`, :class:`FlaxModuleAdapter`, :func:`equinox_adapter`: any JAX
  function, Flax module or Equinox model;
- :class:`LayerStack`: a HF Flax model run layer by layer (sweeps, tracing);
- :func:`adapt`: the adapter of a model (made once per model); :func:`layer_stack`, :func:`list_sites`.
"""

from ..core._positions import position_ids_from_mask as position_ids_from_mask
from ._adapt import adapt as adapt
from ._adapt import layer_stack as layer_stack
from ._adapt import list_sites as list_sites
from ._function import FlaxModuleAdapter as FlaxModuleAdapter
from ._function import FunctionAdapter as FunctionAdapter
from ._function import Tapped as Tapped
from ._function import equinox_adapter as equinox_adapter
from ._hf_flax import HFFlaxAdapter as HFFlaxAdapter
from ._stack import LayerStack as LayerStack
