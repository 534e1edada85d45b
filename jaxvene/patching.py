"""Activation patching helpers (TransformerLens-style names) and attribution patching."""

from ._patching import attribution_patching as attribution_patching
from ._patching import logit_diff as logit_diff
from ._patching import patch_attention_output as patch_attention_output
from ._patching import patch_heads as patch_heads
from ._patching import patch_mlp_output as patch_mlp_output
from ._patching import patch_residual as patch_residual
