"""jaxvene's native decoders: one configurable LLaMA-lineage decoder read from HF checkpoints.

Llama 1/2/3.x (rope scaling: linear, dynamic, llama3, yarn), Mistral (sliding window),
Qwen2/2.5 (q/k/v biases), Qwen3 (q/k norms), Gemma 1/2/3 (embedding scale, GeGLU, sandwich
norms, soft-capping, local/global layers, Gemma 3's dual rotary bases), Phi-3 (fused
projections, LongRoPE) and OLMo 2 (post-norms, q/k norms) are one decoder
(:class:`DecoderConfig`) with one forward pass (:func:`forward`), read from a checkpoint folder
by :func:`from_pretrained`.

* `_config.py`: :class:`DecoderConfig`, :class:`RopeSpec` (static, hashable).
* `_hf.py`: each family's `config.json` -> :class:`DecoderConfig` (refuses what it cannot do).
* `_rope.py`: rotary embeddings and HF's scalings.
* `_forward.py`: the model as pure functions, layers under `jaxvene.scan_layers`, taps at
  every site.
* `_params.py`: the params tree and where each leaf comes from in a HF checkpoint.
* `_adapter.py`: the site table (pyvene's components), adapter and layer stack.
* `_model.py`: :class:`NativeDecoder` and :func:`from_pretrained`.
* `_sharding.py`: sharding rules (:func:`sharding_rules`: FSDP and tensor parallel on a 2-D mesh).
"""

from ._adapter import COMPONENTS as COMPONENTS
from ._adapter import DecoderAdapter as DecoderAdapter
from ._adapter import DecoderStack as DecoderStack
from ._config import DecoderConfig as DecoderConfig
from ._config import RopeSpec as RopeSpec
from ._forward import forward as forward
from ._hf import decoder_config as decoder_config
from ._hf import supported_model_types as supported_model_types
from ._model import NativeDecoder as NativeDecoder
from ._model import from_pretrained as from_pretrained
from ._outputs import CausalLMOutput as CausalLMOutput
from ._params import init_params as init_params
from ._params import layout as layout
from ._sharding import sharding_rules as sharding_rules
from ._sharding import tensor_parallel as tensor_parallel
