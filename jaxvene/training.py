"""Training interventions (DAS, IIT) with Optax, on one device or many."""

from ._training import Trainer as Trainer
from ._training import TrainState as TrainState
from ._training import boundary_penalty as boundary_penalty
from ._training import evaluate_iia as evaluate_iia
from ._training import iit_loss as iit_loss
from ._training import make_batch as make_batch
from ._training import make_train_step as make_train_step
from ._training import shard_batch as shard_batch
from ._training import train_interventions as train_interventions
from ._training import trainable_filter as trainable_filter
