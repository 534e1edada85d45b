"""A transformer as a stack of identical layers: embed, then layer i for i in a range, then head.

The sweep, causal tracing and patching helpers need what `module.apply` cannot give: start the
forward pass at layer `l` from a cached hidden state (the clean prefix is never recomputed),
loop over layers with the layer index as *data* (one compiled program serves every layer), and
compute the head on a few positions only. :class:`LayerStack` provides that for the HF Flax
families: the layers' params are stacked on a leading axis and one block module is applied
with the i-th slice inside `lax.fori_loop`.

Inside a layer, taps are named relative to the block (`"output"`, `"mlp.output"`,
`"attn.c_attn.output"`), so the same interceptor serves every layer; :meth:`local_site` gives
the block-relative site of a pyvene component.

The embed and head functions here restate a few lines of each HF model (token and position
embeddings, final norm, tied or separate LM head); `tests/test_stack.py` checks that the stack
reproduces `module.apply` exactly.
"""

from __future__ import annotations

import sys
import weakref
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._adapters import HFFlaxAdapter, adapt
from ._hooks import handling
from ._sites import Site

__all__ = ["LayerStack"]


def _hf_class(adapter: HFFlaxAdapter, suffix: str):
    namespace = vars(sys.modules[type(adapter.module).__module__])
    matches = [v for k, v in namespace.items() if k.startswith("Flax") and k.endswith(suffix) and isinstance(v, type)]
    if len(matches) != 1:
        raise NotImplementedError(f"cannot find the {suffix} class of {type(adapter.module).__name__}")
    return matches[0]


class LayerStack:
    """`embed -> layer_0 .. layer_{L-1} -> head` for a HF Flax model of a supported family."""

    _instances: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, model) -> "LayerStack":
        """The stack of `model`, made once per model (so compiled programs are reused)."""
        try:
            return cls._instances[model]
        except (KeyError, TypeError):
            stack = cls(model)
            try:
                cls._instances[model] = stack
            except TypeError:
                pass
            return stack

    def __init__(self, model):
        self.adapter = adapter = adapt(model)
        self.config = adapter.config
        self.num_layers = adapter.num_layers
        family = adapter.family.name
        if family == "gpt2":
            self._block = _hf_class(adapter, "GPT2Block")(self.config, dtype=adapter.module.dtype)
            self._norm = nn.LayerNorm(epsilon=self.config.layer_norm_epsilon, dtype=adapter.module.dtype)
        elif family == "llama":
            self._block = _hf_class(adapter, "DecoderLayer")(self.config, dtype=adapter.module.dtype)
            self._norm = _hf_class(adapter, "RMSNorm")(self.config, dtype=adapter.module.dtype)
        else:  # pragma: no cover - every family in _families has a branch
            raise NotImplementedError(f"no layer stack for family {family}")
        self._family = family
        self._root = adapter.prefix.rstrip(".")

    # ---------------------------------------------------------------- params
    def _base(self, params):
        return params[self._root] if self._root else params

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
        stack = self._base(params)[self.adapter.family.layers]
        layers = [stack[str(i)] for i in range(self.num_layers)]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *layers)

    # ---------------------------------------------------------------- pieces
    def embed(self, params, inputs) -> jax.Array:
        """Hidden states entering layer 0, `(B, T, D)`."""
        base = self._base(params)
        ids = inputs["input_ids"]
        if self._family == "gpt2":
            return base["wte"]["embedding"][ids] + base["wpe"]["embedding"][inputs["position_ids"]]
        h = base["embed_tokens"]["embedding"][ids]
        if self.config.model_type == "gemma":
            h = h * jnp.asarray(self.config.hidden_size**0.5, h.dtype)
        return h

    def embedding_matrix(self, params) -> jax.Array:
        base = self._base(params)
        return base["wte"]["embedding"] if self._family == "gpt2" else base["embed_tokens"]["embedding"]

    def layer(self, layer_params, h, inputs) -> jax.Array:
        """Apply one layer with the given params slice."""
        if self._family == "gpt2":
            out = self._block.apply({"params": layer_params}, h, inputs["attention_mask"], deterministic=True)
        else:
            out = self._block.apply(
                {"params": layer_params}, h, attention_mask=inputs["attention_mask"],
                position_ids=inputs["position_ids"], deterministic=True,
            )
        return out[0]

    def head(self, params, h) -> jax.Array:
        """Final norm and LM head on `h` `(B, K, D)`: logits `(B, K, V)` (or normed states)."""
        base = self._base(params)
        norm_params = base["ln_f"] if self._family == "gpt2" else base["norm"]
        h = self._norm.apply({"params": norm_params}, h)
        if not self._root:  # a bare base model has no LM head
            return h
        tied = getattr(self.config, "tie_word_embeddings", False) and self.config.model_type in ("gpt2", "gemma")
        if tied:
            return h @ self.embedding_matrix(params).T.astype(h.dtype)
        return h @ params["lm_head"]["kernel"].astype(h.dtype)

    # ---------------------------------------------------------------- sites
    def local_site(self, component: str) -> Site:
        """The site of a pyvene component, with taps named relative to a block."""
        spec = self.adapter.family.components.get(component)
        if spec is None:
            raise ValueError(
                f"unknown component {component!r}; valid components: {', '.join(self.adapter.components)}"
            )
        tap = f"{spec.path}.{spec.io}" if spec.path else spec.io
        heads = None if spec.heads is None else int(self.adapter.head_counts[spec.heads])
        return Site(tap, spec.part, heads, component)

    def overrides(self, taps) -> dict:
        """Block-relative module overrides that report `taps` (LLaMA's MLP activation)."""
        return {
            rel: override
            for rel, (override, suffixes) in self.adapter.family.overrides.items()
            if any(f"{rel}.{s}" in taps for s in suffixes)
        }

    # ---------------------------------------------------------------- running
    def run_layers(
        self,
        stacked,
        h,
        inputs,
        start,
        stop=None,
        handler: Optional[Callable] = None,
        taps=(),
    ):
        """Layers `start .. stop-1` (`start` may be traced) on `h`.

        `handler(layer_index, tap_name, value) -> value` sees the block-relative `taps` of every
        layer, with the layer index as a traced scalar.
        """
        stop = self.num_layers if stop is None else stop
        taps = frozenset(taps)
        overrides = self.overrides(taps)

        def body(i, h):
            p = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), stacked)
            if handler is None:
                return self.layer(p, h, inputs)
            with handling(lambda name, value: handler(i, name, value), taps, overrides):
                return self.layer(p, h, inputs)

        return jax.lax.fori_loop(start, stop, body, h)

    def scan(self, params, inputs, h0=None, site=None, edit=None, record=False):
        """All layers in one `lax.scan`: returns `(hidden, views)`.

        `hidden` is every layer's input and the last layer's output, `(L + 1, B, T, D)`. With a
        block-relative `site`, `edit(layer, view) -> view` may change the site's view in every
        layer, and `record=True` returns the (edited) views stacked, `(L, ...)`.
        """
        h0 = self.embed(params, inputs) if h0 is None else h0
        taps = frozenset() if site is None else frozenset({site.tap})
        overrides = self.overrides(taps)

        def body(h, xs):
            i, p = xs
            seen = {}

            def handler(name, value):
                if name != site.tap:
                    return value
                view = site.view(value)
                if edit is not None:
                    view = edit(i, view)
                    value = site.unview(value, view)
                seen["view"] = view
                return value

            with handling(handler, taps, overrides):
                out = self.layer(p, h, inputs)
            return out, (h, seen.get("view") if record else None)

        last, (hs, views) = jax.lax.scan(body, h0, (jnp.arange(self.num_layers), self.layer_params(params)))
        return jnp.concatenate([hs, last[None]], axis=0), views

    def logits(self, params, inputs) -> jax.Array:
        """The full forward pass through the stack (equal to `module.apply`'s logits)."""
        inputs = self.adapter.prepare(inputs) if "position_ids" not in inputs else inputs
        h = self.run_layers(self.layer_params(params), self.embed(params, inputs), inputs, 0)
        return self.head(params, h)
