"""Activation patching helpers (TransformerLens-style names) and attribution patching."""

from .analysis._patching import attribution_patching as attribution_patching
from .analysis._patching import logit_diff as logit_diff
from .analysis._patching import patch_attention_output as patch_attention_output
from .analysis._patching import patch_heads as patch_heads
from .analysis._patching import patch_mlp_output as patch_mlp_output
from .analysis._patching import patch_residual as patch_residual
