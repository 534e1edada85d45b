"""Analyses built on the engine, each one compiled program: sweeps over sites, causal tracing
(ROME), activation patching helpers and attribution patching; heatmaps of their tables.

`jaxvene.sweep`, `jaxvene.causal_trace`, `jaxvene.patching.*` and
`jaxvene.analysis.plot_grid` are the public names.
"""

from ._patching import LogitDiff as LogitDiff
from ._patching import attribution_patching as attribution_patching
from ._patching import logit_diff as logit_diff
from ._plotting import plot_grid as plot_grid
from ._plotting import save_figure as save_figure
from ._sweep import sweep as sweep
from ._tracing import CausalTrace as CausalTrace
from ._tracing import causal_trace as causal_trace
