"""Small models that ship with jaxvene, trained by scripts in this package from a seed.

- `load_facts_model()`: a 4-layer GPT-2 (Flax) trained on synthetic facts with multi-token
  subjects, for causal tracing without a model hub (:mod:`jaxvene.pretrained._facts`; rebuilt by
  `python -m jaxvene.pretrained.train_facts`).
- `load_hierarchical_equality_model()`: the MLP of pyvene's DAS tutorial, for DAS
  (rebuilt by `python -m jaxvene.pretrained.train_hierarchical_equality`).
"""

from ._facts import MODEL_DIR as FACTS_MODEL_DIR
from ._facts import encode_prompt as encode_prompt
from ._facts import facts as facts
from ._facts import load_facts_model as load_facts_model
from ._facts import load_facts_tokenizer as load_facts_tokenizer
from ._hierarchical_equality import MODEL_DIR as HIERARCHICAL_EQUALITY_MODEL_DIR
from ._hierarchical_equality import load_hierarchical_equality_model as load_hierarchical_equality_model

__all__ = [
    "FACTS_MODEL_DIR",
    "HIERARCHICAL_EQUALITY_MODEL_DIR",
    "encode_prompt",
    "facts",
    "load_facts_model",
    "load_facts_tokenizer",
    "load_hierarchical_equality_model",
]
