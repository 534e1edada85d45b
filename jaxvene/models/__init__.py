"""Model architectures written for jaxvene in Flax: transformers has no Flax version of them,
or pyvene ships them (its MLP and GRU models). Each reads HF/pyvene weights.

The small checkpoints that ship with jaxvene live in :mod:`jaxvene.pretrained`.
"""

from .decoder import DecoderConfig as DecoderConfig
from .decoder import NativeDecoder as NativeDecoder
from .decoder import from_pretrained as from_pretrained
from .gpt_neox import GPT_NEOX as GPT_NEOX
from .gpt_neox import FlaxGPTNeoXForCausalLM as FlaxGPTNeoXForCausalLM
from .gru import GRUConfig as GRUConfig
from .gru import GRUForClassification as GRUForClassification
from .gru import GRULMHeadModel as GRULMHeadModel
from .gru import GRUModel as GRUModel
from .mlp import MLPConfig as MLPConfig
from .mlp import MLPForClassification as MLPForClassification
from .qwen2 import QWEN2 as QWEN2
from .qwen2 import FlaxQwen2ForCausalLM as FlaxQwen2ForCausalLM
