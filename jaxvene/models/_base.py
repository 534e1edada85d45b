"""What jaxvene's native Flax causal LMs share: the HF Flax model surface (`module`, `params`,
`config`, `__call__`), loading an HF PyTorch checkpoint folder, and the jaxvene adapter."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp


class NativeCausalLM:
    """Base of the native models. A subclass sets the class attributes below and
    `init_cache`."""

    module_class: ClassVar[type]  # the linen module: module_class(config, dtype=...)
    config_class: ClassVar[Callable[[], Any]]  # returns the transformers config class (lazy import)
    model_type: ClassVar[str]
    family: ClassVar[object]  # its jaxvene site table
    check_config: ClassVar[Callable]  # config -> None, raises on what the port does not support
    params_from_state: ClassVar[Callable]  # (torch state dict as numpy, config, dtype) -> params
    load_state: ClassVar[Callable]  # folder -> state dict as numpy

    def __init__(self, config, params: dict | None = None, seed: int = 0, dtype=jnp.float32):
        type(self).check_config(config)
        self.config = config
        self.dtype = dtype
        self.module = self.module_class(config, dtype=dtype)
        if params is None:
            params = self.module.init(jax.random.key(seed), jnp.zeros((1, 1), jnp.int32))["params"]
        self.params = params
        self._adapter: Any = None
        self._jitted: Callable | None = None

    def __call__(
        self, input_ids, attention_mask=None, position_ids=None, params=None, output_hidden_states: bool = False
    ):
        """Logits (and hidden states) as a `FlaxCausalLMOutput`; compiled once per input shape."""
        from transformers.modeling_flax_outputs import FlaxCausalLMOutput

        if self._jitted is None:
            self._jitted = jax.jit(self._forward, static_argnames=("output_hidden_states",))
        fields = self._jitted(
            self.params if params is None else params,
            jnp.asarray(input_ids),
            None if attention_mask is None else jnp.asarray(attention_mask),
            None if position_ids is None else jnp.asarray(position_ids),
            output_hidden_states=bool(output_hidden_states),
        )
        return FlaxCausalLMOutput(**fields)

    def _forward(self, params, input_ids, attention_mask, position_ids, output_hidden_states):
        out = self.module.apply(
            {"params": params},
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            deterministic=True,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_pretrained(cls, folder: str, dtype=jnp.float32):
        """Load an HF PyTorch checkpoint folder (`config.json` + safetensors or .bin; no
        pickle is run: see `load_pytorch_state`)."""
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} is not a directory (from_pretrained reads a local checkpoint folder)")
        config_path = os.path.join(folder, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"no config.json in {folder}")
        try:
            with open(config_path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {config_path}: {err}") from err
        if raw.get("model_type") != cls.model_type:
            raise ValueError(f"{config_path} describes model_type {raw.get('model_type')!r}, not {cls.model_type!r}")
        config = cls.config_class().from_pretrained(folder)
        cls.check_config(config)
        params = cls.params_from_state(cls.load_state(folder), config, dtype=dtype)
        return cls(config, params, dtype=dtype)

    def jaxvene_adapter(self):
        """The adapter jaxvene uses for this model: its own site table, registered or not."""
        if self._adapter is None:
            from ..adapters._hf_flax import HFFlaxAdapter

            self._adapter = HFFlaxAdapter(self, family=self.family)
        return self._adapter
