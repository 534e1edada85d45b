"""Interventions: pure functions from (base, source) activations to new base activations.

- basic (:mod:`._basic`): the base class and pyvene's localist interventions (Vanilla,
  Addition, Subtraction, Zero, Collect, Skip, Noise, Lambda), and the `swap` primitive;
- rotations (:mod:`._rotations`): distributed interventions in a rotated basis (DAS: Rotated, LowRank,
  Boundless, SigmoidMaskRotated, PCA);
- masks and autoencoders (:mod:`._masks`): SigmoidMask, Autoencoder, JumpReLUAutoencoder.

Every name is also at the top level (`jaxvene.VanillaIntervention`, ...), as in pyvene.
"""

from ._basic import AdditionIntervention as AdditionIntervention
from ._basic import BasisAgnosticIntervention as BasisAgnosticIntervention
from ._basic import CollectIntervention as CollectIntervention
from ._basic import ConstantSourceIntervention as ConstantSourceIntervention
from ._basic import DistributedRepresentationIntervention as DistributedRepresentationIntervention
from ._basic import Intervention as Intervention
from ._basic import InterventionOutput as InterventionOutput
from ._basic import LambdaIntervention as LambdaIntervention
from ._basic import LocalistRepresentationIntervention as LocalistRepresentationIntervention
from ._basic import NoiseIntervention as NoiseIntervention
from ._basic import SkipIntervention as SkipIntervention
from ._basic import SourcelessIntervention as SourcelessIntervention
from ._basic import SubtractionIntervention as SubtractionIntervention
from ._basic import TrainableIntervention as TrainableIntervention
from ._basic import VanillaIntervention as VanillaIntervention
from ._basic import ZeroIntervention as ZeroIntervention
from ._basic import subspace_mask as subspace_mask
from ._basic import swap as swap
from ._masks import AutoencoderIntervention as AutoencoderIntervention
from ._masks import JumpReLUAutoencoderIntervention as JumpReLUAutoencoderIntervention
from ._masks import SigmoidMaskIntervention as SigmoidMaskIntervention
from ._rotations import BoundlessRotatedSpaceIntervention as BoundlessRotatedSpaceIntervention
from ._rotations import LowRankRotatedSpaceIntervention as LowRankRotatedSpaceIntervention
from ._rotations import PCARotatedSpaceIntervention as PCARotatedSpaceIntervention
from ._rotations import RotatedSpaceIntervention as RotatedSpaceIntervention
from ._rotations import SigmoidMaskRotatedSpaceIntervention as SigmoidMaskRotatedSpaceIntervention
