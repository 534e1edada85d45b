"""Site tables for more HuggingFace Flax decoder families (GPT-Neo, GPT-J, OPT, BLOOM)."""

from __future__ import annotations

from ._families import Component, Family  # noqa: F401

#: Families this module defines; `_families` registers them.
DECODER_FAMILIES: tuple[Family, ...] = ()
