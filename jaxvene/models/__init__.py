"""Model architectures written for jaxvene: the native decoders that read HF checkpoints
(:mod:`jaxvene.models.decoder`: Llama, Mistral, Qwen2/3, Gemma 1-3, Phi-3, OLMo 2, GPT-NeoX),
and pyvene's own test models (its MLP and GRU).

The small checkpoints that ship with jaxvene live in :mod:`jaxvene.pretrained`.
"""

from ._checkpoint import resolve as resolve
from ._legacy import FlaxGPTNeoXForCausalLM as FlaxGPTNeoXForCausalLM
from ._legacy import FlaxQwen2ForCausalLM as FlaxQwen2ForCausalLM
from ._tokenizer import load_tokenizer as load_tokenizer
from .decoder import DecoderConfig as DecoderConfig
from .decoder import NativeDecoder as NativeDecoder
from .decoder import from_pretrained as from_pretrained
from .gru import GRUConfig as GRUConfig
from .gru import GRUForClassification as GRUForClassification
from .gru import GRULMHeadModel as GRULMHeadModel
from .gru import GRUModel as GRUModel
from .mlp import MLPConfig as MLPConfig
from .mlp import MLPForClassification as MLPForClassification
