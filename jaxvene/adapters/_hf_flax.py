"""Model adapters: a model as a pure function `apply(params, inputs) -> outputs` plus its sites.

:class:`HFFlaxAdapter` wraps a HuggingFace Flax model (transformers 4.x). Its `apply` calls the
model's linen module with explicit params (never closed over), and derives `position_ids` from
the attention mask, so left-padded batches get the positions the model was trained with.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from .._hosts import local_values
from ..core._flax_params import check_params, unchecked_param_shapes
from ..core._hooks import flax_apply, handling
from ..core._positions import position_ids_from_mask
from ..core._programs import identity
from ..core._protocols import CachedDecoder, LayerwiseModel
from ..core._sites import Site, normalise_path
from ..families._registry import family_for
from ..families._spec import Family
from ._stack import LayerStack

__all__ = ["HFFlaxAdapter"]


class HFFlaxAdapter:
    """A HuggingFace Flax model (any family with a site table in :mod:`jaxvene.families`) as a
    pure function with sites.

    Implements :class:`~jaxvene.core.ModelAdapter`; where the family has a layer-stack spec,
    :class:`~jaxvene.core.LayerwiseModel` (sweeps, tracing); where the model has a KV cache,
    :class:`~jaxvene.core.CachedDecoder` (generation).
    """

    def __init__(self, hf_model, family: Family | None = None):
        self.hf_model = hf_model
        self.module = hf_model.module
        self.config = hf_model.config
        self.family: Family = family_for(self.config) if family is None else family
        if self.family.check is not None:  # e.g. a Flax LLaMA with a rope_scaling it would ignore
            self.family.check(hf_model)
        # Where the layer stack sits: FlaxGPT2LMHeadModel nests it under "transformer", LLaMA
        # under "model", BERT under "bert", T5 at the top ("encoder.block"); bare models too.
        self.prefix = _find_prefix(hf_model.params, self.family.layers)
        self.num_layers = int(self.config.num_hidden_layers)
        self.vocab_size = int(getattr(self.config, "vocab_size", 0) or 0)
        self.head_counts = dict(self.family.heads(self.config))
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._absent: set[str] = set()  # taps asked for that the model never reports

    @property
    def params(self):
        return self.hf_model.params

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.family.components)

    def structure_key(self) -> tuple:
        """What `apply` computes, without the weights: the module's class and fields (the
        config as JSON, the dtype), the family table and where the layers sit. Equal for two
        models that differ only in their params, so they share compiled programs (see
        :mod:`jaxvene.core._programs`)."""
        if "_structure_key" not in self.__dict__:
            fields = []
            for field in dataclasses.fields(self.module):
                if field.name in ("parent", "name"):
                    continue
                value = getattr(self.module, field.name)
                if hasattr(value, "to_dict"):  # a transformers config
                    value = {k: v for k, v in value.to_dict().items() if k not in _NOT_STRUCTURE}
                fields.append((field.name, json.dumps(value, sort_keys=True, default=str)))
            self._structure_key = (type(self.module), tuple(fields), identity(self.family), self.prefix)
        return self._structure_key

    # ------------------------------------------------------------------ sites
    def layer_path(self, layer: int, stack: str | None = None) -> str:
        layers = self.family.layers if stack is None else self.family.stacks[stack][0]
        return f"{self.prefix}{layers}.{layer}"

    def stack_size(self, stack: str | None = None) -> int:
        return self.num_layers if stack is None else int(self.family.stacks[stack][1](self.config))

    def site(self, component: str, layer: int) -> Site:
        """The site of a pyvene component at a layer, or of a module path like `h[0].mlp.output`."""
        if component in self.family.components:
            spec = self.family.components[component]
            count = self.stack_size(spec.stack)
            if not 0 <= int(layer) < count:
                where = "" if spec.stack is None else f" {spec.stack}"
                raise IndexError(
                    f"layer {layer} is out of range for component {component!r}: this "
                    f"{self.family.name} model has {count}{where} layers (0..{count - 1})."
                )
            if spec.stack is not None and not _has_path(self.params, self.layer_path(0, spec.stack)):
                raise ValueError(  # e.g. a decoder component on FlaxT5EncoderModel
                    f"component {component!r} lives in the {spec.stack} stack, which this "
                    f"{type(self.hf_model).__name__} does not have."
                )
            path = ".".join(p for p in (self.layer_path(int(layer), spec.stack), spec.path) if p)
            heads = None if spec.heads is None else int(self.head_counts[spec.heads])
            return Site(f"{path}.{spec.io}", spec.part, heads, component, int(layer))
        if component.endswith((".input", ".output")):
            tap = normalise_path(component)
            self._check_tap_exists(tap, component)
            return Site(tap, component=component)
        raise ValueError(
            f"unknown component {component!r} for the {self.family.name} family. Valid components: "
            f"{', '.join(self.components)}; or a module path ending in .input or .output "
            f"such as '{self.layer_path(0)}.mlp.output'."
        )

    def overrides(self, taps) -> dict:
        """Module re-implementations needed to report `taps` that are not module calls."""
        result = {}
        for layer in range(self.num_layers):
            for rel, (override, suffixes) in self.family.overrides.items():
                path = ".".join(p for p in (self.layer_path(layer), rel) if p)  # rel "" is the layer
                if any(f"{path}.{s}" in taps for s in suffixes):
                    result[path] = override
        return result

    def tap_shapes(self, taps) -> dict[str, tuple[int, ...]]:
        """Shapes of tap values for a `(1, 4)` input, from one abstract trace (no compute).

        The trace records every module call's taps, not only those asked for, so a loop that
        builds one config per layer traces the model once, not once per layer (taps that need
        a module override are recorded when first asked for)."""
        missing = [t for t in taps if t not in self._shapes and t not in self._absent]
        if missing:
            seen: dict[str, tuple[int, ...]] = {}

            def record(name, value):
                if hasattr(value, "shape"):
                    seen.setdefault(name, tuple(value.shape))
                return value

            def run(params):
                with handling(record, None, self.overrides(set(missing))):
                    return self.apply(params, self.dummy_inputs())

            jax.eval_shape(run, self.params)
            self._shapes.update(seen)
            self._absent.update(t for t in missing if t not in seen)
        return {t: self._shapes[t] for t in taps if t in self._shapes}

    def _check_tap_exists(self, tap: str, component: str) -> None:
        if tap not in self.tap_shapes([tap]):
            raise ValueError(
                f"module path {component!r} does not name a module call in this model "
                f"(looked for {tap!r}). Module paths look like '{self.layer_path(0)}.mlp.output'."
            )

    # ------------------------------------------------------------------ running
    def dummy_inputs(self) -> dict:
        """A batch of one for abstract traces (site shapes)."""
        if self.family.dummy is not None:
            return self.prepare(self.family.dummy(self.config))
        return self.prepare({"input_ids": jnp.zeros((1, 4), jnp.int32)})

    def prepare(self, inputs: Mapping) -> dict:
        """Check a batch of inputs and complete it with attention masks and position ids."""
        accepted = self.family.inputs
        if not isinstance(inputs, Mapping):
            main = self.family.tokens or accepted[0]
            raise TypeError(f"model inputs must be a dict like {{{main!r}: ...}}, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(accepted))
        if unknown:
            raise ValueError(f"unsupported model inputs {unknown}; this model takes {', '.join(accepted)}.")
        out = {k: _to_array(v) for k, v in inputs.items() if v is not None}
        required = [k for k in (self.family.tokens or accepted[0],) if k not in out]
        if required:
            raise ValueError(f"model inputs need {required[0]!r}")
        batch = None
        for name, value in out.items():
            if value.ndim < 2 and name != "decoder_input_ids":
                raise ValueError(f"{name} must be (batch, seq, ...), got shape {tuple(value.shape)}")
            if batch is not None and value.shape[0] != batch:
                raise ValueError(f"{name} has batch size {value.shape[0]} but the other inputs {batch}")
            batch = value.shape[0]
        for name in _INTEGER_INPUTS:
            if name in out:
                _check_integers(name, out[name])
                out[name] = out[name].astype(jnp.int32)
        for ids_name, mask_name, pos_name in (
            ("input_ids", "attention_mask", "position_ids"),
            ("decoder_input_ids", "decoder_attention_mask", "decoder_position_ids"),
        ):
            if ids_name not in out:
                if mask_name in out:
                    raise ValueError(f"{mask_name} given without {ids_name}")
                continue
            ids = out[ids_name]
            if ids.ndim != 2:
                raise ValueError(f"{ids_name} must be (batch, seq), got shape {tuple(ids.shape)}")
            if mask_name in accepted:
                mask = out.get(mask_name)
                mask = jnp.ones(ids.shape, jnp.int32) if mask is None else mask.astype(jnp.int32)
                if mask.shape != ids.shape:
                    raise ValueError(f"{mask_name} has shape {tuple(mask.shape)} but {ids_name} {tuple(ids.shape)}")
                out[mask_name] = mask
                if pos_name in accepted:
                    pos = out.get(pos_name)
                    if pos is not None:
                        _check_integers(pos_name, pos)
                    out[pos_name] = position_ids_from_mask(mask) if pos is None else pos.astype(jnp.int32)
        return out

    def validate(self, inputs: Mapping, what: str = "base") -> None:
        """Errors JAX would not raise: token ids past the vocabulary are clamped inside jit."""
        for name in ("input_ids", "decoder_input_ids"):
            ids = inputs.get(name)
            if ids is None or isinstance(ids, jax.core.Tracer) or not self.vocab_size:
                continue
            shape, ids = ids.shape, local_values(ids)  # across processes: this process's share
            if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
                bad = int(ids.max()) if ids.max() >= self.vocab_size else int(ids.min())
                raise ValueError(
                    f"{what} {name} contain token id {bad}, outside the vocabulary of "
                    f"{self.vocab_size} tokens (valid ids are 0..{self.vocab_size - 1})."
                )
            max_pos = getattr(self.config, "n_positions", None) or getattr(self.config, "max_position_embeddings", None)
            if max_pos is not None and shape[1] > max_pos:
                raise ValueError(f"{what} input has {shape[1]} tokens; this model takes at most {max_pos}.")

    def batch_size(self, inputs: Mapping) -> int:
        return int(next(iter(inputs.values())).shape[0])

    def site_length(self, inputs: Mapping, site: Site) -> int:
        """Length of the position axis of `site` for these inputs (the token count)."""
        spec = self.family.components.get(site.component) if site.component else None
        tokens = self.family.tokens
        if spec is not None and spec.stack is not None:
            tokens = self.family.stacks[spec.stack][2]
        if tokens is not None and tokens in inputs:
            return int(inputs[tokens].shape[1])
        if self.family.site_length is not None:
            return int(self.family.site_length(self.config, inputs))
        raise ValueError(f"cannot tell the position axis length of {site.tap} for inputs {sorted(inputs)}")

    def apply(self, params, inputs: Mapping, logit_positions=None) -> dict:
        """The model as a pure function of its params; returns the output fields as a dict.

        With `logit_positions` (`(B, K)` ints), only the logits at those positions are computed
        (`{"logits": (B, K, V)}`) where the family says how to unembed: the unembedding is
        usually the largest matmul of a small model, and a loss or metric rarely reads more
        than one position.
        """
        if any(k not in inputs for k in ("attention_mask", "position_ids") if k in self.family.inputs):
            inputs = self.prepare(inputs)
        check_params(params, self.params)
        if logit_positions is not None and self.family.unembed is not None and self.prefix:
            return {"logits": self._logits_at(params, inputs, logit_positions)}
        with unchecked_param_shapes():
            out = flax_apply(
                self.module,
                {"params": params},
                **inputs,
                deterministic=True,
                return_dict=True,
                **self.family.call_kwargs,
            )
        self.__dict__.setdefault("_out_cls", type(out))  # what wrap_output rebuilds: no trace of its own
        out = {k: v for k, v in out.items() if v is not None}
        if logit_positions is not None:
            if "logits" not in out:
                raise ValueError(f"{type(self.hf_model).__name__} has no LM head: logit_positions needs logits")
            positions = jnp.asarray(logit_positions)[..., None]
            out = {"logits": jnp.take_along_axis(out["logits"], positions, axis=1)}
        return out

    def _logits_at(self, params, inputs, positions):
        base_name = self.prefix.rstrip(".")

        def body(module, **kwargs):
            return getattr(module, base_name)(**kwargs)

        with unchecked_param_shapes():  # checked by apply
            out = flax_apply(
                self.module,
                {"params": params},
                **inputs,
                deterministic=True,
                return_dict=True,
                method=body,
                **self.family.call_kwargs,
            )
        hidden = out["last_hidden_state"]  # after the final norm
        hidden = jnp.take_along_axis(hidden, jnp.asarray(positions)[..., None], axis=1)
        return self.family.unembed(params, hidden, self.config)

    # ------------------------------------------------------------------ capabilities
    def supports(self, capability: type) -> bool:
        """Whether this model has `capability` (see :func:`jaxvene.core.require`)."""
        if capability is LayerwiseModel:
            return self.family.layer_stack is not None
        if capability is CachedDecoder:
            return hasattr(self.hf_model, "init_cache")
        return True

    def layer_stack(self) -> LayerStack:
        """The model as embed -> layers -> head (made once)."""
        if "_layer_stack" not in self.__dict__:
            self._layer_stack = LayerStack(self)
        return self._layer_stack

    def init_cache(self, batch: int, length: int):
        """An empty key/value cache (zeros) for `batch` sequences of up to `length` tokens."""
        shapes = jax.eval_shape(lambda: self.hf_model.init_cache(batch, length))
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def decode(self, params, cache, input_ids, attention_mask, position_ids):
        """`input_ids` against `cache`: the last position's logits `(B, V)` and the new cache."""
        # Families without position ids (BLOOM: ALiBi) derive positions from the whole-cache mask.
        positions = {"position_ids": position_ids} if "position_ids" in self.family.inputs else {}
        check_params(params, self.params)
        with unchecked_param_shapes():
            out, mutated = flax_apply(
                self.module,
                {"params": params, "cache": cache},
                input_ids=input_ids,
                attention_mask=attention_mask,
                **positions,
                deterministic=True,
                init_cache=False,
                return_dict=True,
                mutable=["cache"],
            )
        return out["logits"][:, -1], mutated["cache"]

    # ------------------------------------------------------------------ outputs
    def wrap_output(self, fields: dict):
        """Rebuild the HF output object (`.logits`, ...) from the dict `apply` returned.

        The class is the one the model itself returns (`FlaxCausalLMOutputWithCrossAttentions`
        for GPT-2, `FlaxSequenceClassifierOutput` for a classifier, ...). transformers 4.x makes
        `FlaxCausalLMOutput` an alias of `FlaxMaskedLMOutput`, so its Flax LLaMA, Mistral, Gemma,
        OPT, ... return a "FlaxMaskedLMOutput": a causal LM's output here is a
        `FlaxCausalLMOutput` of its own name instead (a subclass of that class: same fields,
        and `isinstance` with transformers' name still holds). Fields the class lacks (`loss`,
        which `labels=` adds) are added to it.
        """
        cls = self._output_class()
        if self._is_causal_lm() and cls.__name__ == "FlaxMaskedLMOutput":
            cls = _output_subclass(cls, "FlaxCausalLMOutput", ())
        missing = tuple(sorted(set(fields) - set(getattr(cls, "__dataclass_fields__", fields))))
        if missing:
            cls = _output_subclass(cls, cls.__name__, missing)
        return cls(**fields)

    def _is_causal_lm(self) -> bool:
        name = type(self.hf_model).__name__
        return "CausalLM" in name or name.endswith("LMHeadModel")

    def _output_class(self):
        """The HF output dataclass the model returns (BERT, ViT, T5: more fields than the
        defaults), from one abstract trace, cached."""
        if "_out_cls" not in self.__dict__:

            def run(params):
                with unchecked_param_shapes():  # the model's own params
                    return self.module.apply(
                        {"params": params},
                        **self.dummy_inputs(),
                        deterministic=True,
                        return_dict=True,
                        **self.family.call_kwargs,
                    )

            self._out_cls = type(jax.eval_shape(run, self.params))
        return self._out_cls


_INTEGER_INPUTS = ("input_ids", "decoder_input_ids", "token_type_ids")
#: config entries that name a checkpoint rather than describe the computation
_NOT_STRUCTURE = ("_name_or_path", "transformers_version", "architectures")


def _check_integers(name: str, value) -> None:
    """Token ids and positions must be integers: a float would be truncated (42.5 -> 42) and a
    NaN turned into some id without a word."""
    if not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(
            f"{name} must be integers (token ids or positions), got dtype {value.dtype}; "
            "jaxvene never rounds or truncates them: pass an integer array"
        )


_SUBCLASSES: dict = {}


def _output_subclass(base: type, name: str, extra: tuple[str, ...]) -> type:
    """A dataclass subclass of the HF output class `base` named `name`, with the optional
    fields `extra` (default None) added; made once per (base, name, extra)."""
    signature = (base, name, extra)
    if signature not in _SUBCLASSES:
        import flax.struct

        namespace: dict[str, Any] = {
            "__annotations__": dict.fromkeys(extra, Any),
            "__module__": __name__,
            "__qualname__": name,
        }
        namespace.update(dict.fromkeys(extra))
        _SUBCLASSES[signature] = flax.struct.dataclass(type(name, (base,), namespace))
    return _SUBCLASSES[signature]


def _find_prefix(params, layers: str) -> str:
    """The top-level key under which `layers` (e.g. "h" or "decoder.layers") sits, with a
    trailing dot; "" when the stack is at the top (bare models, T5)."""
    if _has_path(params, layers):
        return ""
    for key in params:
        if _has_path(params[key], layers):
            return f"{key}."
    raise ValueError(f"no layer stack {layers!r} in this model's params (top-level keys: {sorted(params)})")


def _has_path(tree, path: str) -> bool:
    for key in path.split("."):
        if not isinstance(tree, Mapping) or key not in tree:
            return False
        tree = tree[key]
    return True


def _to_array(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return jnp.asarray(x)
