"""jaxvene: causal interventions on JAX models, in pyvene's words, on a pure functional core.

>>> import jaxvene as jv
>>> config = jv.IntervenableConfig([{"layer": 1, "component": "block_output"}],
...                                intervention_types=jv.VanillaIntervention)
>>> model = jv.IntervenableModel(config, flax_model)
"""

from ._config import IntervenableConfig as IntervenableConfig
from ._config import RepresentationConfig as RepresentationConfig
from ._model import IntervenableModel as IntervenableModel
from ._model import IntervenableModelOutput as IntervenableModelOutput
from ._interventions import Intervention as Intervention
from ._interventions import InterventionOutput as InterventionOutput
from ._interventions import TrainableIntervention as TrainableIntervention
from ._interventions import ConstantSourceIntervention as ConstantSourceIntervention
from ._interventions import SourcelessIntervention as SourcelessIntervention
from ._interventions import BasisAgnosticIntervention as BasisAgnosticIntervention
from ._interventions import LocalistRepresentationIntervention as LocalistRepresentationIntervention
from ._interventions import DistributedRepresentationIntervention as DistributedRepresentationIntervention
from ._interventions import VanillaIntervention as VanillaIntervention
from ._interventions import AdditionIntervention as AdditionIntervention
from ._interventions import SubtractionIntervention as SubtractionIntervention
from ._interventions import ZeroIntervention as ZeroIntervention
from ._interventions import CollectIntervention as CollectIntervention
from ._interventions import SkipIntervention as SkipIntervention
from ._interventions import NoiseIntervention as NoiseIntervention
from ._interventions import LambdaIntervention as LambdaIntervention
from ._rotations import RotatedSpaceIntervention as RotatedSpaceIntervention
from ._rotations import LowRankRotatedSpaceIntervention as LowRankRotatedSpaceIntervention
from ._rotations import BoundlessRotatedSpaceIntervention as BoundlessRotatedSpaceIntervention
from ._rotations import SigmoidMaskRotatedSpaceIntervention as SigmoidMaskRotatedSpaceIntervention
from ._rotations import SigmoidMaskIntervention as SigmoidMaskIntervention
from ._rotations import PCARotatedSpaceIntervention as PCARotatedSpaceIntervention
from ._rotations import AutoencoderIntervention as AutoencoderIntervention
from ._rotations import JumpReLUAutoencoderIntervention as JumpReLUAutoencoderIntervention
from ._hooks import tap as tap
from ._hooks import scan_layers as scan_layers
from ._adapters import HFFlaxAdapter as HFFlaxAdapter
from ._generic import FunctionAdapter as FunctionAdapter
from ._generic import FlaxModuleAdapter as FlaxModuleAdapter
from ._generic import equinox_adapter as equinox_adapter
from ._generic import list_sites as list_sites
from ._causal_model import CausalModel as CausalModel
from ._mlp import MLPConfig as MLPConfig
from ._saving import register_intervention as register_intervention
from ._saving import load_pyvene_intervention as load_pyvene_intervention
from ._mlp import MLPForClassification as MLPForClassification
from ._sweep import sweep as sweep
from ._tracing import causal_trace as causal_trace
from ._tracing import CausalTrace as CausalTrace
from . import patching as patching
from . import training as training
from . import core as core
from . import models_native as models_native
from ._families import register_family as register_family
from .models_native import FlaxGPTNeoXForCausalLM as FlaxGPTNeoXForCausalLM
from .models_native import FlaxQwen2ForCausalLM as FlaxQwen2ForCausalLM
from ._gru import GRUConfig as GRUConfig
from ._gru import GRUModel as GRUModel
from ._gru import GRUForClassification as GRUForClassification
from ._gru import GRULMHeadModel as GRULMHeadModel

register_family(models_native.GPT_NEOX)
register_family(models_native.QWEN2)

__version__ = "0.1.0"
