"""`IntervenableModel`: pyvene's calling conventions on top of the pure core.

It resolves the config once (sites, intervention objects, groups, links), then each call turns
pyvene's nested arguments into checked arrays and runs one jitted program. Locations and
subspaces are data, so new positions reuse the compiled program; a new set of sites, a change
of input shape or of which arguments are `None` compiles a new one.

The programs are shared by every instance (see :mod:`jaxvene.core._programs`): they are
module-level jitted functions of the model's *structure*, the plan, the params and the inputs,
so a new `IntervenableModel` whose model structure, plan and input shapes equal an earlier
one's runs the program that one compiled, whatever the weights.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..adapters._adapt import adapt
from ..core import _programs
from ..core._config import IntervenableConfig
from ..core._generate import generate as _generate
from ..core._locations import (
    broadcast_sources,
    broadcast_subspaces,
    broadcast_unit_locations,
    expand_subspaces,
    placement_locations,
)
from ..core._plan import Placement, Plan, build_plan
from ..core._programs import Structure
from ..core._protocols import CachedDecoder, require
from ..core._run import run
from ..interventions._basic import Intervention
from . import _pyvene_utils
from ._saving import read_save, restore_interventions, save_intervenable

__all__ = ["IntervenableModel", "IntervenableModelOutput", "InterventionHandle", "InterventionsView"]


@dataclasses.dataclass
class IntervenableModelOutput:
    """What `IntervenableModel(..., return_dict=True)` returns."""

    original_outputs: Any = None
    intervened_outputs: Any = None
    collected_activations: Any = None


class InterventionHandle:
    """What `model.interventions[key]` gives: the intervention stored in `model`, live.

    Interventions are immutable Equinox modules, so pyvene's in-place calls return a new module;
    on a handle they also write it back: `handle.set_temperature(0.1)` (any `set_*` method that
    returns an intervention) replaces the stored intervention, which the next call and the next
    training use, and returns the new module. Everything else is read from the stored
    intervention as it is now (`handle.rotation`, `handle(base, source)`, `isinstance(handle,
    jv.RotatedSpaceIntervention)`); `handle.module` is the module itself, and JAX's tree
    functions see that module. Linked representations share one handle. Assigning an attribute
    raises an error that says what to write.
    """

    __slots__ = ("_owner", "_slot")

    def __init__(self, owner: IntervenableModel, slot: int):
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_slot", slot)

    @property
    def module(self) -> Intervention:
        """The stored intervention (an Equinox module)."""
        return self._owner._slots[self._slot]

    @property  # type: ignore[misc]
    def __class__(self):  # isinstance(handle, SomeIntervention) reads the stored module's class
        return type(self.module)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_owner", "_slot"):  # copy/pickle protocols: the handle's own
            raise AttributeError(name)
        value = getattr(self.module, name)
        if name.startswith("set_") and callable(value):
            return _WriteBack(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(
            f"interventions are immutable Equinox modules: cannot assign {name!r}. Use a set_* method "
            "on model.interventions[key] (it writes back), model.set_temperature(t), or build a new "
            "module (eqx.tree_at) and store it with model.interventions[key] = new"
        )

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __reduce__(self):  # copy.deepcopy(model) gives handles of the copy
        return (InterventionHandle, (self._owner, self._slot))

    def __getitem__(self, index):
        if index == 0:  # pyvene before 0.1.8 stored (intervention, hook) pairs
            return self
        raise TypeError(
            "model.interventions[key] is the intervention itself (pyvene 0.1.8's form); there are no "
            "hooks in jaxvene: use model.interventions[key], or model.interventions[key][0] for older code"
        )

    def __dir__(self):
        return sorted(set(dir(self.module)) | {"module"})

    def __repr__(self) -> str:
        return repr(self.module)


class _WriteBack:
    """A handle's `set_*` method: calls the module's and stores the new module it returns."""

    def __init__(self, handle: InterventionHandle, name: str, method: Callable):
        self.handle, self.name, self.method = handle, name, method

    def __call__(self, *args, **kwargs):
        new = self.method(*args, **kwargs)
        if isinstance(new, Intervention):
            self.handle._owner._replace_slot(self.handle._slot, new)
        return new

    def __repr__(self) -> str:
        return f"<{self.name} of the stored {type(self.handle.module).__name__}, writing back>"


jax.tree_util.register_pytree_node(InterventionHandle, lambda h: ((h.module,), None), lambda _, children: children[0])


class InterventionsView(Mapping):
    """`model.interventions`: pyvene's key -> intervention mapping, as live
    :class:`InterventionHandle` objects in `model.sorted_keys` order. `view[key] = new`
    replaces the stored intervention (for linked keys, the one they share)."""

    def __init__(self, owner: IntervenableModel):
        self._owner = owner

    def _slot(self, key: str) -> int:
        owner = self._owner
        try:
            index = owner.sorted_keys.index(key)
        except ValueError:
            raise KeyError(f"no intervention {key!r}; the keys are {owner.sorted_keys}") from None
        return owner._plan.placements[index].slot

    def __getitem__(self, key: str) -> InterventionHandle:
        return self._owner._handle(self._slot(key))

    def __setitem__(self, key: str, value) -> None:
        self._owner._replace_slot(self._slot(key), value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner.sorted_keys)

    def __len__(self) -> int:
        return len(self._owner.sorted_keys)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {type(v.module).__name__}" for k, v in self.items()) + "}"


def _as_config(config) -> IntervenableConfig:
    if isinstance(config, IntervenableConfig):
        return config
    return IntervenableConfig(config)


# ---------------------------------------------------------------------------- shared programs
# One jitted function per kind of call, for every instance: the model enters as a `Structure`
# (static, compared by architecture and config), the plan is static, everything else is data.


@eqx.filter_jit
def _intervened(
    model: Structure, plan: Plan, params, interventions, base, sources, locations, subspaces, constants, key
):
    _programs.count_trace()
    return run(model.adapter, plan, params, interventions, base, sources, locations, subspaces, constants, key)


@eqx.filter_jit
def _plain(model: Structure, params, inputs):
    _programs.count_trace()
    return model.adapter.apply(params, inputs)


@eqx.filter_jit
def _generation(model: Structure, plan: Plan, settings: tuple, params, interventions, base, sources, locations,
                subspaces, constants, key, prompt_active, step_mask, sample_key):  # fmt: skip
    _programs.count_trace()
    max_new_tokens, do_sample, temperature = settings
    return _generate(
        model.adapter,
        plan,
        params,
        interventions,
        base,
        sources,
        locations,
        subspaces,
        constants,
        key,
        max_new_tokens=max_new_tokens,
        prompt_active=prompt_active,
        step_mask=step_mask,
        do_sample=do_sample,
        temperature=temperature,
        sample_key=sample_key,
    )


def _signature(*trees) -> tuple:
    """What decides which compiled program a call runs: the tree structure, the arrays' shapes
    and dtypes, and the other leaves (static)."""
    leaves, treedef = jax.tree_util.tree_flatten(trees)
    described: list[Any] = []
    for leaf in leaves:
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            described.append((leaf.shape, str(leaf.dtype), bool(getattr(leaf, "weak_type", False))))
        else:
            try:
                hash(leaf)
                described.append(leaf)
            except TypeError:
                described.append(("object", id(leaf)))
    return treedef, tuple(described)


class IntervenableModel:
    """A model with interventions, called like pyvene's `IntervenableModel`.

    >>> import jaxvene as jv, transformers
    >>> gpt2 = transformers.FlaxGPT2LMHeadModel(
    ...     transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50), seed=0)
    >>> config = jv.IntervenableConfig([{"layer": 1, "component": "block_output"}],
    ...                                intervention_types=jv.VanillaIntervention)
    >>> model = jv.IntervenableModel(config, gpt2)
    >>> _, patched = model({"input_ids": [[1, 2, 3, 4, 5, 6]]}, [{"input_ids": [[7, 8, 9, 10, 11, 12]]}],
    ...                    {"sources->base": 3})
    >>> patched.logits.shape
    (1, 6, 50)

    The pure function underneath is :func:`jaxvene.core.run`; :meth:`plan` and
    :meth:`intervention_params` give its static and traced arguments.
    """

    def __init__(self, config, model, use_fast: bool = False, as_adaptor: bool = False, *, params=None, **kwargs):
        if as_adaptor:
            raise NotImplementedError("as_adaptor is not supported yet")
        self.config = _as_config(config)
        self.model = model
        self.adapter = adapt(model)
        self._params = params
        self._structure = Structure(self.adapter)
        self.mode = self.config.mode
        self.use_fast = use_fast  # accepted for pyvene compatibility; locations are always per example
        built = build_plan(self.adapter, self.config)
        self.sorted_keys = list(built.keys)
        self.representations = dict(zip(self.sorted_keys, self.config.representations))
        self._slots = list(built.interventions)
        self._plan = built.plan
        self._handles: dict[int, InterventionHandle] = {}
        self._signatures: set = set()

    @property
    def trace_count(self) -> int:
        """How many compiled programs this model's intervened calls have needed: one per plan
        and input shapes (new locations, subspaces or weights need none). Each program is
        compiled once per process, by the first model of the same structure that needs it;
        `jaxvene.core._programs.traces()` counts the compilations themselves."""
        return len(self._signatures)

    @property
    def params(self):
        """The model params the calls use: those given as `params=` (e.g. sharded over a
        mesh), else the model's own (`model.params`, read at each call)."""
        return self.adapter.params if self._params is None else self._params

    # ------------------------------------------------------------------ interventions
    @property
    def interventions(self) -> InterventionsView:
        """pyvene's `interventions`: key -> the stored intervention, as live handles whose
        `set_*` calls write back (see :class:`InterventionHandle`)."""
        return InterventionsView(self)

    def _handle(self, slot: int) -> InterventionHandle:
        if slot not in self._handles:
            self._handles[slot] = InterventionHandle(self, slot)
        return self._handles[slot]

    def _replace_slot(self, slot: int, new) -> None:
        new = new.module if isinstance(new, InterventionHandle) else new
        if not isinstance(new, Intervention):
            raise TypeError(f"an intervention must be a jaxvene Intervention, got {type(new).__name__}")
        self._slots[slot] = new

    # ------------------------------------------------------------------ pure-core access
    def plan(self) -> Plan:
        """The static part of a call: placements, mode, groups."""
        return self._plan

    def intervention_params(self) -> tuple:
        """The traced part the interventions own: one module per slot (linked ones share)."""
        return tuple(self._slots)

    def set_intervention_params(self, interventions) -> None:
        """Install trained interventions (same structure as :meth:`intervention_params`)."""
        interventions = tuple(iv.module if isinstance(iv, InterventionHandle) else iv for iv in interventions)
        if len(interventions) != len(self._slots):
            raise ValueError(f"expected {len(self._slots)} interventions, got {len(interventions)}")
        self._slots = list(interventions)

    def _program(self, plan: Plan | None = None) -> Callable:
        """The jitted intervened call, `(params, interventions, base, sources, locations,
        subspaces, constants, key) -> (outputs, collected)`: the shared program for this
        model's structure and plan (`plan`, default this model's)."""
        structure, plan = self._structure, self._plan if plan is None else plan

        def program(params, interventions, base, sources, locations, subspaces, constants, key):
            args = (params, interventions, base, sources, locations, subspaces, constants, key)
            self._signatures.add(_signature(*args))
            return _intervened(structure, plan, *args)

        return program

    def _sharing_sources(self, given, prepared: list) -> tuple[Plan, list]:
        """In parallel mode, groups fed by the same input (the same object, as in pyvene's
        tutorials: `[None] + [base] * n`) share one source run: the plan's placements point to
        the first such group and the others get `None`. A source run is a plain forward pass,
        so this changes no number, only how many passes are traced, compiled and run."""
        plan = self._plan
        if plan.mode != "parallel" or given is None or plan.num_groups < 2:
            return plan, prepared
        given = broadcast_sources(given, plan.num_groups)
        first = []
        for g, src in enumerate(given):
            first.append(next((h for h in range(g) if src is not None and given[h] is src), g))
        if first == list(range(plan.num_groups)):
            return plan, prepared
        merged = self.__dict__.setdefault("_merged_plans", {})
        signature = tuple(first)
        if signature not in merged:
            placements = tuple(dataclasses.replace(p, group=first[p.group]) for p in plan.placements)
            merged[signature] = dataclasses.replace(plan, placements=placements)
        return merged[signature], [src if first[g] == g else None for g, src in enumerate(prepared)]

    # ------------------------------------------------------------------ calling
    def prepare(self, base, sources=None, unit_locations=None, subspaces=None, source_representations=None):
        """pyvene's arguments -> the checked arrays :func:`jaxvene.core.run` takes."""
        adapter, plan = self.adapter, self._plan
        base_in = adapter.prepare(base)
        adapter.validate(base_in, "base")
        batch = adapter.batch_size(base_in)
        n = len(plan.placements)
        source_list = broadcast_sources(sources, plan.num_groups)
        prepared_sources = []
        for g, src in enumerate(source_list):
            if src is None:
                prepared_sources.append(None)
                continue
            src_in = adapter.prepare(src)
            adapter.validate(src_in, f"source {g}")
            if adapter.batch_size(src_in) != batch:
                raise ValueError(
                    f"source {g} has {adapter.batch_size(src_in)} examples but the base has {batch}; "
                    "sources and base must have the same batch size."
                )
            prepared_sources.append(src_in)

        def shape_of(inputs, site):
            # (batch, length of the site's position axis) for the inputs that run through it
            inputs = base_in if inputs is None else inputs
            return adapter.batch_size(inputs), adapter.site_length(inputs, site)

        locations = [None] * n
        if self.mode == "parallel":
            keys = ["sources->base"]
            locs = broadcast_unit_locations(unit_locations, n, batch, keys)["sources->base"]
            for i, p in enumerate(plan.placements):
                shapes = (shape_of(prepared_sources[p.group], p.source_site), shape_of(base_in, p.site))
                locations[i] = placement_locations(
                    locs, i, n, p.unit, shapes, p.site.heads, f"intervention {i} ({p.site.describe()})"
                )
        else:
            groups = plan.num_groups
            keys = [f"source_{g}->source_{g + 1}" for g in range(groups - 1)] + [f"source_{groups - 1}->base"]
            locs = broadcast_unit_locations(unit_locations, n, batch, keys)
            for g, key in enumerate(keys):
                members = [i for i, p in enumerate(plan.placements) if p.group == g]
                target = prepared_sources[g + 1] if g + 1 < groups else base_in
                pair = locs[key]
                for j, i in enumerate(members):
                    p = plan.placements[i]
                    # pyvene indexes serial locations within the group; a full-length list works too
                    count = n if _side_len(pair) == n and n != len(members) else len(members)
                    index = i if count == n and n != len(members) else j
                    shapes = (shape_of(prepared_sources[g], p.source_site), shape_of(target, p.site))
                    locations[i] = placement_locations(
                        pair, index, count, p.unit, shapes, p.site.heads, f"{key} intervention {j}"
                    )
        for i, p in enumerate(plan.placements):
            self._check_unit_counts(i, p, locations[i])

        sub_lists = broadcast_subspaces(subspaces, n, batch)
        subs = []
        for i, p in enumerate(plan.placements):
            iv = self._slots[p.slot]
            subs.append(
                expand_subspaces(
                    sub_lists[i], batch, iv.subspace_partition, iv.subspace_size, f"intervention {i} subspaces"
                )
            )
            if subs[-1] is not None and iv.collects and (subs[-1] < 0).any():
                raise ValueError(
                    f"intervention {i}: CollectIntervention needs the same number of subspace indices per example"
                )
        constants = self._constants(source_representations)
        return base_in, prepared_sources, tuple(locations), tuple(subs), constants

    def _check_unit_counts(self, i, p: Placement, pair) -> None:
        src, base = pair
        if src is None or base is None:
            return
        src_shape = tuple(a.shape[1] for a in src) if isinstance(src, tuple) else (src.shape[1],)
        base_shape = tuple(a.shape[1] for a in base) if isinstance(base, tuple) else (base.shape[1],)
        if src_shape != base_shape and src_shape != (1,) * len(src_shape):
            raise ValueError(
                f"intervention {i} ({p.site.describe()}): the source selects {src_shape} units per example "
                f"but the base {base_shape}; they must match (or the source select one)."
            )

    def _constants(self, source_representations):
        n = len(self._plan.placements)
        if source_representations is None:
            return (None,) * n
        if isinstance(source_representations, dict):
            unknown = sorted(set(source_representations) - set(self.sorted_keys))
            if unknown:
                raise ValueError(f"source_representations names unknown keys {unknown}; keys are {self.sorted_keys}")
            return tuple(
                None if source_representations.get(k) is None else jnp.asarray(_np(source_representations[k]))
                for k in self.sorted_keys
            )
        if isinstance(source_representations, (list, tuple)):
            if len(source_representations) != n:
                raise ValueError(
                    f"source_representations has {len(source_representations)} entries for {n} interventions"
                )
            return tuple(None if r is None else jnp.asarray(_np(r)) for r in source_representations)
        value = jnp.asarray(_np(source_representations))
        return (value,) * n

    def __call__(
        self,
        base,
        sources=None,
        unit_locations=None,
        source_representations=None,
        subspaces=None,
        labels=None,
        output_original_output: bool = False,
        return_dict: bool | None = None,
        use_cache=None,
        intervention_additional_kwargs=None,
        key=None,
        params=None,
    ):
        """pyvene's `forward`: returns `(original_or_None, intervened)`, with the collected
        activations as `((original, collected), intervened)` when a Collect intervention exists.

        `params` (jaxvene's addition) replaces the model params for this call (see
        :attr:`params`); they enter the compiled program as an argument, so params sharded
        over a mesh stay sharded (nothing gathers them first).
        """
        if intervention_additional_kwargs:
            raise NotImplementedError("intervention_additional_kwargs is not supported yet")
        params = self.params if params is None else params
        base_in, sources_in, locations, subs, constants = self.prepare(
            base, sources, unit_locations, subspaces, source_representations
        )
        plan, sources_in = self._sharing_sources(sources, sources_in)
        outputs, collected = self._program(plan)(
            params, tuple(self._slots), base_in, sources_in, locations, subs, constants, key
        )
        if labels is not None:
            outputs = dict(outputs, loss=causal_lm_loss(outputs["logits"], jnp.asarray(_np(labels))))
        intervened = self.adapter.wrap_output(outputs)
        original = None
        if output_original_output:
            original = self.adapter.wrap_output(_plain(self._structure, params, base_in))
        collected_list = [
            collected[i]
            for i, p in enumerate(self._plan.placements)
            if self._slots[p.slot].collects and collected[i] is not None
        ]
        if return_dict:
            return IntervenableModelOutput(original, intervened, collected_list or None)
        if any(self._slots[p.slot].collects for p in self._plan.placements):
            return (original, collected_list), intervened
        return original, intervened

    forward = __call__

    def generate(
        self,
        base,
        sources=None,
        unit_locations=None,
        source_representations=None,
        intervene_on_prompt: bool = False,
        subspaces=None,
        output_original_output: bool = False,
        intervention_additional_kwargs=None,
        *,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        timesteps=None,
        key=None,
        params=None,
        **generation_kwargs,
    ):
        """Generate with interventions (jaxvene's own decode loop with a KV cache).

        Returns `(original_or_None, sequences)`, the prompt followed by `max_new_tokens` new
        tokens, `(B, T + max_new_tokens)`; with a Collect intervention,
        `((original, collected), sequences)` where `collected[k] = (prompt_pass, decode_steps)`,
        the latter stacked over steps.

        Where interventions act (decode step t reads the t-th generated token, see
        :mod:`jaxvene.core._generate`):

        - `intervene_on_prompt=False` (pyvene's default): every decode step, at the new token;
          the prompt pass is not touched. `unit_locations` then only choose source positions.
        - `intervene_on_prompt=True` with `unit_locations=None`: the whole prompt and every step.
        - `intervene_on_prompt=True` with locations: the prompt pass at those positions only.
        - `timesteps=[...]` (jaxvene's addition): exactly these decode steps, whatever the
          above says for steps; `timesteps=[]` for none, `"all"` for all.

        Sampling (`do_sample=True`) draws from `softmax(logits / temperature)` with `key`.
        `params` replaces the model params for this call, as in :meth:`__call__`.
        """
        require(self.adapter, CachedDecoder, "IntervenableModel.generate")
        if intervention_additional_kwargs:
            raise NotImplementedError("intervention_additional_kwargs is not supported yet")
        if generation_kwargs:
            raise TypeError(
                f"unsupported generation arguments {sorted(generation_kwargs)}; jaxvene's decode loop "
                "takes max_new_tokens, do_sample, temperature, timesteps and key"
            )
        if do_sample and key is None:
            raise ValueError("do_sample=True needs a PRNG key: generate(..., key=jax.random.key(0))")
        steps = max_new_tokens - 1
        if timesteps is None:
            active = (not intervene_on_prompt) or unit_locations is None
            step_mask = np.full((steps,), active)
        elif isinstance(timesteps, str) and timesteps == "all":
            step_mask = np.ones((steps,), bool)
        else:
            step_mask = np.zeros((steps,), bool)
            for t in timesteps:
                if not 0 <= int(t) < steps:
                    raise IndexError(
                        f"timestep {t} is out of range: {max_new_tokens} new tokens make {steps} decode "
                        f"steps (0..{steps - 1}); step t reads the t-th generated token"
                    )
                step_mask[int(t)] = True
        base_in, sources_in, locations, subs, constants = self.prepare(
            base, sources, unit_locations, subspaces, source_representations
        )
        settings = (int(max_new_tokens), bool(do_sample), float(temperature))
        sample_key = None if key is None else jax.random.fold_in(key, 0x5A3)
        params = self.params if params is None else params
        plan, sources_in = self._sharing_sources(sources, sources_in)
        args = (params, tuple(self._slots), base_in, sources_in, locations, subs, constants, key)
        program = lambda *rest: _generation(self._structure, plan, settings, *args, *rest)
        tokens, prompt_collected, step_collected = program(jnp.asarray(intervene_on_prompt), step_mask, sample_key)
        sequences = jnp.concatenate([base_in["input_ids"], tokens], axis=1)
        original = None
        if output_original_output:
            plain, _, _ = program(jnp.asarray(False), np.zeros((steps,), bool), sample_key)
            original = jnp.concatenate([base_in["input_ids"], plain], axis=1)
        collects = [i for i, p in enumerate(self._plan.placements) if self._slots[p.slot].collects]
        if collects:
            collected = [(prompt_collected[i], step_collected[i] if step_collected else None) for i in collects]
            return (original, collected), sequences
        return original, sequences

    # ------------------------------------------------------------------ saving
    def save(self, save_directory: str) -> None:
        """Config as JSON and intervention weights as safetensors (atomic writes, no pickle)."""
        stored = {key: self._slots[p.slot] for key, p in zip(self.sorted_keys, self._plan.placements)}
        view = types.SimpleNamespace(  # what saving reads, with the modules themselves (not handles)
            mode=self.mode,
            config=self.config,
            sorted_keys=self.sorted_keys,
            interventions=stored,
            plan=self.plan,
            intervention_params=self.intervention_params,
            adapter=self.adapter,
        )
        save_intervenable(view, save_directory, adapter=self.adapter)

    @staticmethod
    def load(load_directory: str, model) -> IntervenableModel:
        """Rebuild a saved setup around `model`; errors if the save does not match it."""
        config, saved, weights = read_save(load_directory)
        intervenable = IntervenableModel(config, model)
        intervenable.set_intervention_params(
            restore_interventions(
                intervenable.plan(), intervenable.intervention_params(), saved, weights, adapter=intervenable.adapter
            )
        )
        return intervenable

    # ------------------------------------------------------------------ pyvene helpers
    def get_trainable_parameters(self):
        """The arrays of trainable interventions (linked ones once), as a list."""
        leaves = []
        for iv in self._slots:
            if iv.trainable:
                leaves.extend(jax.tree_util.tree_leaves(eqx.filter(iv, eqx.is_inexact_array)))
        return leaves

    def count_parameters(self, include_model: bool = False) -> int:
        count = sum(int(np.prod(x.shape)) for x in self.get_trainable_parameters())
        if include_model:
            model_arrays = jax.tree_util.tree_leaves(eqx.filter(self.params, eqx.is_array))
            count += sum(int(np.prod(x.shape)) for x in model_arrays)
        return count

    def set_temperature(self, temp) -> None:
        """pyvene's `set_temperature`: every stored intervention that has a temperature
        (Boundless, SigmoidMask and SigmoidMaskRotated; pyvene skips the last) gets `temp`
        (a number or a scalar array) for the next call and the next training. In place, like
        pyvene's: temperatures are data, so nothing recompiles."""
        self._slots = list(_pyvene_utils.set_temperatures(self._slots, temp))

    def disable_model_gradients(self) -> None:
        """pyvene's `disable_model_gradients`, a no-op: JAX computes no gradient for the model's
        params unless asked to, and jaxvene's training differentiates the interventions only. The
        wrapped model is not changed (pyvene switches it to eval mode and freezes it)."""
        return None

    def enable_model_gradients(self) -> None:
        """pyvene trains the model's params with the interventions after this call; jaxvene's
        training never does, so this raises an error that says what to write instead."""
        raise NotImplementedError(
            "jaxvene trains what you differentiate: jv.training trains the interventions only. To train "
            "the model's params too, differentiate jaxvene.core.run(adapter, plan, params, interventions, "
            "...) with respect to params (model.adapter.params) with jax.grad and optax"
        )

    def train(self, mode: bool = True) -> None:
        """pyvene's `train()` turns on the wrapped model's dropout; jaxvene always runs the model
        deterministically (pyvene's eval mode), so `train(True)` raises and `train(False)` does
        nothing."""
        if mode:
            raise NotImplementedError(
                "jaxvene runs the wrapped model deterministically (dropout off, pyvene's eval mode) and "
                "has no train mode: delete the call (training interventions needs none)"
            )

    def eval(self) -> None:
        """pyvene's `eval()`: nothing to do, the model always runs deterministically."""
        return None

    def set_device(self, device, set_model: bool = True) -> None:
        """pyvene's `set_device`: move the interventions' arrays (and the model's params, with
        `set_model`) to `device` with `jax.device_put`.

        JAX already puts new arrays on its default device (the accelerator when there is one), so
        a ported `set_device("cuda")` can simply go. `device` is a `jax.Device`, or pyvene's
        names: `"cpu"`, `"cuda"` (or `"gpu"`), `"tpu"`, with `":N"` for the N-th; an int (the
        N-th GPU, as in torch) or a `torch.device`. A platform JAX does not have raises. The
        model's params are replaced on the model (`model.params`, for HF Flax models and
        `jv.NativeDecoder`); for a model whose adapter holds its own params this raises: put
        them with `jax.device_put` before wrapping, or pass `set_model=False`. Params given as
        `IntervenableModel(..., params=)` are moved instead of the model's.
        """
        target = _jax_device(device)
        if set_model and self._params is not None:
            self._params = _put(self._params, target)
        elif set_model:
            params = _put(self.adapter.params, target)
            holder = self.model
            if not hasattr(holder, "params"):
                raise TypeError(_SET_MODEL_ERROR.format(type(self.model).__name__))
            old = holder.params
            holder.params = params
            if not _same_leaves(self.adapter.params, params):
                holder.params = old
                raise TypeError(_SET_MODEL_ERROR.format(type(self.model).__name__))
        self._slots = [_put(iv, target) for iv in self._slots]

    def get_device(self):
        """pyvene's `get_device`: the `jax.Device` that holds the model's params (an error when
        they are spread over several)."""
        leaves = [x for x in jax.tree_util.tree_leaves(self.params) if isinstance(x, jax.Array)]
        devices = set().union(*(x.devices() for x in leaves)) if leaves else {jax.devices()[0]}
        if len(devices) != 1:
            raise ValueError(
                f"the model's params are spread over {len(devices)} devices; read an array's .sharding instead"
            )
        return devices.pop()

    def train_alignment(self, train_dataloader, compute_loss, compute_metrics=None, inputs_collator=None, **kwargs):
        """pyvene's built-in DAS loop over pyvene-style batches; see
        :func:`jaxvene._facade._pyvene_utils.train_alignment` (`compute_loss` must be JAX
        code). Returns the loss of every batch. jaxvene's own form:
        `jv.training.make_batch` + `jv.training.train_interventions`."""
        return _pyvene_utils.train_alignment(
            self, train_dataloader, compute_loss, compute_metrics, inputs_collator, **kwargs
        )

    def eval_alignment(self, eval_dataloader, compute_metrics, inputs_collator=None, **kwargs):
        """pyvene's evaluation over pyvene-style batches: `compute_metrics([logits], [labels])`
        averaged with the batch sizes as weights (see
        :func:`jaxvene._facade._pyvene_utils.eval_alignment`). jaxvene's own IIA:
        `jv.training.evaluate_iia`."""
        if kwargs:
            raise TypeError(f"eval_alignment got unknown arguments {sorted(kwargs)}")
        return _pyvene_utils.eval_alignment(self, eval_dataloader, compute_metrics, inputs_collator)

    def __repr__(self) -> str:
        lines = [f"IntervenableModel({type(self.model).__name__}, mode={self.mode!r})"]
        for key, p in zip(self.sorted_keys, self._plan.placements):
            lines.append(f"  {key}: {type(self._slots[p.slot]).__name__}")
        return "\n".join(lines)


_SET_MODEL_ERROR = (
    "set_device(..., set_model=True) cannot replace the params of this {}: its adapter holds its own "
    "copy. Put them on the device with jax.device_put before wrapping the model, or pass set_model=False"
)


def _jax_device(device) -> jax.Device:
    """A `jax.Device` from a device, "cuda:1"-style names, an int or a `torch.device`."""
    if isinstance(device, jax.Device):
        return device
    if isinstance(device, int):
        platform, index = "gpu", device
    else:
        if hasattr(device, "type") and hasattr(device, "index"):  # a torch.device
            device = device.type if device.index is None else f"{device.type}:{device.index}"
        name, _, number = str(device).partition(":")
        platform = {"cuda": "gpu", "rocm": "gpu"}.get(name, name)
        index = int(number) if number else 0
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        available = sorted({d.platform for d in jax.devices()})
        raise ValueError(
            f"no {device!r} device: JAX has {available} here. JAX already puts arrays on its default "
            f"device ({jax.devices()[0]}), so a ported set_device call can simply go"
        ) from None
    if not 0 <= index < len(devices):
        raise ValueError(f"device {device!r}: JAX has {len(devices)} {platform} devices (0..{len(devices) - 1})")
    return devices[index]


def _put(tree, device):
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, device) if isinstance(x, jax.Array) else x, tree)


def _same_leaves(a, b) -> bool:
    left, right = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(left) == len(right) and all(x is y for x, y in zip(left, right))


def _side_len(pair) -> int | None:
    side = pair[0] if pair[0] is not None else pair[1]
    return None if side is None else len(side)


def _np(x):
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return x


def causal_lm_loss(logits, labels):
    """Mean next-token cross-entropy over labels != -100, as HF's causal LM heads compute it."""
    logits = logits[:, :-1]
    labels = labels[:, 1:]
    valid = labels != -100
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    return -(picked * valid).sum() / jnp.maximum(valid.sum(), 1)
