"""jaxvene: causal interventions on JAX models, in pyvene's words, on a pure functional core.

Layout (each folder one layer; lower layers never import higher ones):

- :mod:`jaxvene.interventions`: interventions as pure Equinox modules;
- :mod:`jaxvene.core`: sites, taps, plans, the write path and the pure `run`;
- :mod:`jaxvene.families`: pyvene's component names per HuggingFace model family;
- :mod:`jaxvene.adapters`: any model as a pure function with sites;
- :mod:`jaxvene.models`: architectures jaxvene writes itself: the native decoders read from HF
  checkpoints (`jv.from_pretrained`), pyvene's MLP and GRU;
- :mod:`jaxvene.analysis`, :mod:`jaxvene.training`: sweeps, tracing, patching; DAS/IIT;
- `IntervenableModel` and its config (pyvene's facade), at the top level;
- :mod:`jaxvene.pretrained`: the small checkpoints that ship with jaxvene;
- :mod:`jaxvene.apps`: the demo and the DAS example.

Example::

    import jaxvene as jv
    config = jv.IntervenableConfig([{"layer": 1, "component": "block_output"}],
                                   intervention_types=jv.VanillaIntervention)
    model = jv.IntervenableModel(config, flax_model)
"""

from . import adapters as adapters
from . import analysis as analysis
from . import core as core
from . import families as families
from . import interventions as interventions
from . import models as models
from . import patching as patching
from . import training as training
from ._facade._intervenable import IntervenableModel as IntervenableModel
from ._facade._intervenable import IntervenableModelOutput as IntervenableModelOutput
from ._facade._intervenable import InterventionHandle as InterventionHandle
from ._facade._pyvene_utils import embed_to_distrib as embed_to_distrib
from ._facade._pyvene_utils import format_token as format_token
from ._facade._pyvene_utils import set_seed as set_seed
from ._facade._pyvene_utils import top_vals as top_vals
from ._facade._saving import load_pyvene_intervention as load_pyvene_intervention
from ._facade._saving import register_intervention as register_intervention
from .adapters import FlaxModuleAdapter as FlaxModuleAdapter
from .adapters import FunctionAdapter as FunctionAdapter
from .adapters import HFFlaxAdapter as HFFlaxAdapter
from .adapters import equinox_adapter as equinox_adapter
from .adapters import list_sites as list_sites
from .analysis import CausalTrace as CausalTrace
from .analysis import causal_trace as causal_trace
from .analysis import sweep as sweep
from .core import IntervenableConfig as IntervenableConfig
from .core import RepresentationConfig as RepresentationConfig
from .core import enable_compilation_cache as enable_compilation_cache
from .core import scan_layers as scan_layers
from .core import tap as tap
from .families import register_family as register_family
from .interventions import AdditionIntervention as AdditionIntervention
from .interventions import AutoencoderIntervention as AutoencoderIntervention
from .interventions import BasisAgnosticIntervention as BasisAgnosticIntervention
from .interventions import BoundlessRotatedSpaceIntervention as BoundlessRotatedSpaceIntervention
from .interventions import CollectIntervention as CollectIntervention
from .interventions import ConstantSourceIntervention as ConstantSourceIntervention
from .interventions import DistributedRepresentationIntervention as DistributedRepresentationIntervention
from .interventions import Intervention as Intervention
from .interventions import InterventionOutput as InterventionOutput
from .interventions import JumpReLUAutoencoderIntervention as JumpReLUAutoencoderIntervention
from .interventions import LambdaIntervention as LambdaIntervention
from .interventions import LocalistRepresentationIntervention as LocalistRepresentationIntervention
from .interventions import LowRankRotatedSpaceIntervention as LowRankRotatedSpaceIntervention
from .interventions import NoiseIntervention as NoiseIntervention
from .interventions import PCARotatedSpaceIntervention as PCARotatedSpaceIntervention
from .interventions import RotatedSpaceIntervention as RotatedSpaceIntervention
from .interventions import SigmoidMaskIntervention as SigmoidMaskIntervention
from .interventions import SigmoidMaskRotatedSpaceIntervention as SigmoidMaskRotatedSpaceIntervention
from .interventions import SkipIntervention as SkipIntervention
from .interventions import SourcelessIntervention as SourcelessIntervention
from .interventions import SubtractionIntervention as SubtractionIntervention
from .interventions import TrainableIntervention as TrainableIntervention
from .interventions import VanillaIntervention as VanillaIntervention
from .interventions import ZeroIntervention as ZeroIntervention
from .models import DecoderConfig as DecoderConfig
from .models import FlaxGPTNeoXForCausalLM as FlaxGPTNeoXForCausalLM
from .models import FlaxQwen2ForCausalLM as FlaxQwen2ForCausalLM
from .models import GRUConfig as GRUConfig
from .models import GRUForClassification as GRUForClassification
from .models import GRULMHeadModel as GRULMHeadModel
from .models import GRUModel as GRUModel
from .models import MLPConfig as MLPConfig
from .models import MLPForClassification as MLPForClassification
from .models import NativeDecoder as NativeDecoder
from .models import from_pretrained as from_pretrained
from .models import load_tokenizer as load_tokenizer
from .models.mlp import create_mlp_classifier as create_mlp_classifier
from .training import CausalModel as CausalModel

__version__ = "0.1.0"


def __getattr__(name):
    if name == "models_native":  # the native architectures moved to jaxvene.models
        import warnings

        warnings.warn("jaxvene.models_native moved to jaxvene.models", DeprecationWarning, stacklevel=2)
        return models
    raise AttributeError(f"module 'jaxvene' has no attribute {name!r}")
