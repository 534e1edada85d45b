"""The seams of the engine, written down: what a model adapter provides, the optional
capabilities some models have, and what a tap handler is.

* :class:`ModelAdapter`: every model jaxvene runs is one of these: a pure function
  `apply(params, inputs)` plus its sites. :class:`~jaxvene.HFFlaxAdapter`,
  :class:`~jaxvene.FunctionAdapter` (and :class:`~jaxvene.FlaxModuleAdapter`, Equinox models
  through :func:`~jaxvene.equinox_adapter`) implement it.
* Capabilities, which only some models have:

  - :class:`LayerwiseModel`: runs as embed -> layers -> head, one layer at a time, with the
    layer index as data (sweeps, causal tracing, the patching helpers, attribution patching);
  - :class:`CachedDecoder`: decodes token by token with a key/value cache (`generate`).

  :func:`require` checks a capability before it is used, so that a model without it gets an
  error naming the capability, not an `AttributeError` from deep inside.
* :class:`TapHandler`: what a running model hands its activations to (see
  :mod:`jaxvene.core._hooks`).

These are `typing.Protocol`s: an adapter does not inherit from them, it has the methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import jax

from ._sites import Site

__all__ = ["ModelAdapter", "LayerwiseModel", "CachedDecoder", "TapHandler", "MissingCapability", "require"]


@runtime_checkable
class ModelAdapter(Protocol):
    """A model as a pure function with named sites.

    `params` is the model's params pytree (traced); everything else is static. Inputs are a
    dict (or pytree) of arrays whose leading axis is the batch.
    """

    @property
    def params(self) -> Any:
        """The model's params pytree."""

    def prepare(self, inputs: Any) -> Any:
        """Check a batch of inputs and complete it (attention masks, position ids)."""

    def validate(self, inputs: Any, what: str = "base") -> None:
        """Raise where JAX would silently clamp (token ids past the vocabulary, ...)."""

    def batch_size(self, inputs: Any) -> int:
        """The batch size of prepared inputs."""

    def site(self, component: str, layer: int) -> Site:
        """The site of a component (pyvene's names, or a model-specific path) at a layer."""

    def site_length(self, inputs: Any, site: Site) -> int:
        """The length of `site`'s position axis for these inputs."""

    def tap_shapes(self, taps: Any) -> dict[str, tuple[int, ...]]:
        """The shapes of tap values for a small example batch (an abstract trace)."""

    def overrides(self, taps: Any) -> dict:
        """Module re-implementations needed to report `taps` (see `jaxvene.core.handling`)."""

    def apply(self, params: Any, inputs: Any) -> Any:
        """The forward pass, a pure function of `params` and `inputs`.

        An adapter that can compute the logits at chosen positions only also takes
        `logit_positions` (`(B, K)` ints), e.g. :class:`~jaxvene.HFFlaxAdapter`; the engine
        passes it only when the caller asks for it."""

    def wrap_output(self, outputs: Any) -> Any:
        """What the facade returns to the user for `apply`'s outputs."""


@runtime_checkable
class LayerwiseModel(Protocol):
    """Capability: the model runs layer by layer (see :class:`jaxvene.adapters.LayerStack`)."""

    def layer_stack(self) -> Any:
        """The model's :class:`~jaxvene.adapters.LayerStack`."""


@runtime_checkable
class CachedDecoder(Protocol):
    """Capability: the model decodes with a key/value cache."""

    def init_cache(self, batch: int, length: int) -> Any:
        """An empty cache for `batch` sequences of up to `length` tokens."""

    def decode(
        self, params: Any, cache: Any, input_ids: jax.Array, attention_mask: jax.Array, position_ids: jax.Array
    ) -> tuple[jax.Array, Any]:
        """Run `input_ids` `(B, t)` against `cache`: the last position's logits `(B, V)` and
        the updated cache. `attention_mask` covers the whole cache `(B, length)`."""


class TapHandler(Protocol):
    """Receives tap events while a model runs: `handler(name, value) -> value`.

    A handler may also define `indexed(name, value, index, reads, length, span)` (taps
    inside `jaxvene.scan_layers`, with the traced layer index, in a scan over the layers
    `span = (start, stop)`), `scan_cuts(length)` (where to split
    the scan), `finish_scan(reads, start, stop)` (what the taps of layers `start .. stop-1`
    read, stacked over those layers) and `absorb(reads)` plus a `reads` dict (values read
    inside Flax modules, carried out in the `"jaxvene"` variable collection).
    """

    def __call__(self, name: str, value: jax.Array) -> jax.Array: ...


#: what each capability lets a model do, and what to do without it, for error messages
_DESCRIPTIONS: Mapping[type, tuple[str, str]] = {
    LayerwiseModel: (
        "runs layer by layer (a layer-stack spec in its family's site table)",
        "Run one jaxvene.IntervenableModel per site instead, or give the family a LayerStackSpec (CONTRIBUTING.md).",
    ),
    CachedDecoder: (
        "decodes with a key/value cache",
        "Generation runs on HF Flax causal LMs and jaxvene's native models; for other models, call "
        "the IntervenableModel once per step.",
    ),
}


class MissingCapability(TypeError):
    """A model was asked for a capability it does not have."""


def require(adapter: Any, capability: type, what: str) -> Any:
    """`adapter` if it has `capability` (a protocol of this module); else a clear error.

    An adapter may decline a capability its class has methods for by answering
    `supports(capability) -> False` (a HF model whose family has no layer-stack spec).
    """
    supports = getattr(adapter, "supports", None)
    if isinstance(adapter, capability) and (supports is None or supports(capability)):
        return adapter
    name = getattr(getattr(adapter, "family", None), "name", None) or type(adapter).__name__
    does, instead = _DESCRIPTIONS.get(capability, (capability.__name__, ""))
    raise MissingCapability(
        f"{what} needs a model that {does} ({capability.__name__}); this {name} model does not. {instead}".strip()
    )
