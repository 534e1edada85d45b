"""Model adapters: a model as a pure function `apply(params, inputs) -> outputs` plus its sites.

:class:`HFFlaxAdapter` wraps a HuggingFace Flax model (transformers 4.x). Its `apply` calls the
model's linen module with explicit params (never closed over), and derives `position_ids` from
the attention mask, so left-padded batches get the positions the model was trained with.
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._families import Family, family_for
from ._hooks import handling
from ._sites import Site, normalise_path

__all__ = ["HFFlaxAdapter", "adapt", "position_ids_from_mask"]

_ACCEPTED_INPUTS = ("input_ids", "attention_mask", "position_ids")


def position_ids_from_mask(attention_mask):
    """Positions counted over the real tokens: `[0 0 1 2]` for the mask `[0 1 1 1]`."""
    mask = jnp.asarray(attention_mask).astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)


class HFFlaxAdapter:
    """A HuggingFace Flax causal LM (GPT-2, LLaMA, Mistral, Gemma) as a pure function with sites."""

    def __init__(self, hf_model):
        self.hf_model = hf_model
        self.module = hf_model.module
        self.config = hf_model.config
        self.family: Family = family_for(self.config)
        top = set(hf_model.params.keys())
        # FlaxGPT2LMHeadModel nests the transformer under "transformer", LLaMA under "model";
        # the bare FlaxGPT2Model / FlaxLlamaModel have the layer stack at the top.
        self.prefix = next((p + "." for p in ("transformer", "model") if p in top), "")
        self.num_layers = int(self.config.num_hidden_layers)
        self.vocab_size = int(self.config.vocab_size)
        self.head_counts = dict(self.family.heads(self.config))
        self._shapes: dict[str, tuple[int, ...]] = {}

    @property
    def params(self):
        return self.hf_model.params

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(self.family.components)

    # ------------------------------------------------------------------ sites
    def layer_path(self, layer: int) -> str:
        return f"{self.prefix}{self.family.layers}.{layer}"

    def site(self, component: str, layer: int) -> Site:
        """The site of a pyvene component at a layer, or of a module path like `h[0].mlp.output`."""
        if component in self.family.components:
            if not 0 <= int(layer) < self.num_layers:
                raise IndexError(
                    f"layer {layer} is out of range for component {component!r}: this "
                    f"{self.family.name} model has {self.num_layers} layers (0..{self.num_layers - 1})."
                )
            spec = self.family.components[component]
            path = ".".join(p for p in (self.layer_path(int(layer)), spec.path) if p)
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
                path = f"{self.layer_path(layer)}.{rel}"
                if any(f"{path}.{s}" in taps for s in suffixes):
                    result[path] = override
        return result

    def tap_shapes(self, taps) -> dict[str, tuple[int, ...]]:
        """Shapes of tap values for a `(1, 4)` input, from one abstract trace (no compute)."""
        missing = [t for t in taps if t not in self._shapes]
        if missing:
            seen: dict[str, tuple[int, ...]] = {}

            def record(name, value):
                seen.setdefault(name, tuple(value.shape))
                return value

            def run(params):
                with handling(record, missing, self.overrides(set(missing))):
                    return self.apply(params, {"input_ids": jnp.zeros((1, 4), jnp.int32)})

            jax.eval_shape(run, self.params)
            self._shapes.update(seen)
        return {t: self._shapes[t] for t in taps if t in self._shapes}

    def _check_tap_exists(self, tap: str, component: str) -> None:
        if tap not in self.tap_shapes([tap]):
            raise ValueError(
                f"module path {component!r} does not name a module call in this model "
                f"(looked for {tap!r}). Module paths look like '{self.layer_path(0)}.mlp.output'."
            )

    # ------------------------------------------------------------------ running
    def prepare(self, inputs: Mapping) -> dict:
        """Check a batch of inputs and complete it with an attention mask and position ids."""
        if not isinstance(inputs, Mapping):
            raise TypeError(f"model inputs must be a dict like {{'input_ids': ...}}, got {type(inputs).__name__}")
        unknown = sorted(set(inputs) - set(_ACCEPTED_INPUTS))
        if unknown:
            raise ValueError(
                f"unsupported model inputs {unknown}; this model takes {', '.join(_ACCEPTED_INPUTS)}."
            )
        if "input_ids" not in inputs:
            raise ValueError("model inputs need 'input_ids'")
        ids = _to_array(inputs["input_ids"])
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(ids.shape)}")
        out = {"input_ids": ids.astype(jnp.int32)}
        mask = inputs.get("attention_mask")
        mask = jnp.ones(ids.shape, jnp.int32) if mask is None else _to_array(mask).astype(jnp.int32)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(mask.shape)} but input_ids {tuple(ids.shape)}")
        out["attention_mask"] = mask
        pos = inputs.get("position_ids")
        out["position_ids"] = position_ids_from_mask(mask) if pos is None else _to_array(pos).astype(jnp.int32)
        return out

    def validate(self, inputs: Mapping, what: str = "base") -> None:
        """Errors JAX would not raise: token ids past the vocabulary are clamped inside jit."""
        ids = inputs["input_ids"]
        if isinstance(ids, jax.core.Tracer):
            return
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids.max()) if ids.max() >= self.vocab_size else int(ids.min())
            raise ValueError(
                f"{what} input_ids contain token id {bad}, outside the vocabulary of "
                f"{self.vocab_size} tokens (valid ids are 0..{self.vocab_size - 1})."
            )
        max_pos = getattr(self.config, "n_positions", None) or getattr(self.config, "max_position_embeddings", None)
        if max_pos is not None and ids.shape[1] > max_pos:
            raise ValueError(f"{what} input has {ids.shape[1]} tokens; this model takes at most {max_pos}.")

    def batch_size(self, inputs: Mapping) -> int:
        return int(inputs["input_ids"].shape[0])

    def site_length(self, inputs: Mapping, site: Site) -> int:
        """Length of the position axis of `site` for these inputs (the token count)."""
        return int(inputs["input_ids"].shape[1])

    def apply(self, params, inputs: Mapping, logit_positions=None) -> dict:
        """The model as a pure function of its params; returns the output fields as a dict.

        With `logit_positions` (`(B, K)` ints), only the logits at those positions are computed
        (`{"logits": (B, K, V)}`): the unembedding is usually the largest matmul of a small
        model, and a loss or metric rarely reads more than one position.
        """
        if "attention_mask" not in inputs or "position_ids" not in inputs:
            inputs = self.prepare(inputs)
        if logit_positions is not None:
            return {"logits": self._logits_at(params, inputs, logit_positions)}
        out = self.module.apply(
            {"params": params},
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            position_ids=inputs["position_ids"],
            deterministic=True,
            return_dict=True,
        )
        return {k: v for k, v in out.items() if v is not None}

    def _logits_at(self, params, inputs, positions):
        base_name = self.prefix.rstrip(".")
        if not base_name:
            raise ValueError(f"{type(self.hf_model).__name__} has no LM head: logit_positions needs a causal LM")

        def body(module, **kwargs):
            return getattr(module, base_name)(**kwargs)

        out = self.module.apply(
            {"params": params}, input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
            position_ids=inputs["position_ids"], deterministic=True, return_dict=True, method=body,
        )
        hidden = out["last_hidden_state"]  # after the final norm
        hidden = jnp.take_along_axis(hidden, jnp.asarray(positions)[..., None], axis=1)
        base = params[base_name]
        tied = getattr(self.config, "tie_word_embeddings", False) and self.config.model_type in ("gpt2", "gemma")
        if tied:
            table = base["wte"]["embedding"] if "wte" in base else base["embed_tokens"]["embedding"]
            return hidden @ table.T.astype(hidden.dtype)
        return hidden @ params["lm_head"]["kernel"].astype(hidden.dtype)

    def wrap_output(self, fields: dict):
        """Rebuild the HF output object (`.logits`, ...) from the dict `apply` returned."""
        from transformers.modeling_flax_outputs import FlaxCausalLMOutput, FlaxBaseModelOutput

        cls = FlaxCausalLMOutput if "logits" in fields else FlaxBaseModelOutput
        return cls(**fields)


def _to_array(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return jnp.asarray(x)


def adapt(model) -> HFFlaxAdapter:
    """The adapter for `model` (a HuggingFace Flax model, or an adapter already)."""
    from ._generic import FunctionAdapter

    if isinstance(model, (HFFlaxAdapter, FunctionAdapter)):
        return model
    if hasattr(model, "jaxvene_adapter"):  # models that describe their own sites
        return model.jaxvene_adapter()
    if hasattr(model, "module") and hasattr(model, "params") and hasattr(model, "config"):
        return HFFlaxAdapter(model)
    raise TypeError(
        f"jaxvene cannot wrap a {type(model).__name__}: pass a HuggingFace Flax model "
        "(e.g. transformers.FlaxGPT2LMHeadModel), or wrap your model with jaxvene.FunctionAdapter, "
        "jaxvene.FlaxModuleAdapter or jaxvene.equinox_adapter."
    )
