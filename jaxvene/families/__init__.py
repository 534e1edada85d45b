"""Site tables: pyvene's component names for each HuggingFace model family.

One :class:`Family` per architecture maps components (`block_output`, `mlp_activation`,
`head_query_output`, ...) to where they live inside a layer (:class:`Component`), and may say
how to run the model layer by layer (:class:`LayerStackSpec`). Adding a family means adding a
table and registering it (:func:`register_family`), not touching the engine.
"""

from ._base import FAMILIES as FAMILIES
from ._base import Component as Component
from ._base import Family as Family
from ._base import LayerStackSpec as LayerStackSpec
from ._base import family_for as family_for
from ._base import register_family as register_family
