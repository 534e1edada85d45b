"""From a user's model to an adapter: the one place that knows every kind of model.

:func:`adapt` takes a HuggingFace Flax model (transformers 4.x), one of jaxvene's native
models, or an adapter already, and returns the adapter (made once per model object, so
programs compiled for it are reused). :func:`layer_stack` returns the model's
:class:`~jaxvene.adapters.LayerStack` where it has that capability, and :func:`list_sites`
lists any model's sites.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..core._protocols import LayerwiseModel, ModelAdapter, require
from ._function import FunctionAdapter
from ._hf_flax import HFFlaxAdapter
from ._stack import LayerStack

__all__ = ["adapt", "layer_stack", "list_sites"]

#: where a model keeps its adapter: on the model itself, so that the adapter (which refers to
#: the model) lives exactly as long as the model does (a weak-key dictionary would keep every
#: model alive through its value)
_ATTRIBUTE = "_jaxvene_adapter"


def adapt(model: Any) -> ModelAdapter:
    """The adapter for `model` (a HuggingFace Flax model, a native model, or an adapter)."""
    if isinstance(model, (HFFlaxAdapter, FunctionAdapter)):
        return model
    cached = getattr(model, "__dict__", {}).get(_ATTRIBUTE)
    if cached is not None:
        return cached
    if hasattr(model, "jaxvene_adapter"):  # models that describe their own sites
        adapter = model.jaxvene_adapter()
    elif hasattr(model, "module") and hasattr(model, "params") and hasattr(model, "config"):
        adapter = HFFlaxAdapter(model)
    elif isinstance(model, ModelAdapter):
        return model
    else:
        raise TypeError(
            f"jaxvene cannot wrap a {type(model).__name__}: pass a HuggingFace Flax model "
            "(e.g. transformers.FlaxGPT2LMHeadModel), or wrap your model with jaxvene.FunctionAdapter, "
            "jaxvene.FlaxModuleAdapter or jaxvene.equinox_adapter."
        )
    try:
        object.__setattr__(model, _ATTRIBUTE, adapter)
    except (AttributeError, TypeError):  # no attributes (slots): a new adapter per call
        pass
    return adapter


def layer_stack(model: Any, what: str = "this analysis") -> LayerStack:
    """The :class:`LayerStack` of `model`; an error naming the capability if it has none."""
    return require(adapt(model), LayerwiseModel, what).layer_stack()


def list_sites(model: Any, inputs: Any = None) -> dict[str, tuple[int, ...]]:
    """The sites of `model` (an adapter, or a HF Flax model) with their shapes."""
    adapter: Any = adapt(model)  # any adapter with a `sites` method, not only a ModelAdapter
    if isinstance(adapter, HFFlaxAdapter):
        example = {"input_ids": jnp.zeros((1, 4), jnp.int32)} if inputs is None else adapter.prepare(inputs)
        return FunctionAdapter(adapter.apply, adapter.params, adapter.prepare(example)).sites()
    return adapter.sites(inputs)
