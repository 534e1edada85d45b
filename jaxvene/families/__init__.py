"""Site tables: pyvene's component names for each HuggingFace model family.

One :class:`Family` per architecture maps components (`block_output`, `mlp_activation`,
`head_query_output`, ...) to where they live inside a layer (:class:`Component`), and may say
how to run the model layer by layer (:class:`LayerStackSpec`). Adding a family means adding a
table and registering it (:func:`register_family`), not touching the engine.

Files:

* `_spec.py`: :class:`Family`, :class:`Component`, :class:`LayerStackSpec`, the conventions the
  tables share, and helpers several tables use (attention components, unembeddings, ...).
* one module per family, each defining its table(s): `gpt2.py` (:data:`GPT2`), `llama.py`
  (:data:`LLAMA`, also Mistral and Gemma), `gpt_neo.py` (:data:`GPT_NEO`), `gptj.py`
  (:data:`GPTJ`), `opt.py` (:data:`OPT`), `bloom.py` (:data:`BLOOM`), `bert.py` (:data:`BERT`,
  :data:`ROBERTA`), `vit.py` (:data:`VIT`), `t5.py` (:data:`T5`, and the repair of Flax T5 on
  JAX without `jnp.clip(a_max=)`, installed when it is imported). They import only `_spec`.
* `_registry.py`: :data:`FAMILIES` (the built-in tables, in lookup order), :func:`register_family`
  and :func:`family_for`.
"""

from ._registry import FAMILIES as FAMILIES
from ._registry import family_for as family_for
from ._registry import register_family as register_family
from ._spec import Component as Component
from ._spec import Family as Family
from ._spec import LayerStackSpec as LayerStackSpec
from .bert import BERT as BERT
from .bert import ROBERTA as ROBERTA
from .bloom import BLOOM as BLOOM
from .gpt2 import GPT2 as GPT2
from .gpt_neo import GPT_NEO as GPT_NEO
from .gptj import GPTJ as GPTJ
from .llama import LLAMA as LLAMA
from .opt import OPT as OPT
from .t5 import T5 as T5
from .vit import VIT as VIT
