"""Site tables for HuggingFace Flax encoders, encoder-decoders and vision models."""

from __future__ import annotations

from ._families import Component, Family  # noqa: F401

#: Families this module defines; `_families` registers them.
ENCODER_FAMILIES: tuple[Family, ...] = ()
