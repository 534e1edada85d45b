"""Saving and loading an intervenable setup: config as JSON, weights as safetensors.

`model.save(directory)` writes

* `jaxvene_config.json`: the representations (pyvene's fields), intervention classes by
  registered name, mode, which representations share an intervention (links), each
  intervention's `interchange_dim`, and what it was built for: the model (its class, family and
  `model_type`) and each site (its tap, head split, and the shape of one unit);
* `interventions.safetensors`: every array of every intervention, named `slot<k>.<field>`.

Loading checks the save against the model it is loaded onto, before any weight is used: the
model's family and `model_type` (a save made on a GPT-2 does not load onto a LLaMA of the same
width), each site and its shape, the widths and links, and every array's shape. A save written
before jaxvene recorded the model (format version 1) still loads, with a warning that only the
widths could be checked.

Each file is written to a temporary file in the same directory, flushed to disk and moved
into place with `os.replace`, so an interrupted save never leaves a half-written file. Loading
never runs code from a file (no pickle): the JSON names classes from a registry, and
safetensors holds only arrays. :func:`load_pyvene_intervention` reads pyvene's
`intkey_*.bin` with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import warnings

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
VERSION = 2  # 2: the model and the sites are recorded; 1: widths only
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
    out = {}
    for path, leaf in flat:
        name = jax.tree_util.keystr(path).lstrip(".")
        out[name] = _host(leaf, name)
    return out


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"cannot save {type(value).__name__} in a config")


def _model_record(adapter) -> dict | None:
    """What identifies the model behind `adapter`: its class, family and `model_type`."""
    if adapter is None:
        return None
    model = getattr(adapter, "hf_model", None) or getattr(adapter, "model", None)
    return {
        "class": type(model if model is not None else adapter).__name__,
        "family": getattr(getattr(adapter, "family", None), "name", None),
        "model_type": getattr(getattr(adapter, "config", None), "model_type", None),
    }


def _unit_shape(adapter, site) -> list | None:
    """The shape of one unit of `site`'s view: `[width]`, or `[heads, head_dim]` for heads."""
    if adapter is None:
        return None
    shape = adapter.tap_shapes([site.tap]).get(site.tap)
    if shape is None:
        return None
    view = site.view_shape(shape)  # (B, S, ...) or, for heads, (B, H, S, Dh)
    return [int(d) for d in (view[1:2] + view[3:] if site.heads is not None else view[2:])]


def _site_records(plan, adapter) -> list[dict]:
    return [
        {
            "component": p.site.component,
            "layer": p.site.layer,
            "tap": p.site.tap,
            "part": None if p.site.part is None else list(p.site.part),
            "heads": p.site.heads,
            "shape": _unit_shape(adapter, p.site),
        }
        for p in plan.placements
    ]


def save_intervenable(model, directory: str, adapter=None) -> None:
    """Write `model`'s config and intervention weights to `directory` (created if needed).

    `model` is an `IntervenableModel` (or an object with its `mode`, `config`, `sorted_keys`,
    `plan()` and `intervention_params()`); `adapter` (default `model.adapter`) is the model
    adapter whose family, `model_type` and site shapes the save records.

    On several processes (`jax.distributed`) every process may call it (SPMD code runs the
    same lines everywhere): each checks and reads the weights, only process 0 writes. There is
    no barrier: another process that loads the save must wait for process 0 to finish it.
    """
    from safetensors.numpy import save

    adapter = getattr(model, "adapter", None) if adapter is None else adapter
    placements = model.plan().placements
    slots = model.intervention_params()
    reps, types = [], []
    for key, rep, p in zip(model.sorted_keys, model.config.representations, placements):
        iv = slots[p.slot]  # the module itself, whatever model.interventions holds
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
    config = {
        "format": FORMAT,
        "version": VERSION,
        "mode": model.mode,
        "sorted_keys": model.sorted_keys,
        "representations": reps,
        "intervention_types": types,
        "slots": [p.slot for p in placements],
        "widths": [slots[p.slot].embed_dim for p in placements],
        "interchange_dims": [iv.interchange_dim for iv in slots],
        "model": _model_record(adapter),
        "sites": _site_records(model.plan(), adapter),
    }
    weights = {}
    for slot, iv in enumerate(slots):
        for name, array in _leaves(iv).items():
            weights[f"slot{slot}.{name}"] = np.ascontiguousarray(array)
    if jax.process_index() != 0:
        return  # on several processes one writes (the arrays were checked above on every one)
    os.makedirs(directory, exist_ok=True)
    atomic_write(os.path.join(directory, WEIGHTS_FILE), save(weights, metadata={"format": FORMAT}))
    atomic_write(os.path.join(directory, CONFIG_FILE), json.dumps(config, indent=2).encode())


def _host(array, name: str) -> np.ndarray:
    """`array` on the host. An array spread over several processes' devices can be read only
    when each process holds all of it (replicated, as trained interventions are)."""
    if isinstance(array, jax.Array) and not array.is_fully_addressable and not array.is_fully_replicated:
        raise ValueError(
            f"intervention array {name} is split over devices of several processes; replicate it before "
            "saving (e.g. jax.device_put(x, NamedSharding(mesh, PartitionSpec())))"
        )
    return np.asarray(array)


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


def _describe(record: dict | None) -> str:
    if not record:
        return "an unrecorded model"
    kind = record.get("model_type") or record.get("family")
    return f"a {kind} model ({record.get('class')})" if kind else f"a {record.get('class')}"


def _check_model(saved: dict, adapter) -> None:
    """The save's model record against the model it is loaded onto."""
    theirs, ours = saved.get("model"), _model_record(adapter)
    if not theirs or not ours:
        return
    for field in ("family", "model_type"):
        if theirs.get(field) is not None and ours.get(field) is not None and theirs[field] != ours[field]:
            raise ValueError(
                f"the save does not match the model: it was made on {_describe(theirs)} and is being "
                f"loaded onto {_describe(ours)} ({field} {theirs[field]!r} vs {ours[field]!r}); its "
                "interventions were fitted to the other model's activations"
            )


def _same_tap(a: str, b: str) -> bool:
    """The same module path up to the model's top-level prefix (a LM head model nests the base
    model under e.g. "transformer.", the base model alone does not)."""
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _check_sites(plan, saved: dict, adapter) -> None:
    records = saved.get("sites")
    if records is None:
        return
    if len(records) != len(plan.placements):
        raise ValueError(f"the save has {len(records)} sites, the rebuilt config {len(plan.placements)}")
    theirs, ours = saved.get("model"), _model_record(adapter)
    # another adapter of the same model (e.g. HF's Flax LLaMA and jaxvene's native one) names
    # its taps otherwise; the component and layer then say it is the same site
    same_model = bool(theirs and ours and theirs.get("model_type") and theirs["model_type"] == ours.get("model_type"))
    for i, (p, record) in enumerate(zip(plan.placements, records)):
        where = f"intervention {i} ({p.site.describe()})"
        same_component = p.site.component is not None and (record.get("component"), record.get("layer")) == (
            p.site.component,
            p.site.layer,
        )
        part = None if p.site.part is None else list(p.site.part)
        same_view = _same_tap(record["tap"], p.site.tap) and record.get("part") == part
        if not (same_view or (same_model and same_component)):
            raise ValueError(
                f"{where}: the save was made at {record['tap']!r} of {_describe(theirs)}, which is "
                f"{p.site.tap!r} in this model: the save does not match the model"
            )
        if record.get("heads") != p.site.heads:
            raise ValueError(
                f"{where}: the save was made for {record.get('heads')} heads, this model's site has "
                f"{p.site.heads}: the save does not match the model"
            )
        shape = _unit_shape(adapter, p.site)
        if record.get("shape") is not None and shape is not None and list(record["shape"]) != shape:
            raise ValueError(
                f"{where}: one unit has shape {tuple(shape)} in this model but {tuple(record['shape'])} "
                "in the save: the save does not match the model"
            )


def restore_interventions(plan, interventions, saved: dict, weights: dict[str, np.ndarray], adapter=None) -> list:
    """The interventions of a plan built from a save's config, with the saved weights; errors
    where the save does not match the model (its family and `model_type` when `adapter` is
    given, sites and their shapes, widths, links, arrays and their shapes)."""
    placements = plan.placements
    _check_model(saved, adapter)
    if [p.slot for p in placements] != saved["slots"]:
        raise ValueError("the saved links between representations do not match the rebuilt config")
    slots = list(interventions)
    for p, width in zip(placements, saved["widths"]):
        if slots[p.slot].embed_dim != width:
            raise ValueError(
                f"{p.site.describe()} is {slots[p.slot].embed_dim} wide in this model but the save was made "
                f"for width {width}: the save does not match the model"
            )
    if "sites" not in saved:
        warnings.warn(
            "this save was written before jaxvene recorded the model and its sites (format version "
            f"{saved.get('version', 1)}): only the widths were checked, so a save from another model "
            "of the same width would load without an error. Save it again to record them.",
            UserWarning,
            stacklevel=3,
        )
    _check_sites(plan, saved, adapter)
    dims = saved.get("interchange_dims")
    if dims is not None:
        if len(dims) != len(slots):
            raise ValueError(f"the save has {len(dims)} interchange dims for {len(slots)} interventions")
        slots = [iv if iv.interchange_dim == d else iv.set_interchange_dim(d) for iv, d in zip(slots, dims)]
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
