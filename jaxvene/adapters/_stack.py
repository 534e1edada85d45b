"""A transformer as a stack of identical layers: embed, then layer i for i in a range, then head.

The sweep, causal tracing and patching helpers need what `module.apply` cannot give: start the
forward pass at layer `l` from a cached hidden state (the clean prefix is never recomputed),
loop over layers with the layer index as *data* (one compiled program serves every layer), and
compute the head on a few positions only. :class:`LayerStack` provides that for every family
whose site table has a :class:`~jaxvene.families.LayerStackSpec`: the layers' params are
stacked on a leading axis and one layer module is applied with the i-th slice inside
`lax.fori_loop` / `lax.scan`.

The spec says, per family, how to embed, how to call one layer and what the final norm is,
in terms of the model's own (bound) modules, so the stack runs HF's code, not a restatement;
the unembedding is the family's `unembed`. `tests/test_stack.py` checks that the stack
reproduces `module.apply` exactly.

Inside a layer, taps are named relative to the layer (`"output"`, `"mlp.output"`,
`"attn.c_attn.output"`), so the same interceptor serves every layer; :meth:`local_site` gives
the layer-relative site of a pyvene component.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..core._flax_params import check_params, unchecked_param_shapes
from ..core._hooks import handling
from ..core._sites import Site
from ..families._spec import _lookup

__all__ = ["LayerStack"]


class LayerStack:
    """`embed -> layer_0 .. layer_{L-1} -> head` for a model whose family has a layer stack spec."""

    def __init__(self, adapter):
        """`adapter`: a :class:`~jaxvene.HFFlaxAdapter` whose family has a layer-stack spec
        (made by `adapter.layer_stack()`; :func:`jaxvene.adapters.layer_stack` takes a model)."""
        if adapter.family.layer_stack is None:
            raise NotImplementedError(f"the {adapter.family.name} site table has no layer_stack spec")
        self.adapter = adapter
        self.config = adapter.config
        self.num_layers = adapter.num_layers
        self.spec = adapter.family.layer_stack
        self._root = adapter.prefix.rstrip(".")
        # Layers differ only in their params, except where the family has several kinds of layer
        # (GPT-Neo's global and local attention: the kind decides the attention mask, a Python
        # constant baked into the module). One module per kind, and `_kind_of[i]` the kind of
        # layer i; with more than one kind, a layer runs `lax.switch` on its (traced) index.
        keys = list(self.spec.kinds(self.config)) if self.spec.kinds else [None] * self.num_layers
        distinct = list(dict.fromkeys(keys))
        self._kind_of = np.asarray([distinct.index(k) for k in keys], np.int32)
        firsts = [keys.index(k) for k in distinct]
        # The model's own layer modules, unbound (`clone(parent=None)`): applied on their own,
        # their taps are named relative to the layer.
        self._modules = self._on_base(
            adapter.params, lambda base: [self.spec.layer(base, i).clone(parent=None) for i in firsts]
        )

    # ---------------------------------------------------------------- params
    def _base(self, params):
        return params[self._root] if self._root else params

    def _on_base(self, params, fn, *args):
        """`fn(base, *args)` with the base model's modules bound to `params` (checked against
        the model's own: Flax's per-param check is skipped, see `jaxvene.core._flax_params`)."""

        def method(module, *args):
            return fn(getattr(module, self._root) if self._root else module, *args)

        check_params(params, self.adapter.params)
        with unchecked_param_shapes():
            return self.adapter.module.apply({"params": params}, *args, method=method)

    def layer_params(self, params):
        """The layers' params stacked on a leading axis of length `num_layers` (cached for the
        last params object seen)."""
        cached = getattr(self, "_stacked", None)
        if cached is not None and cached[0] is params:
            return cached[1]
        stacked = self._stack_params(params)
        if not isinstance(jax.tree_util.tree_leaves(stacked)[0], jax.core.Tracer):
            self._stacked = (params, stacked)
        return stacked

    def _stack_params(self, params):
        check_params(params, self.adapter.params)
        stack = _lookup(self._base(params), self.adapter.family.layers)
        layers = [stack[str(i)] for i in range(self.num_layers)]
        return _stack_layers(layers)

    # ---------------------------------------------------------------- pieces
    def embed(self, params, inputs) -> jax.Array:
        """Hidden states entering layer 0, `(B, T, D)`."""
        return self._on_base(params, self.spec.embed, inputs)

    def embedding_matrix(self, params) -> jax.Array:
        """The token embedding table, `(V, D_embedding)`."""
        return _lookup(self._base(params), self.spec.embedding)["embedding"]

    @property
    def embedding_scale(self) -> float:
        """What the hidden state entering layer 0 scales the embedding table by (Gemma: sqrt(D))."""
        return float(self.config.hidden_size**0.5) if getattr(self.config, "model_type", None) == "gemma" else 1.0

    def layer(self, layer_params, h, inputs, index=0) -> jax.Array:
        """Apply layer `index` (may be traced; it only picks the layer's kind) with the given
        params slice."""
        return self._run_layer(index, layer_params, h, inputs)[0]

    def _run_layer(self, i, layer_params, h, inputs, handler=None, taps=frozenset(), record=False, cache=None):
        """Layer `i` on `h`: `(output, reads, new cache or None)`.

        `handler(i, name, value) -> value` sees the layer-relative `taps`; with `record`,
        `reads` maps each tap seen to its (possibly replaced) value, else it is `{}`. Taps are
        read through return values, not side effects, so that they may leave `lax.switch`.
        `cache` is the layer's own `"cache"` collection (HF's decoding cache: `cached_key`,
        `cached_value`, `cache_index`): `h` is written at its index and attends to it.
        """
        overrides = self.overrides(taps)

        def branch(module):
            def call(layer_params, h, cache):
                # a slice of the stacked params, whose tree layer_params checked
                with unchecked_param_shapes():
                    if cache is None:
                        return module.apply({"params": layer_params}, h, inputs, method=self.spec.call), None
                    out, variables = module.apply(
                        {"params": layer_params, "cache": cache}, h, inputs, method=self.spec.call, mutable=["cache"]
                    )
                return out, variables["cache"]

            def run(layer_params, h, cache):
                reads = {}

                def on_tap(name, value):
                    if handler is not None:
                        value = handler(i, name, value)
                    if record:
                        reads[name] = value
                    return value

                if not taps:
                    out, new_cache = call(layer_params, h, cache)
                    return out, reads, new_cache
                with handling(on_tap, taps, overrides):
                    out, new_cache = call(layer_params, h, cache)
                return out, reads, new_cache

            return run

        if len(self._modules) == 1 or isinstance(i, (int, np.integer)):
            return branch(self._modules[self._kind_of[i] if len(self._modules) > 1 else 0])(layer_params, h, cache)
        kind = jnp.asarray(self._kind_of)[i]
        return jax.lax.switch(kind, [branch(m) for m in self._modules], layer_params, h, cache)

    def head(self, params, h) -> jax.Array:
        """Final norm and LM head on `h` `(B, K, D)`: logits `(B, K, V)` (or, for a base model
        without an LM head, its last hidden states)."""
        h = self._on_base(params, self.spec.final, h)
        if not self._root:  # a bare base model has no LM head
            return h
        unembed = self.adapter.family.unembed
        if unembed is None:  # pragma: no cover - every family with a spec has one
            raise NotImplementedError(f"the {self.adapter.family.name} table has no unembed")
        return unembed(params, h, self.config)

    # ---------------------------------------------------------------- sites
    def local_site(self, component: str) -> Site:
        """The site of a pyvene component, with taps named relative to a block."""
        spec = self.adapter.family.components.get(component)
        if spec is None:
            raise ValueError(f"unknown component {component!r}; valid components: {', '.join(self.adapter.components)}")
        tap = f"{spec.path}.{spec.io}" if spec.path else spec.io
        heads = None if spec.heads is None else int(self.adapter.head_counts[spec.heads])
        return Site(tap, spec.part, heads, component)

    def overrides(self, taps) -> dict:
        """Layer-relative module overrides that report `taps` (LLaMA's MLP activation; key ""
        overrides the layer itself, as OPT's does to expose its inline MLP)."""
        return {
            rel: override
            for rel, (override, suffixes) in self.adapter.family.overrides.items()
            if any(".".join(p for p in (rel, s) if p) in taps for s in suffixes)
        }

    # ---------------------------------------------------------------- running
    def run_layers(
        self,
        stacked,
        h,
        inputs,
        start,
        stop=None,
        handler: Callable | None = None,
        taps=(),
    ):
        """Layers `start .. stop-1` (`start` may be traced) on `h`.

        `handler(layer_index, tap_name, value) -> value` sees the layer-relative `taps` of every
        layer, with the layer index as a traced scalar; it must be pure (its side effects would
        not leave the loop).
        """
        stop = self.num_layers if stop is None else stop
        taps = frozenset(taps) if handler is not None else frozenset()

        def body(i, h):
            p = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), stacked)
            return self._run_layer(i, p, h, inputs, handler, taps)[0]

        return jax.lax.fori_loop(start, stop, body, h)

    def scan(self, params, inputs, h0=None, site=None, edit=None, record=False):
        """All layers in one `lax.scan`: returns `(hidden, values)`.

        `hidden` is every layer's input and the last layer's output, `(L + 1, B, T, D)`. With a
        layer-relative `site`, `edit(layer, value) -> value` may change the site's tap value in
        every layer, and `record=True` returns the (edited) tap values stacked, `(L, ...)`
        (`site.view` and :func:`jaxvene.core.read` select from them).
        """
        h0 = self.embed(params, inputs) if h0 is None else h0
        taps = frozenset() if site is None else frozenset({site.tap})

        def handler(i, name, value):
            if edit is None or name != site.tap:
                return value
            return edit(i, value)

        def body(h, xs):
            i, p = xs
            out, reads, _ = self._run_layer(i, p, h, inputs, handler, taps, record=record and site is not None)
            if not record or site is None:
                return out, (h, None)
            if site.tap not in reads:
                raise ValueError(f"the layer never reports {site.tap!r} ({site.component})")
            return out, (h, reads[site.tap])

        last, (hs, values) = jax.lax.scan(body, h0, (jnp.arange(self.num_layers), self.layer_params(params)))
        return jnp.concatenate([hs, last[None]], axis=0), values

    # ---------------------------------------------------------------- causal suffixes
    @property
    def causal(self) -> bool:
        """Whether a patch at position p leaves every position before p as in the clean run,
        and the family's layers can attend to a cache (:meth:`run_suffix`)."""
        return self.spec.causal_cache

    def _empty_cache(self, params, inputs, h):
        """Zeros shaped like one layer's decoding cache for `h`'s length (HF allocates it on a
        call with `init_cache=True`; its shape is read from one abstract trace)."""
        p = jax.tree_util.tree_map(lambda x: x[0], self.layer_params(params))

        def shapes(p, h):
            call = lambda layer, h, inputs: self.spec.call(layer, h, inputs, init_cache=True)
            return self._modules[0].apply({"params": p}, h, inputs, method=call, mutable=["cache"])[1]["cache"]

        return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(shapes, p, h))

    def scan_kv(self, params, inputs, h0=None):
        """The clean run with its keys and values: `(hidden (L + 1, B, T, D), kv)`, `kv` being
        every layer's decoding cache stacked on a leading axis."""
        if not self.causal:
            raise NotImplementedError(f"the {self.adapter.family.name} layer stack has no causal cache")
        h0 = self.embed(params, inputs) if h0 is None else h0
        empty = self._empty_cache(params, inputs, h0)

        def body(h, xs):
            i, p = xs
            out, _, kv = self._run_layer(i, p, h, inputs, cache=empty)
            return out, (h, kv)

        last, (hs, kv) = jax.lax.scan(body, h0, (jnp.arange(self.num_layers), self.layer_params(params)))
        return jnp.concatenate([hs, last[None]], axis=0), kv

    def run_suffix(
        self, stacked, h, inputs, kv, start: int, first, handler: Callable | None = None, taps=(), kv_from: int = 0
    ):
        """Layers `first .. L-1` (`first` may be traced) on positions `start ..` only.

        `h` `(B, T - start, D)` is the hidden state entering layer `first` at those positions;
        they attend to the clean run's cached keys and values `kv` (:meth:`scan_kv`) before
        `start` and to their own from `start` on (HF's decoding path, with the cache index at
        `start`; `kv` may hold the layers from `kv_from` on only). Exact when nothing before
        `start` differs from the clean run.
        """
        taps = frozenset(taps) if handler is not None else frozenset()
        suffix = dict(inputs)
        if "position_ids" in suffix:
            suffix["position_ids"] = suffix["position_ids"][:, start:]

        def at_start(c):
            return jax.tree_util.tree_map_with_path(
                lambda path, x: jnp.full_like(x, start) if _key(path) == "cache_index" else x, c
            )

        def body(i, h):
            p = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), stacked)
            c = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i - kv_from, keepdims=False), kv)
            return self._run_layer(i, p, h, suffix, handler, taps, cache=at_start(c))[0]

        return jax.lax.fori_loop(first, self.num_layers, body, h)

    def logits(self, params, inputs) -> jax.Array:
        """The full forward pass through the stack (equal to `module.apply`'s logits)."""
        if any(k not in inputs for k in ("attention_mask", "position_ids") if k in self.adapter.family.inputs):
            inputs = self.adapter.prepare(inputs)
        h = self.run_layers(self.layer_params(params), self.embed(params, inputs), inputs, 0)
        return self.head(params, h)


@jax.jit
def _stack_layers(layers):
    """The layers' param trees stacked leaf by leaf: one compiled program for the whole tree,
    not one eager `stack` per leaf shape (inlined when traced)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *layers)


def _key(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", last))
