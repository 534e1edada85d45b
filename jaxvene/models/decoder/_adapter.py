"""How jaxvene drives a native decoder: its site table, adapter and layer stack.

:data:`COMPONENTS` is the site table: pyvene's component names -> the layer-relative tap and
its view. :class:`DecoderAdapter` is the model as a pure function with sites
(:class:`~jaxvene.core.ModelAdapter`), which also runs layer by layer
(:class:`~jaxvene.core.LayerwiseModel`: :class:`DecoderStack`, for sweeps, causal tracing and
the patching helpers) and decodes with a KV cache (:class:`~jaxvene.core.CachedDecoder`).

Taps live inside the scanned layer, so a site is the tap plus the layer index
(`Site(indexed=True)`): the scan applies an intervention only at its layer's iteration.
pyvene-style module paths work too: `model.layers[3].mlp.output` is the tap `mlp.output` at
layer 3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..._hosts import local_values
from ...core._hooks import handling
from ...core._positions import position_ids_from_mask
from ...core._sites import Site, normalise_path
from ...families._spec import Component
from ._config import DecoderConfig
from ._forward import LAYER_TAPS, attention_context, embed, final, forward, layer_meta, unembed
from ._forward import layer as decoder_layer
from ._outputs import CausalLMOutput

__all__ = ["COMPONENTS", "DecoderAdapter", "DecoderStack"]

_A = "self_attn."
#: pyvene's components -> where they live in a native decoder layer
COMPONENTS: dict[str, Component] = {
    "block_input": Component("", "input"),
    "block_output": Component("", "output"),
    "mlp_input": Component("mlp", "input"),
    "mlp_activation": Component("mlp.act_fn", "output"),
    "mlp_output": Component("mlp", "output"),
    "attention_input": Component("self_attn", "input"),
    "attention_output": Component("self_attn", "output"),
    "attention_value_output": Component(_A + "o_proj", "input"),
    "head_attention_value_output": Component(_A + "o_proj", "input", heads="query"),
    "query_output": Component(_A + "q_proj", "output"),
    "key_output": Component(_A + "k_proj", "output"),
    "value_output": Component(_A + "v_proj", "output"),
    "head_query_output": Component(_A + "q_proj", "output", heads="query"),
    "head_key_output": Component(_A + "k_proj", "output", heads="kv"),
    "head_value_output": Component(_A + "v_proj", "output", heads="kv"),
    # the attention probabilities: unit h.pos = (head, query position), each a row over the keys
    "attention_weight": Component(_A + "softmax", "output", heads="query"),
}


def _tap(spec: Component) -> str:
    return f"{spec.path}.{spec.io}" if spec.path else spec.io


@dataclass(frozen=True)
class _Family:
    """What messages and capability checks read of a family."""

    name: str


class DecoderAdapter:
    """A native decoder as a pure function with sites (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.config: DecoderConfig = model.config
        self.family = _Family(self.config.model_type)
        self.num_layers = self.config.num_hidden_layers
        self.vocab_size = self.config.vocab_size
        self.head_counts = {"query": self.config.num_attention_heads, "kv": self.config.num_key_value_heads}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._stack: DecoderStack | None = None

    @property
    def params(self):
        return self.model.params

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(COMPONENTS)

    def structure_key(self) -> tuple:
        """What `apply` computes, without the weights: the (hashable) config, whether layers
        are rematerialised and how the batch is sharded. Models that differ only in their
        params share compiled programs."""
        return (self.config, bool(self.model.remat), getattr(self.model, "batch_sharding", None))

    # ------------------------------------------------------------------ sites
    def site(self, component: str, layer: int = 0) -> Site:
        if component in COMPONENTS:
            spec = COMPONENTS[component]
            self._check_layer(layer, component)
            heads = None if spec.heads is None else self.head_counts[spec.heads]
            return Site(_tap(spec), None, heads, component, int(layer), indexed=True)
        if component.endswith((".input", ".output")):
            path = normalise_path(component)
            m = re.fullmatch(r"(?:model\.)?layers\.(\d+)\.(.+)", path)
            if m and m.group(2) in LAYER_TAPS:
                self._check_layer(int(m.group(1)), component)
                return Site(m.group(2), component=component, layer=int(m.group(1)), indexed=True)
            outside = {"model.embed_tokens.output": "embed_tokens.output", "model.norm.output": "norm.output"}
            if path in outside or path in outside.values():
                return Site(outside.get(path, path), component=component)
            raise ValueError(
                f"module path {component!r} does not name a site of this {self.config.model_type} model. "
                f"Inside a layer: model.layers[<i>].<tap> with <tap> one of {', '.join(LAYER_TAPS)}; "
                "outside: model.embed_tokens.output, model.norm.output."
            )
        raise ValueError(
            f"unknown component {component!r} for the native {self.config.model_type} decoder. Valid components: "
            f"{', '.join(COMPONENTS)}; or a module path such as 'model.layers[0].mlp.output'."
        )

    def _check_layer(self, layer, component):
        if not 0 <= int(layer) < self.num_layers:
            raise IndexError(
                f"layer {layer} is out of range for component {component!r}: this {self.config.model_type} "
                f"model has {self.num_layers} layers (0..{self.num_layers - 1})."
            )

    def overrides(self, taps) -> dict:
        return {}

    def tap_shapes(self, taps) -> dict[str, tuple[int, ...]]:
        """Shapes of tap values for a `(1, 4)` input, from one abstract trace."""
        missing = [t for t in taps if t not in self._shapes]
        if missing:
            seen: dict[str, tuple[int, ...]] = {}

            def record(name, value):
                seen.setdefault(name, tuple(value.shape))
                return value

            def run(params):
                with handling(record, ()):
                    return self.apply(params, self.prepare({"input_ids": jnp.zeros((1, 4), jnp.int32)}))

            jax.eval_shape(run, self.params)
            # the attention probabilities' width per head is the key length, which depends on the
            # input: give it as the longest, as pyvene sizes attention_weight (max_position_embeddings)
            probs = _tap(COMPONENTS["attention_weight"])
            if probs in seen:
                longest = int(self.config.max_position_embeddings or seen[probs][-1] // self.config.num_attention_heads)
                seen[probs] = (*seen[probs][:-1], self.config.num_attention_heads * longest)
            self._shapes.update(seen)
        return {t: self._shapes[t] for t in taps if t in self._shapes}

    def site_length(self, inputs: Mapping, site: Site) -> int:
        return int(inputs["input_ids"].shape[1])

    # ------------------------------------------------------------------ inputs
    def prepare(self, inputs: Mapping) -> dict:
        """Check a batch and complete it with an attention mask and position ids."""
        if not isinstance(inputs, Mapping):
            raise TypeError(f"model inputs must be a dict like {{'input_ids': ...}}, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - {"input_ids", "attention_mask", "position_ids"})
        if unknown:
            raise ValueError(
                f"unsupported model inputs {unknown}; this model takes input_ids, attention_mask, position_ids."
            )
        if inputs.get("input_ids") is None:
            raise ValueError("model inputs need 'input_ids'")
        out = {k: _to_array(v) for k, v in inputs.items() if v is not None}
        ids = out["input_ids"]
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(ids.shape)}")
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"input_ids must be integers (token ids), got dtype {ids.dtype}")
        out["input_ids"] = ids.astype(jnp.int32)
        for name in ("attention_mask", "position_ids"):
            if name in out and tuple(out[name].shape) != tuple(ids.shape):
                raise ValueError(f"{name} has shape {tuple(out[name].shape)} but input_ids {tuple(ids.shape)}")
        mask = out.get("attention_mask")
        out["attention_mask"] = jnp.ones(ids.shape, jnp.int32) if mask is None else mask.astype(jnp.int32)
        if "position_ids" not in out:
            out["position_ids"] = position_ids_from_mask(out["attention_mask"])
        out["position_ids"] = out["position_ids"].astype(jnp.int32)
        return out

    def validate(self, inputs: Mapping, what: str = "base") -> None:
        """Token ids past the vocabulary would be clamped inside jit: refuse them here."""
        ids = inputs.get("input_ids")
        if ids is None or isinstance(ids, jax.core.Tracer):
            return
        ids = local_values(ids)  # a batch spread over several processes: this process's share
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids.max()) if ids.max() >= self.vocab_size else int(ids.min())
            raise ValueError(
                f"{what} input_ids contain token id {bad}, outside the vocabulary of {self.vocab_size} tokens "
                f"(valid ids are 0..{self.vocab_size - 1})."
            )

    def batch_size(self, inputs: Mapping) -> int:
        return int(inputs["input_ids"].shape[0])

    # ------------------------------------------------------------------ running
    def apply(self, params, inputs: Mapping, logit_positions=None) -> dict:
        if "attention_mask" not in inputs or "position_ids" not in inputs:
            inputs = self.prepare(inputs)
        out = forward(
            self.config,
            params,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["position_ids"],
            logit_positions=logit_positions,
            remat=self.model.remat,
            batch_sharding=self.model.batch_sharding,
        )
        return {"logits": out["logits"]}

    def wrap_output(self, fields: dict):
        return CausalLMOutput(**fields)

    # ------------------------------------------------------------------ capabilities
    def supports(self, capability: type) -> bool:
        return True

    def layer_stack(self) -> DecoderStack:
        if self._stack is None:
            self._stack = DecoderStack(self)
        return self._stack

    def init_cache(self, batch: int, length: int) -> dict:
        return self.model.init_cache(batch, length)

    def check_generation(self, prompt_length: int, total: int) -> None:
        """Refuse a generation the KV cache cannot do as HF does: LongRoPE switches to its long
        factors once the sequence passes `original_max_position_embeddings`, and HF then
        re-encodes the whole sequence; cached keys would keep the short factors."""
        rope = self.config.rope
        if rope.kind != "longrope":
            return
        window = rope.get("original_max_position_embeddings") or rope.get("max_position_embeddings")
        if prompt_length <= window < total:
            raise NotImplementedError(
                f"generating from a {prompt_length}-token prompt to {total} tokens crosses LongRoPE's switch at "
                f"original_max_position_embeddings={window}: the cached keys would keep the short factors "
                "(HF re-encodes the sequence there). Generate at most up to that length, or start from a prompt "
                "longer than it."
            )

    def decode(self, params, cache, input_ids, attention_mask, position_ids):
        """`input_ids` against `cache`: the last position's logits `(B, V)` and the new cache."""
        out = forward(self.config, params, input_ids, attention_mask, position_ids, cache=cache)
        return out["logits"][:, -1], out["cache"]


class DecoderStack:
    """A native decoder as embed -> layers -> head, with the layer index as data (the interface
    of :class:`jaxvene.adapters.LayerStack`, which sweeps and tracing use)."""

    def __init__(self, adapter: DecoderAdapter):
        self.adapter = adapter
        self.config = adapter.config
        self.num_layers = adapter.num_layers
        self._meta = layer_meta(self.config)

    @property
    def embedding_scale(self) -> float:
        """What the hidden state entering layer 0 scales the embedding table by (Gemma's sqrt(D))."""
        return float(self.config.hidden_size**0.5) if self.config.embed_scale else 1.0

    def embed(self, params, inputs):
        return embed(self.config, params, inputs["input_ids"])

    def embedding_matrix(self, params):
        return params["embed_tokens"]["embedding"]

    def layer_params(self, params):
        return params["layers"]

    def local_site(self, component: str) -> Site:
        spec = COMPONENTS.get(component)
        if spec is None:
            raise ValueError(f"unknown component {component!r}; valid components: {', '.join(COMPONENTS)}")
        heads = None if spec.heads is None else self.adapter.head_counts[spec.heads]
        return Site(_tap(spec), None, heads, component)

    def overrides(self, taps) -> dict:
        return {}

    def head(self, params, h):
        return unembed(self.config, params, final(self.config, params, h))

    def _window(self, i):
        return None if self._meta is None else self._meta[i]

    def _layer(self, i, p, h, ctx, handler=None, taps=frozenset(), record=False, cache=None):
        """Layer `i` on `h`: `(output, reads, new cache slice or None)`; with `cache` (this
        layer's `{"key", "value": (B, S, KV, Dh)}`), `h` is written at `ctx["start"]`."""
        reads = {}

        def on_tap(name, value):
            if handler is not None:
                value = handler(i, name, value)
            if record:
                reads[name] = value
            return value

        if not taps:
            out, new_cache = decoder_layer(self.config, p, h, ctx, self._window(i), cache)
            return out, reads, new_cache
        with handling(on_tap, ()):
            out, new_cache = decoder_layer(self.config, p, h, ctx, self._window(i), cache)
        return out, reads, new_cache

    def _ctx(self, inputs):
        return attention_context(self.config, inputs["attention_mask"], inputs["position_ids"])

    def layer(self, layer_params, h, inputs, index=0):
        return self._layer(index, layer_params, h, self._ctx(inputs))[0]

    def run_layers(self, stacked, h, inputs, start, stop=None, handler=None, taps=()):
        """Layers `start .. stop-1` (`start` may be traced); `handler(i, tap, value)` sees `taps`."""
        stop = self.num_layers if stop is None else stop
        taps = frozenset(taps) if handler is not None else frozenset()
        ctx = self._ctx(inputs)

        def body(i, h):
            p = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), stacked)
            return self._layer(i, p, h, ctx, handler, taps)[0]

        return jax.lax.fori_loop(start, stop, body, h)

    def scan(self, params, inputs, h0=None, site=None, edit=None, record=False):
        """All layers in one scan: `(hidden (L + 1, B, T, D), the site's tap per layer or None)`."""
        h0 = self.embed(params, inputs) if h0 is None else h0
        taps = frozenset() if site is None else frozenset({site.tap})
        ctx = self._ctx(inputs)

        def handler(i, name, value):
            return value if edit is None or name != site.tap else edit(i, value)

        def body(h, xs):
            i, p = xs
            out, reads, _ = self._layer(i, p, h, ctx, handler, taps, record=record and site is not None)
            return out, (h, reads.get(site.tap) if (record and site is not None) else None)

        last, (hs, values) = jax.lax.scan(body, h0, (jnp.arange(self.num_layers), params["layers"]))
        return jnp.concatenate([hs, last[None]], axis=0), values

    # ---------------------------------------------------------------- causal suffixes
    #: a patch at position p cannot change positions before p (see :meth:`run_suffix`)
    causal = True

    def scan_kv(self, params, inputs, h0=None):
        """The clean run with its keys and values: `(hidden (L + 1, B, T, D), kv)`, `kv` being
        `{"key", "value": (L, B, T, KV, Dh)}` (rotated keys, as the decoding cache holds them)."""
        h0 = self.embed(params, inputs) if h0 is None else h0
        b, t = inputs["input_ids"].shape
        cache = self.adapter.init_cache(b, t)
        empty = {"key": cache["key"][0], "value": cache["value"][0]}
        ctx = self._ctx(inputs)

        def body(h, xs):
            i, p = xs
            out, _, kv = self._layer(i, p, h, ctx, cache=empty)
            return out, (h, kv)

        last, (hs, kv) = jax.lax.scan(body, h0, (jnp.arange(self.num_layers), params["layers"]))
        return jnp.concatenate([hs, last[None]], axis=0), kv

    def run_suffix(self, stacked, h, inputs, kv, start: int, first, handler=None, taps=(), kv_from: int = 0):
        """Layers `first .. L-1` (`first` may be traced) on positions `start ..` only.

        `h` `(B, T - start, D)` is the hidden state entering layer `first` at those positions;
        their queries attend to the clean run's keys and values `kv` (from :meth:`scan_kv`) at
        positions `< start` and to their own from `start` on (`kv` may hold the layers from
        `kv_from` on only). Exact when nothing before
        `start` differs from the clean run: a causal layer's position p reads positions `<= p`
        only. `inputs` are the whole sequence's (its attention mask covers every key).
        """
        taps = frozenset(taps) if handler is not None else frozenset()
        ctx = attention_context(self.config, inputs["attention_mask"], inputs["position_ids"][:, start:], start)

        def body(i, h):
            p = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), stacked)
            c = jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, i - kv_from, keepdims=False), kv)
            return self._layer(i, p, h, ctx, handler, taps, cache=c)[0]

        return jax.lax.fori_loop(first, self.num_layers, body, h)

    def logits(self, params, inputs):
        inputs = self.adapter.prepare(inputs)
        h = self.run_layers(params["layers"], self.embed(params, inputs), inputs, 0)
        return self.head(params, h)


def _to_array(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return jnp.asarray(x)
