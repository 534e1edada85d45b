"""Saving and loading an intervenable setup: config as JSON, weights as safetensors.

`model.save(directory)` writes

* `jaxvene_config.json`: the representations (pyvene's fields), intervention classes by
  registered name, mode, which representations share an intervention (links), and the site
  widths it was built for;
* `interventions.safetensors`: every array of every intervention, named `slot<k>.<field>`.

Each file is written to a temporary file in the same directory, flushed to disk and moved
into place with `os.replace`, so an interrupted save never leaves a half-written file. Loading
never runs code from a file (no pickle): the JSON names classes from a registry, and
safetensors holds only arrays. :func:`load_pyvene_intervention` reads pyvene's
`intkey_*.bin` with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._io import atomic_write
from ..core._config import IntervenableConfig, RepresentationConfig
from ..interventions import _basic, _masks
from ..interventions import _rotations as _rot

__all__ = [
    "register_intervention",
    "save_intervenable",
    "read_save",
    "restore_interventions",
    "load_pyvene_intervention",
]

FORMAT = "jaxvene-intervenable"
CONFIG_FILE = "jaxvene_config.json"
WEIGHTS_FILE = "interventions.safetensors"

_REGISTRY: dict[str, type] = {}


def register_intervention(cls: type) -> type:
    """Make a user intervention class loadable by name (usable as a decorator)."""
    _REGISTRY[cls.__name__] = cls
    return cls


for _module in (_basic, _rot, _masks):
    for _name in _module.__all__:
        _obj = getattr(_module, _name)
        if isinstance(_obj, type) and issubclass(_obj, _basic.Intervention):
            register_intervention(_obj)


def _leaves(iv) -> dict[str, np.ndarray]:
    arrays = eqx.filter(iv, eqx.is_array)
    flat, _ = jax.tree_util.tree_flatten_with_path(arrays)
    return {jax.tree_util.keystr(path).lstrip("."): np.asarray(leaf) for path, leaf in flat}


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"cannot save {type(value).__name__} in a config")


def save_intervenable(model, directory: str) -> None:
    """Write `model`'s config and intervention weights to `directory` (created if needed)."""
    from safetensors.numpy import save

    os.makedirs(directory, exist_ok=True)
    reps, types = [], []
    for key, rep in zip(model.sorted_keys, model.config.representations):
        iv = model.interventions[key]
        cls = type(iv)
        if isinstance(iv, _basic.LambdaIntervention):
            raise ValueError(f"representation {key} uses a plain function; functions cannot be saved")
        if _REGISTRY.get(cls.__name__) is not cls:
            raise ValueError(
                f"{cls.__name__} is not registered: decorate it with jaxvene.register_intervention to save it"
            )
        fields = {
            k: _plain(v)
            for k, v in rep._asdict().items()
            if k not in ("intervention_type", "intervention", "source_representation")
        }
        fields["hidden_source_representation"] = iv.source_representation is not None
        reps.append(fields)
        types.append(cls.__name__)
    placements = model.plan().placements
    config = {
        "format": FORMAT,
        "version": 1,
        "mode": model.mode,
        "sorted_keys": model.sorted_keys,
        "representations": reps,
        "intervention_types": types,
        "slots": [p.slot for p in placements],
        "widths": [model.intervention_params()[p.slot].embed_dim for p in placements],
    }
    weights = {}
    for slot, iv in enumerate(model.intervention_params()):
        for name, array in _leaves(iv).items():
            weights[f"slot{slot}.{name}"] = np.ascontiguousarray(array)
    atomic_write(os.path.join(directory, WEIGHTS_FILE), save(weights, metadata={"format": FORMAT}))
    atomic_write(os.path.join(directory, CONFIG_FILE), json.dumps(config, indent=2).encode())


def _read_config(directory: str) -> dict:
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory!r} is not a directory saved by IntervenableModel.save")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} is missing: is {directory!r} a jaxvene save?")
    try:
        with open(path) as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path!r} is not valid JSON ({err}); the save is corrupted") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a jaxvene intervenable config (no format {FORMAT!r})")
    return config


def _read_weights(directory: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} is missing; the save is incomplete")
    try:
        return load_file(path)
    except (SafetensorError, ValueError, OSError) as err:
        raise ValueError(f"{path!r} is not a readable safetensors file ({err}); the save is corrupted") from None


def read_save(directory: str) -> tuple[IntervenableConfig, dict, dict[str, np.ndarray]]:
    """Read a save: `(config, saved metadata, weights)`. `IntervenableModel.load` builds the
    model from the config, then :func:`restore_interventions` puts the weights in."""
    saved = _read_config(directory)
    weights = _read_weights(directory)
    types = []
    for name in saved["intervention_types"]:
        if name not in _REGISTRY:
            raise ValueError(
                f"unknown intervention type {name!r} in the save; register it with jaxvene.register_intervention"
            )
        types.append(_REGISTRY[name])
    reps = []
    for fields, cls in zip(saved["representations"], types):
        fields = {k: v for k, v in fields.items() if k in RepresentationConfig._fields}
        reps.append(RepresentationConfig(**{**fields, "intervention_type": cls}))
    return IntervenableConfig(reps, mode=saved["mode"]), saved, weights


def restore_interventions(plan, interventions, saved: dict, weights: dict[str, np.ndarray]) -> list:
    """The interventions of a plan built from a save's config, with the saved weights; errors
    where the save does not match the model (widths, links, arrays and their shapes)."""
    placements = plan.placements
    if [p.slot for p in placements] != saved["slots"]:
        raise ValueError("the saved links between representations do not match the rebuilt config")
    slots = list(interventions)
    for p, width in zip(placements, saved["widths"]):
        if slots[p.slot].embed_dim != width:
            raise ValueError(
                f"{p.site.describe()} is {slots[p.slot].embed_dim} wide in this model but the save was made "
                f"for width {width}: the save does not match the model"
            )
    for slot, iv in enumerate(slots):
        prefix = f"slot{slot}."
        given = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if "source_representation" in given and iv.source_representation is None:
            iv = eqx.tree_at(
                lambda m: m.source_representation,
                iv,
                jnp.asarray(given["source_representation"]),
                is_leaf=lambda x: x is None,
            )
        expected = _leaves(iv)
        if set(given) != set(expected):
            raise ValueError(
                f"intervention {slot} ({type(iv).__name__}): the save has arrays {sorted(given)}, "
                f"the model expects {sorted(expected)}"
            )
        for name, array in list(given.items()):
            if array.shape == (1,) and expected[name].shape == ():  # safetensors stores scalars as (1,)
                given[name] = array = array.reshape(())
            if array.shape != expected[name].shape:
                raise ValueError(
                    f"intervention {slot}: {name} has shape {array.shape} in the save, "
                    f"{expected[name].shape} in the model"
                )
        arrays, static = eqx.partition(iv, eqx.is_array)
        flat, tree = jax.tree_util.tree_flatten_with_path(arrays)
        leaves = [jnp.asarray(given[jax.tree_util.keystr(path).lstrip(".")]) for path, _ in flat]
        slots[slot] = eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), static)
    return slots


def load_pyvene_intervention(path: str, intervention):
    """Load the weights pyvene saved for one intervention (`intkey_<key>.bin`) into
    `intervention` (a jaxvene intervention of the matching class and size).

    Reads with `torch.load(weights_only=True)` (no code runs). Rotations are stored by pyvene
    as the raw parameter of a torch orthogonal parametrization, so pyvene's own class
    materialises the matrix: this needs the `compare` extra (torch and pyvene) installed.
    """
    try:
        import pyvene
        import torch
    except ImportError:
        raise ImportError("reading pyvene's files needs torch and pyvene: pip install 'jaxvene[compare]'") from None
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for corrupt files
        raise ValueError(f"{path!r} is not a readable PyTorch state dict ({err})") from None
    name = type(intervention).__name__
    pv_cls = getattr(pyvene, name, None)
    if pv_cls is None:
        raise ValueError(f"pyvene has no {name}")
    kwargs = {"embed_dim": intervention.embed_dim}
    if isinstance(intervention, _rot.LowRankRotatedSpaceIntervention):
        kwargs["low_rank_dimension"] = intervention.low_rank_dimension
    theirs = pv_cls(**kwargs)
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path!r} has arrays {unexpected} that pyvene's {name} does not")
    with torch.no_grad():
        if hasattr(theirs, "rotate_layer"):
            matrix = jnp.asarray(theirs.rotate_layer.weight.detach().numpy())
            intervention = eqx.tree_at(lambda m: m.raw, intervention, matrix)
        if isinstance(intervention, _rot.BoundlessRotatedSpaceIntervention):
            intervention = eqx.tree_at(
                lambda m: [m.intervention_boundaries, m.temperature],
                intervention,
                [
                    jnp.asarray(theirs.intervention_boundaries.detach().numpy()),
                    jnp.asarray(theirs.temperature.detach().numpy()),
                ],
            )
    return intervention
