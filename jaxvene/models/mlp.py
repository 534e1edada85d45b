"""pyvene's MLP classifier (`MLPForClassification`), in Flax, with the same site names.

The DAS tutorial's model: `n_layer` blocks `h = act(W h + b)` of width `h_dim` on an input
vector, then a linear `score` head. Sites (pyvene's): `block_input`, `block_output` and
`mlp_activation` (the same value as `block_output` without dropout) at each layer. Inputs are
`{"inputs_embeds": (B, h_dim)}` or `(B, 1, h_dim)` (pyvene's tutorials add the position axis).
Weights convert from pyvene's PyTorch model with :meth:`MLPForClassification.from_torch`, and
save/load as `config.json` + `model.safetensors` (:meth:`save_pretrained`, :meth:`from_pretrained`).
Dropout (`pdrop`, after the input and after each block, as in pyvene) applies only to a call
with a `dropout_key` (pyvene's train mode); interventions run the model without it (pyvene's
eval mode, which its `IntervenableModel` sets). :func:`create_mlp_classifier` is pyvene's
constructor helper.
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

__all__ = ["MLPConfig", "MLPForClassification", "create_mlp_classifier"]

_ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False), "tanh": jnp.tanh}


@dataclass(frozen=True)
class MLPConfig:
    """pyvene's `MLPConfig` fields that shape the model (pyvene's defaults).

    `pdrop` is the dropout rate of calls with a `dropout_key` (training the MLP itself); calls
    without one, and every intervened call, have no dropout.
    """

    h_dim: int = 512
    n_layer: int = 2
    num_classes: int = 2
    activation_function: str = "gelu"
    include_bias: bool = True
    squeeze_output: bool = True
    model_type: str = "mlp"
    pdrop: float = 0.3


class _Block(nn.Module):
    config: MLPConfig

    @nn.compact
    def __call__(self, h, deterministic: bool = True):
        dense = nn.Dense(self.config.h_dim, use_bias=self.config.include_bias, name="ff1")
        h = _ACTIVATIONS[self.config.activation_function](dense(h))
        if not deterministic and self.config.pdrop:  # no module when off: the sites stay as they are
            h = nn.Dropout(self.config.pdrop)(h, deterministic=False)
        return h


class _Blocks(nn.Module):
    config: MLPConfig

    def setup(self):
        self.blocks = [_Block(self.config, name=str(i)) for i in range(self.config.n_layer)]
        self.drop = nn.Dropout(self.config.pdrop)

    def __call__(self, h, deterministic: bool = True):
        if not deterministic and self.config.pdrop:  # pyvene's dropout of the input
            h = self.drop(h, deterministic=False)
        for block in self.blocks:
            h = block(h, deterministic)
        return h


class _MLP(nn.Module):
    config: MLPConfig

    def setup(self):
        self.h = _Blocks(self.config)

    def __call__(self, h, deterministic: bool = True):
        return self.h(h, deterministic)


class _Classifier(nn.Module):
    config: MLPConfig

    def setup(self):
        self.mlp = _MLP(self.config)
        self.score = nn.Dense(self.config.num_classes, use_bias=self.config.include_bias)

    def __call__(self, inputs_embeds, deterministic: bool = True):
        logits = self.score(self.mlp(inputs_embeds, deterministic))
        if self.config.squeeze_output and logits.ndim == 3 and logits.shape[1] == 1:
            logits = logits[:, 0]
        return {"logits": logits}


class MLPForClassification:
    """The classifier with params; `model({"inputs_embeds": x})["logits"]`; with
    `dropout_key=jax.random.key(0)`, dropout at rate `config.pdrop` (pyvene's train mode)."""

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

    def __call__(self, inputs, params=None, *, dropout_key=None):
        variables = {"params": self.params if params is None else params}
        if dropout_key is None:
            return self.module.apply(variables, inputs["inputs_embeds"])
        return self.module.apply(variables, inputs["inputs_embeds"], False, rngs={"dropout": dropout_key})

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
            pdrop=float(tc.pdrop),
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


def create_mlp_classifier(config: MLPConfig, tokenizer_name=None, cache_dir=None, *, seed: int = 0):
    """pyvene's `create_mlp_classifier`: `(config, tokenizer, model)` for a new
    :class:`MLPForClassification` with random weights from `seed` (pyvene draws them from
    PyTorch's global generator; JAX has none).

    `tokenizer_name` (optional, as in pyvene) is a local folder or a hub name already in the HF
    cache, read with :func:`jaxvene.load_tokenizer` (nothing is downloaded); `cache_dir` is not
    supported (set `HF_HUB_CACHE`). Without it the tokenizer is None.
    """
    if cache_dir is not None:
        raise TypeError("create_mlp_classifier(cache_dir=...) is not supported: set HF_HUB_CACHE instead")
    tokenizer = None
    if tokenizer_name is not None:
        from ._tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_name)
    return config, tokenizer, MLPForClassification(config, seed=seed)
