"""Any JAX model: plain functions with taps, any Flax linen module, Equinox models.

:class:`FunctionAdapter` turns `fn(params, inputs) -> outputs` into a model jaxvene can
intervene on. Its sites are

* the names the function marks with :func:`jaxvene.tap` (e.g. `"hidden"`), and
* for every Flax module it applies, `"<path>.input"`, `"<path>.output"` (the first element of
  a tuple output), `"<path>.output.<k>"` (element k), and `"<path>:<method>.input/.output"` for
  methods other than `__call__`.

:meth:`FunctionAdapter.sites` lists them with their shapes from one abstract trace
(`jax.eval_shape`: no compute). A site's value is `(batch, positions, width)` for unit "pos",
or `(batch, width)`, seen as one position (use position 0 or no locations).

:class:`FlaxModuleAdapter` wraps a linen module and its params; :func:`equinox_adapter` taps
chosen submodules of an `equinox.Module` by surgery (`eqx.tree_at`), since Equinox has no
method interception. Pass any of them to `IntervenableModel` in place of a HF model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core._hooks import flax_apply, handling, tap
from ..core._programs import identity
from ..core._sites import Site, normalise_path

__all__ = ["FunctionAdapter", "FlaxModuleAdapter", "equinox_adapter", "Tapped"]


def _to_array(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return jnp.asarray(x) if isinstance(x, (np.ndarray, jax.Array, list, int, float)) else x


def _signature(inputs) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(inputs)
    return (tree, tuple((tuple(getattr(l, "shape", ())), str(getattr(l, "dtype", type(l)))) for l in leaves))


class FunctionAdapter:
    """`fn(params, inputs) -> outputs` as a model with named sites.

    Args:
      fn: a pure JAX function of `params` and `inputs` (a dict or array pytree whose leaves
        have the batch as their leading axis). It may call `jaxvene.tap(name, x)` and apply
        Flax modules.
      params: its parameters (any pytree; Equinox modules too).
      example_inputs: inputs of the right structure, used to find the sites and their widths.
    """

    family = None

    def __init__(
        self,
        fn: Callable,
        params: Any,
        example_inputs: Any,
        components: Mapping[str, str] | None = None,
        num_layers: int | None = None,
    ):
        self.fn = fn
        self._params = params
        self.example_inputs = self.prepare(example_inputs)
        self._shape_cache: dict = {}
        # optional pyvene-style names: component -> site template with "{layer}"
        self.component_map = dict(components or {})
        self.num_layers = num_layers

    # ------------------------------------------------------------------ model surface
    @property
    def params(self):
        return self._params

    def prepare(self, inputs):
        return jax.tree_util.tree_map(_to_array, inputs)

    def validate(self, inputs, what: str = "base") -> None:
        pass

    def batch_size(self, inputs) -> int:
        leaves = [l for l in jax.tree_util.tree_leaves(inputs) if hasattr(l, "shape") and l.ndim]
        if not leaves:
            raise ValueError("model inputs need at least one array with a batch axis")
        return int(leaves[0].shape[0])

    def apply(self, params, inputs):
        return self.fn(params, inputs)

    def structure_key(self) -> tuple:
        """The function itself (held weakly) and the component names: two adapters of the same
        function share compiled programs, whatever their params (the params' own static
        structure, e.g. an Equinox model's fields, is part of each program's signature)."""
        components = tuple(sorted(self.component_map.items()))
        return (identity(self.fn), components, self.num_layers)

    def wrap_output(self, outputs):
        return outputs

    def overrides(self, taps) -> dict:
        return {}

    # ------------------------------------------------------------------ sites
    def sites(self, inputs=None) -> dict[str, tuple[int, ...]]:
        """Every site of the model and its value's shape for `inputs` (default: the example)."""
        inputs = self.example_inputs if inputs is None else self.prepare(inputs)
        return dict(self._trace(inputs)[0])

    def layers(self, inputs=None) -> dict[str, int]:
        """Sites inside `jaxvene.scan_layers`, with their number of layers."""
        return dict(self._trace(self.example_inputs if inputs is None else self.prepare(inputs))[1])

    def _trace(self, inputs):
        key = _signature(inputs)
        if key not in self._shape_cache:
            seen: dict[str, tuple[int, ...]] = {}
            layered: dict[str, int] = {}

            class Recorder:
                def __call__(self, name, value):
                    if hasattr(value, "shape") and hasattr(value, "dtype"):
                        seen.setdefault(name, tuple(value.shape))
                    return value

                def indexed(self, name, value, index, reads, length, span=None):
                    layered[name] = int(length)
                    return self(name, value)

            def run(params, inputs):
                with handling(Recorder(), None):
                    return self.apply(params, inputs)

            eqx.filter_eval_shape(run, self.params, inputs)
            self._shape_cache[key] = (seen, layered)
        return self._shape_cache[key]

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.sites())

    def tap_shapes(self, taps) -> dict[str, tuple[int, ...]]:
        shapes = self.sites()
        return {t: shapes[t] for t in taps if t in shapes}

    def site(self, component: str, layer: int = 0) -> Site:
        if component in self.component_map:
            if self.num_layers is not None and not 0 <= int(layer) < self.num_layers:
                raise IndexError(
                    f"layer {layer} is out of range for component {component!r}: the model has "
                    f"{self.num_layers} layers (0..{self.num_layers - 1})"
                )
            name = self.component_map[component].format(layer=int(layer))
            return Site(name, component=component, layer=int(layer))
        name = normalise_path(component) if ("[" in component) else component
        shapes = self.sites()
        if name not in shapes:
            named = f"components {', '.join(self.component_map)}, or " if self.component_map else ""
            raise ValueError(f"unknown site {component!r}; this model has {named}sites: {', '.join(sorted(shapes))}")
        if len(shapes[name]) not in (2, 3):
            raise ValueError(
                f"site {component!r} has shape {shapes[name]}; jaxvene intervenes on (batch, width) "
                "or (batch, positions, width) values"
            )
        layered = self.layers()
        if name in layered:
            if not 0 <= int(layer) < layered[name]:
                raise IndexError(
                    f"layer {layer} is out of range for site {component!r}: it is inside a scan over "
                    f"{layered[name]} layers (0..{layered[name] - 1})"
                )
            return Site(name, component=component, layer=int(layer), indexed=True)
        return Site(name, component=component)

    def site_length(self, inputs, site: Site) -> int:
        shape = self.sites(inputs).get(site.tap)
        if shape is None:
            raise ValueError(f"site {site.tap!r} is not reached with these inputs")
        return 1 if len(shape) == 2 else int(shape[1])


class FlaxModuleAdapter(FunctionAdapter):
    """Any Flax linen module: `module.apply(variables, **inputs)` (or `*inputs` for a tuple,
    or the bare array), with every submodule call as a site.

    >>> import flax.linen as nn, jax, jax.numpy as jnp, jaxvene as jv
    >>> mlp = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(2)])
    >>> variables = mlp.init(jax.random.key(0), jnp.ones((1, 8)))
    >>> adapter = jv.FlaxModuleAdapter(mlp, variables, jnp.ones((1, 8)))
    >>> adapter.sites()["layers_0.output"]
    (1, 16)
    """

    def __init__(self, module, variables, example_inputs, method: str | None = None):
        self.module = module
        self.method = method
        variables = dict(variables)
        if "params" not in variables:
            variables = {"params": variables}
        self._extra = {k: v for k, v in variables.items() if k != "params"}

        def fn(params, inputs):
            args, kwargs = (
                ((), inputs)
                if isinstance(inputs, Mapping)
                else ((tuple(inputs), {}) if isinstance(inputs, (tuple, list)) else ((inputs,), {}))
            )
            kw = {} if method is None else {"method": method}
            return flax_apply(module, {"params": params, **self._extra}, *args, **kwargs, **kw)

        super().__init__(fn, variables["params"], example_inputs)


class Tapped(eqx.Module):
    """An Equinox submodule whose input and output are reported as `<name>.input` and
    `<name>.output` (see :func:`equinox_adapter`)."""

    inner: Any
    name: str = eqx.field(static=True)

    def __call__(self, x, *args, **kwargs):
        x = tap(f"{self.name}.input", x)
        out = self.inner(x, *args, **kwargs)
        if isinstance(out, tuple):
            return (tap(f"{self.name}.output", out[0]),) + out[1:]
        return tap(f"{self.name}.output", out)


def equinox_adapter(model: eqx.Module, example_inputs, where: Mapping[str, Callable], call: Callable | None = None):
    """Tap submodules of an Equinox model by surgery and wrap it for jaxvene.

    Args:
      model: an `equinox.Module`.
      example_inputs: inputs for `call`.
      where: site name -> a function selecting the submodule, as for `eqx.tree_at`, e.g.
        `{"layers.0.mlp": lambda m: m.layers[0].mlp}`.
      call: `call(model, inputs) -> outputs`; default `model(inputs)`.

    The returned adapter's params are the tapped model itself (a pytree), so training and
    `jax.grad` see the same arrays. Taps must see the batch axis: tap submodules that are
    called on a batch (Equinox layers applied per example inside `jax.vmap` are not; wrap them
    in a module that vmaps internally, and tap that). A model that runs stacked layers with `lax.scan` can mark
    values inside the scanned function with `jaxvene.tap` instead; see the README.
    """
    names = list(where)
    tapped = eqx.tree_at(lambda m: [where[n](m) for n in names], model, [Tapped(where[n](model), n) for n in names])
    return FunctionAdapter(call or _call_model, tapped, example_inputs)


def _call_model(model, inputs):
    """:func:`equinox_adapter`'s default call (one function for every adapter, so adapters of
    models of the same structure share compiled programs)."""
    return model(inputs)
