"""Training interventions (DAS, IIT) with Optax, on one device or many, and pyvene's
`CausalModel` (counterfactual datasets from a causal graph)."""

from ._causal_model import CausalModel as CausalModel
from ._frozen import cache_frozen as cache_frozen
from ._frozen import cached_logits as cached_logits
from ._train import Trainer as Trainer
from ._train import TrainState as TrainState
from ._train import boundary_penalty as boundary_penalty
from ._train import evaluate_iia as evaluate_iia
from ._train import iit_loss as iit_loss
from ._train import make_batch as make_batch
from ._train import make_train_step as make_train_step
from ._train import shard_batch as shard_batch
from ._train import train_interventions as train_interventions
from ._train import trainable_filter as trainable_filter
