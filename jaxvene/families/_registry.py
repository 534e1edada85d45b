"""The site tables jaxvene knows, and the lookup from a model's config to its table.

:data:`FAMILIES` holds the built-in tables; :func:`register_family` adds one (e.g. for a model
written for jaxvene); :func:`family_for` picks the first table that serves a config's
`model_type`. Family modules import only `_spec`, never this module.
"""

from __future__ import annotations

from ._spec import Family
from .bert import BERT, ROBERTA
from .bloom import BLOOM
from .gpt2 import GPT2
from .gpt_neo import GPT_NEO
from .gptj import GPTJ
from .llama import LLAMA
from .opt import OPT
from .t5 import T5
from .vit import VIT

__all__ = ["FAMILIES", "register_family", "family_for"]

#: The known site tables, searched in order by :func:`family_for`: GPT-2 and LLaMA, the other
#: decoders, then the encoders and encoder-decoders. :func:`register_family` appends to it.
FAMILIES: tuple[Family, ...] = (GPT2, LLAMA, GPT_NEO, GPTJ, OPT, BLOOM, BERT, ROBERTA, VIT, T5)


def register_family(family: Family) -> None:
    """Add a site table (e.g. for a model written for jaxvene); later lookups find it."""
    global FAMILIES
    if family not in FAMILIES:
        FAMILIES = FAMILIES + (family,)


def family_for(config) -> Family:
    """The first site table in :data:`FAMILIES` (read when called) serving `config.model_type`."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES for t in f.model_types)
    raise NotImplementedError(
        f"jaxvene has no site table for model_type {model_type!r} (it has: {', '.join(known)}). "
        "Address modules by path instead, e.g. component='model.layers[0].mlp.output'."
    )
