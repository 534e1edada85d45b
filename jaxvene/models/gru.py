"""pyvene's GRU models (`pyvene.models.gru`) in JAX, with pyvene's site names.

A stack of `n_layer` GRU cells of width `h_dim`, run over time: at step t cell 0 reads the
input x_t and cell l > 0 reads cell l-1's new state. One cell step is pyvene's::

    r = sigmoid(x2h(x)_r + h2h(h)_r)       # reset gate
    z = sigmoid(x2h(x)_z + h2h(h)_z)       # update gate
    n = tanh(x2h(x)_n + r * h2h(h)_n)      # new gate
    h' = z * h + (1 - z) * n

with `x2h`, `h2h` linear maps to `3 * h_dim` split in [reset | update | new] thirds, and a zero
initial state. :class:`GRUModel` returns the top cell's states, :class:`GRUForClassification`
a `score` head on the state at the last real step (`attention_mask.sum() - 1`),
:class:`GRULMHeadModel` an `lm_head` on every step. `from_torch` converts pyvene's PyTorch
models with their weights.

**Sites.** A recurrent cell runs once per step, but a jaxvene site is one value with a position
axis. Each cell value is therefore reported at every step as a `(B, T, W)` value: the steps so
far (as they were after any intervention), this step's value at position t, zeros after. What
the intervention makes of position t is what the recurrence carries on, so patching step t
changes every later step, as in pyvene. Position = time step: pyvene's unit "t" is jaxvene's
unit "pos" here, and source step `s[k]` goes to base step `b[k]`. Components (pyvene's names,
`{layer}` a cell)::

    cell_input, cell_output                          (B, T, h_dim)
    x2h_output, h2h_output                           (B, T, 3 * h_dim)
    reset_/update_/new_ + x2h_output / h2h_output    a third of those
    reset_/update_/new_ + gate_input / gate_output   the gates' pre-/post-activations

Module paths work too (`gru.cells[0].x2h.output`). The time loop is unrolled in Python (taps
cannot leave a `lax.scan`), so compile time grows with the sequence length; the GRU is a
tutorial-sized model. An intervention runs at every step on the whole `(B, T, W)` value and only
position t is kept, so interventions that act on each position alone (interchange, addition,
zero, collect, rotations of one unit) behave as on a transformer; one that mixes several
positions (a distributed intervention with `max_number_of_units > 1`) sees later steps as
zeros. Latents an intervention returns come from the last step's call, where earlier positions
already hold the intervened values.

Differences from pyvene 0.1.8, whose stateful ("t") path has bugs: it supports batch size 1
only, and it sets the component to zero at every step *not* listed in the base locations
(the tests reproduce this with an explicit `ZeroIntervention`); its LM-head mapping forgets the
thirds of `x2h`/`h2h` (`reset_x2h_output` is the whole projection there, a third here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..adapters._function import FunctionAdapter
from ..core._hooks import listening, tap

__all__ = ["GRUConfig", "GRUModel", "GRUForClassification", "GRULMHeadModel"]

_GATES = ("reset", "update", "new")

# pyvene's component -> (site below the cell, third of the projection or None)
_COMPONENTS = {
    "cell_input": ("input", None),
    "cell_output": ("output", None),
    "x2h_output": ("x2h.output", None),
    "h2h_output": ("h2h.output", None),
    **{f"{g}_gate_{io}": (f"{g}_act.{io}", None) for g in _GATES for io in ("input", "output")},
    **{f"{g}_{proj}_output": (f"{proj}.output", k) for k, g in enumerate(_GATES) for proj in ("x2h", "h2h")},
}


@dataclass(frozen=True)
class GRUConfig:
    """pyvene's `GRUConfig` fields that shape the model (`pdrop` is unused there too)."""

    h_dim: int = 512
    n_layer: int = 2
    n_labels: int = 2
    include_emb: bool = False
    vocab_size: int = 50_257
    max_position_embeddings: int = 512
    include_bias: bool = True
    model_type: str = "gru"

    @classmethod
    def from_pyvene(cls, config) -> GRUConfig:
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.name != "model_type"})


# ---------------------------------------------------------------------------------- the network
class _Steps:
    """Reports per-step values `(B, W)` as `(B, T, W)` sites (see the module docstring)."""

    def __init__(self, length: int):
        self.length = length
        self.active = listening()  # outside a jaxvene run: no buffers, no taps
        self.seen: dict[str, jax.Array] = {}

    def __call__(self, name: str, t: int, value):
        if not self.active:
            return value
        buf = self.seen.get(name)
        if buf is None:
            buf = jnp.zeros((value.shape[0], self.length, value.shape[-1]), value.dtype)
        value = tap(name, buf.at[:, t].set(value))[:, t]
        self.seen[name] = buf.at[:, t].set(value)
        return value


def _linear(p, x):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def _cell(p, x, h, name, t, steps):
    """One step of cell `p`; `name` is its path (`gru.cells.0`)."""
    x = steps(f"{name}.input", t, x)
    xs = jnp.split(steps(f"{name}.x2h.output", t, _linear(p["x2h"], x)), 3, axis=-1)
    hs = jnp.split(steps(f"{name}.h2h.output", t, _linear(p["h2h"], h)), 3, axis=-1)

    def gate(kind, pre, act):
        pre = steps(f"{name}.{kind}_act.input", t, pre)
        return steps(f"{name}.{kind}_act.output", t, act(pre))

    reset = gate("reset", xs[0] + hs[0], jax.nn.sigmoid)
    update = gate("update", xs[1] + hs[1], jax.nn.sigmoid)
    new = gate("new", xs[2] + reset * hs[2], jnp.tanh)
    return steps(f"{name}.output", t, update * h + (1.0 - update) * new)


def _run_gru(params, config: GRUConfig, inputs, prefix: str):
    """The top cell's states `(B, T, h_dim)`; `params` are the GRU's own (`cells`, `wte`, ...)."""
    embeds = inputs.get("inputs_embeds")
    if embeds is None:
        if "input_ids" not in inputs:
            raise ValueError("GRU inputs need 'inputs_embeds' (B, T, h_dim) or, with include_emb, 'input_ids'")
        if not config.include_emb:
            raise ValueError("'input_ids' need a GRU with include_emb=True; pass 'inputs_embeds' instead")
        embeds = params["wte"]["embedding"][jnp.asarray(inputs["input_ids"], jnp.int32)]
    if inputs.get("position_ids") is not None:  # pyvene adds position embeddings only when given
        if not config.include_emb:
            raise ValueError("'position_ids' need a GRU with include_emb=True")
        embeds = embeds + params["wpe"]["embedding"][jnp.asarray(inputs["position_ids"], jnp.int32)]
    embeds = jnp.asarray(embeds, jnp.float32)
    if embeds.ndim != 3 or embeds.shape[-1] != config.h_dim:
        raise ValueError(f"GRU inputs must be (batch, steps, {config.h_dim}); got shape {embeds.shape}")
    b, length, _ = embeds.shape
    steps = _Steps(length)
    states = [jnp.zeros((b, config.h_dim), embeds.dtype) for _ in range(config.n_layer)]
    tops = []
    for t in range(length):
        x = embeds[:, t]
        for layer in range(config.n_layer):
            x = states[layer] = _cell(params["cells"][str(layer)], x, states[layer], f"{prefix}cells.{layer}", t, steps)
        tops.append(x)
    return jnp.stack(tops, axis=1)


# ---------------------------------------------------------------------------------- the models
class _GRUBase:
    """Shared surface: `config`, `params`, `model(inputs)`, `jaxvene_adapter()`, `from_torch`."""

    prefix = "gru."  # where pyvene's module paths put the GRU in this model

    def __init__(self, config: GRUConfig, params=None, seed: int = 0):
        self.config = config
        self.params = self.init_params(config, jax.random.key(seed)) if params is None else params
        self._adapter: FunctionAdapter | None = None
        self._jitted = jax.jit(self.apply)

    def __call__(self, inputs, params=None) -> dict:
        return self._jitted(self.params if params is None else params, _as_arrays(inputs))

    def apply(self, params, inputs) -> dict:
        raise NotImplementedError

    def _gru(self, params, inputs):
        own = params["gru"] if self.prefix else params
        return _run_gru(own, self.config, inputs, self.prefix)

    @classmethod
    def init_params(cls, config: GRUConfig, key) -> dict:
        """Random params shaped as pyvene's (its cells draw uniform(+-1/sqrt(h_dim)))."""
        d, keys = config.h_dim, iter(jax.random.split(key, 4 * config.n_layer + 4))

        def dense(n_in, n_out, bias):
            bound = n_in**-0.5
            p = {"kernel": jax.random.uniform(next(keys), (n_in, n_out), minval=-bound, maxval=bound)}
            if bias:
                p["bias"] = jax.random.uniform(next(keys), (n_out,), minval=-bound, maxval=bound)
            return p

        bias = config.include_bias
        gru: dict[str, Any] = {
            "cells": {
                str(i): {"x2h": dense(d, 3 * d, bias), "h2h": dense(d, 3 * d, bias)} for i in range(config.n_layer)
            }
        }
        if config.include_emb:
            gru["wte"] = {"embedding": 0.02 * jax.random.normal(next(keys), (config.vocab_size, d))}
            gru["wpe"] = {"embedding": 0.02 * jax.random.normal(next(keys), (config.max_position_embeddings, d))}
        return cls._with_head(gru, {k: dense(d, n, False) for k, n in cls._heads(config).items()})

    @classmethod
    def _heads(cls, config) -> dict:
        return {}  # head name -> output width

    @classmethod
    def _with_head(cls, gru, heads) -> dict:
        return {"gru": gru, **heads}

    # ------------------------------------------------------------------ jaxvene
    def jaxvene_adapter(self) -> FunctionAdapter:
        if self._adapter is None:
            c = self.config
            example = (
                {"input_ids": jnp.zeros((1, 2), jnp.int32)}
                if c.include_emb
                else {"inputs_embeds": jnp.zeros((1, 2, c.h_dim))}
            )
            self._adapter = _GRUAdapter(self.apply, self.params, example, self.prefix, c)
        return self._adapter

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_torch(cls, torch_model):
        """Convert pyvene's PyTorch model of the same kind, with its weights."""
        config = GRUConfig.from_pyvene(torch_model.config)
        state = {k: v.detach().cpu().float().numpy() for k, v in torch_model.state_dict().items()}
        pre = cls.prefix

        def dense(name, bias=True):
            p = {"kernel": jnp.asarray(state[f"{name}.weight"].T)}
            if bias and config.include_bias:
                p["bias"] = jnp.asarray(state[f"{name}.bias"])
            return p

        missing = [
            k for k in (f"{pre}cells.0.x2h.weight", *(f"{h}.weight" for h in cls._heads(config))) if k not in state
        ]
        if missing:
            raise ValueError(f"{type(torch_model).__name__} is not a pyvene model for {cls.__name__} (no {missing[0]})")
        gru = {
            "cells": {
                str(i): {"x2h": dense(f"{pre}cells.{i}.x2h"), "h2h": dense(f"{pre}cells.{i}.h2h")}
                for i in range(config.n_layer)
            }
        }
        if config.include_emb:
            gru["wte"] = {"embedding": jnp.asarray(state[f"{pre}wte.weight"])}
            gru["wpe"] = {"embedding": jnp.asarray(state[f"{pre}wpe.weight"])}
        return cls(config, cls._with_head(gru, {h: dense(h, bias=False) for h in cls._heads(config)}))


class GRUModel(_GRUBase):
    """The bare GRU: `{"hidden_states": (B, T, h_dim), "last_hidden_state": (B, h_dim)}`
    (pyvene's tuple `(all_hidden_states, current_layer_hidden_state)`)."""

    prefix = ""

    @classmethod
    def _with_head(cls, gru, heads) -> dict:
        return gru

    def apply(self, params, inputs) -> dict:
        states = self._gru(params, inputs)
        return {"last_hidden_state": states[:, -1], "hidden_states": states}


class GRUForClassification(_GRUBase):
    """`{"logits": (B, n_labels)}` from the state at each example's last real step."""

    @classmethod
    def _heads(cls, config) -> dict:
        return {"score": config.n_labels}

    def apply(self, params, inputs) -> dict:
        states = self._gru(params, inputs)
        mask = inputs.get("attention_mask")
        last = (jnp.full(states.shape[:1], states.shape[1]) if mask is None else jnp.sum(mask, axis=-1)) - 1
        pooled = jnp.take_along_axis(states, last.astype(jnp.int32)[:, None, None], axis=1)[:, 0]
        return {"logits": _linear(params["score"], pooled)}


class GRULMHeadModel(_GRUBase):
    """`{"logits": (B, T, vocab_size)}`: the LM head on every step."""

    @classmethod
    def _heads(cls, config) -> dict:
        return {"lm_head": config.vocab_size}

    def apply(self, params, inputs) -> dict:
        return {"logits": _linear(params["lm_head"], self._gru(params, inputs))}


# ---------------------------------------------------------------------------------- the adapter
class _GRUAdapter(FunctionAdapter):
    """`FunctionAdapter` whose components are pyvene's GRU names, thirds of x2h/h2h included."""

    def __init__(self, fn, params, example, prefix: str, config: GRUConfig):
        components = {c: f"{prefix}cells.{{layer}}.{rel}" for c, (rel, _) in _COMPONENTS.items()}
        super().__init__(fn, params, example, components=components, num_layers=config.n_layer)
        self.config = config

    def site(self, component: str, layer: int = 0):
        site = super().site(component, layer)
        third = _COMPONENTS.get(component, (None, None))[1]
        return site if third is None else dataclasses.replace(site, part=(third, 3))

    def validate(self, inputs, what: str = "base") -> None:
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        if ids is not None and not isinstance(ids, jax.core.Tracer):
            ids = np.asarray(ids)
            if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
                raise ValueError(f"{what} input_ids must be in 0..{self.config.vocab_size - 1}")


def _as_arrays(inputs) -> dict:
    if not isinstance(inputs, dict):
        raise TypeError(f"GRU inputs must be a dict like {{'inputs_embeds': ...}}, got {type(inputs).__name__}")
    out = {}
    for k, v in inputs.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[k] = None if v is None else jnp.asarray(v)
    return out
