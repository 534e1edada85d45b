"""pyvene's MLP classifier (`MLPForClassification`), in Flax, with the same site names.

The DAS tutorial's model: `n_layer` blocks `h = act(W h + b)` of width `h_dim` on an input
vector, then a linear `score` head. Sites (pyvene's): `block_input`, `block_output` and
`mlp_activation` (the same value as `block_output` without dropout) at each layer. Inputs are
`{"inputs_embeds": (B, h_dim)}` or `(B, 1, h_dim)` (pyvene's tutorials add the position axis).
Weights convert from pyvene's PyTorch model with :meth:`MLPForClassification.from_torch`, and
save/load as `config.json` + `model.safetensors` (:meth:`save_pretrained`, :meth:`from_pretrained`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._io import atomic_write
from ..adapters._function import FunctionAdapter

__all__ = ["MLPConfig", "MLPForClassification"]

_ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False), "tanh": jnp.tanh}


@dataclass(frozen=True)
class MLPConfig:
    """pyvene's `MLPConfig` fields that shape the model."""

    h_dim: int = 512
    n_layer: int = 2
    num_classes: int = 2
    activation_function: str = "gelu"
    include_bias: bool = True
    squeeze_output: bool = True
    model_type: str = "mlp"


class _Block(nn.Module):
    config: MLPConfig

    @nn.compact
    def __call__(self, h):
        dense = nn.Dense(self.config.h_dim, use_bias=self.config.include_bias, name="ff1")
        return _ACTIVATIONS[self.config.activation_function](dense(h))


class _Blocks(nn.Module):
    config: MLPConfig

    def setup(self):
        self.blocks = [_Block(self.config, name=str(i)) for i in range(self.config.n_layer)]

    def __call__(self, h):
        for block in self.blocks:
            h = block(h)
        return h


class _MLP(nn.Module):
    config: MLPConfig

    def setup(self):
        self.h = _Blocks(self.config)

    def __call__(self, h):
        return self.h(h)


class _Classifier(nn.Module):
    config: MLPConfig

    def setup(self):
        self.mlp = _MLP(self.config)
        self.score = nn.Dense(self.config.num_classes, use_bias=self.config.include_bias)

    def __call__(self, inputs_embeds):
        logits = self.score(self.mlp(inputs_embeds))
        if self.config.squeeze_output and logits.ndim == 3 and logits.shape[1] == 1:
            logits = logits[:, 0]
        return {"logits": logits}


class MLPForClassification:
    """The classifier with params; `model({"inputs_embeds": x})["logits"]`."""

    components = {
        "block_input": "mlp.h.{layer}.input",
        "block_output": "mlp.h.{layer}.output",
        "mlp_activation": "mlp.h.{layer}.output",
    }

    def __init__(self, config: MLPConfig, params=None, seed: int = 0):
        self.config = config
        self.module = _Classifier(config)
        if params is None:
            params = self.module.init(jax.random.key(seed), jnp.zeros((1, config.h_dim)))["params"]
        self.params = params

    def __call__(self, inputs, params=None):
        return self.module.apply({"params": self.params if params is None else params}, inputs["inputs_embeds"])

    def jaxvene_adapter(self) -> FunctionAdapter:
        module = self.module
        return FunctionAdapter(
            lambda params, inputs: module.apply({"params": params}, inputs["inputs_embeds"]),
            self.params,
            {"inputs_embeds": jnp.zeros((1, self.config.h_dim))},
            components=self.components,
            num_layers=self.config.n_layer,
        )

    def save_pretrained(self, directory: str) -> None:
        """Write `config.json` and `model.safetensors` (float32) to `directory`, each atomically."""
        from flax.traverse_util import flatten_dict
        from safetensors.numpy import save

        os.makedirs(directory, exist_ok=True)
        flat = {"/".join(k): np.asarray(v, np.float32) for k, v in flatten_dict(self.params).items()}
        atomic_write(os.path.join(directory, "model.safetensors"), save(flat, metadata={"format": "jaxvene-mlp"}))
        atomic_write(
            os.path.join(directory, "config.json"), json.dumps(dataclasses.asdict(self.config), indent=2).encode()
        )

    @classmethod
    def from_pretrained(cls, directory: str) -> MLPForClassification:
        """Load what :meth:`save_pretrained` wrote; clear errors for a missing or corrupt file."""
        from flax.traverse_util import unflatten_dict
        from safetensors.numpy import load

        config_file, weights_file = os.path.join(directory, "config.json"), os.path.join(directory, "model.safetensors")
        for f in (config_file, weights_file):
            if not os.path.isfile(f):
                raise FileNotFoundError(f"{f} is missing: not a saved MLPForClassification folder")
        try:
            with open(config_file, encoding="utf-8") as fh:
                config = MLPConfig(**json.load(fh))
            with open(weights_file, "rb") as fh_bytes:
                flat = load(fh_bytes.read())
        except Exception as exc:
            raise OSError(
                f"{directory} does not hold a valid MLPForClassification ({type(exc).__name__}: {exc})"
            ) from exc
        params = unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in flat.items()})
        expected = jax.eval_shape(lambda: cls(config).params)
        shapes = jax.tree_util.tree_map(lambda x: x.shape, params)
        if shapes != jax.tree_util.tree_map(lambda x: x.shape, expected):
            raise OSError(f"{weights_file} does not match its config.json (parameter shapes differ)")
        return cls(config, params)

    @classmethod
    def from_torch(cls, torch_model) -> MLPForClassification:
        """Convert pyvene's `MLPForClassification` (PyTorch) with its weights."""
        tc = torch_model.config
        config = MLPConfig(
            h_dim=tc.h_dim,
            n_layer=tc.n_layer,
            num_classes=tc.num_classes,
            activation_function=tc.activation_function,
            include_bias=tc.include_bias,
            squeeze_output=tc.squeeze_output,
        )
        state = {k: np.asarray(v.detach().cpu().numpy()) for k, v in torch_model.state_dict().items()}

        def dense(prefix):
            out = {"kernel": jnp.asarray(state[prefix + ".weight"].T)}
            if config.include_bias:
                out["bias"] = jnp.asarray(state[prefix + ".bias"])
            return out

        params = {
            "mlp": {"h": {str(i): {"ff1": dense(f"mlp.h.{i}.ff1")} for i in range(config.n_layer)}},
            "score": dense("score"),
        }
        return cls(config, params)
