"""Training interventions (DAS, IIT) with Optax: a jitted step over intervention params only.

Why it is fast: the step is one compiled program of the pure core. The model's params are an
argument that is never differentiated; the source runs and the base run below the intervened
layer do not depend on the trained params, so `jax.grad` evaluates them once (forward only)
and differentiates just the layers above the intervention; the unembedding runs only at the
positions the loss reads (`logit_positions`). Nothing is recomputed inside the gradient.
Across epochs, `cached=True` goes further: what does not depend on the interventions is
computed once per batch (:mod:`jaxvene.training._frozen`), and a step runs only the layers
and positions the interventions can change.

Data-parallel: pass a `jax.sharding.Mesh` with a "data" axis; the batch is sharded along it
and the params and optimizer state are replicated. The same code runs on one device or many,
with the same results up to float reassociation.

Several hosts (after `jax.distributed.initialize()`, every process running the same program):
each process builds its own share of every batch with :func:`make_batch` and passes
`local=True` (to :func:`train_interventions`, :func:`evaluate_iia` or :func:`shard_batch`),
which assembles the global batch from the processes' shares
(`jax.make_array_from_process_local_data`); without it every process must hold the whole
batch. Reductions (the loss, IIA) run on device; the loss is read back once after the loop,
or every `log_every` steps; only process 0 shows progress (and saves, see
`IntervenableModel.save`).

The step donates its state: `step(state, batch, params)` reuses the old state's buffers for
the new one, so a state passed to it must not be used again (`init()` copies the model's
intervention arrays, which stay valid).

A batch is a dict of arrays (build one with :func:`make_batch` from pyvene-style arguments):
`{"base": inputs, "sources": [inputs per group], "locations": ..., "subspaces": ...,
"labels": (B,) ints, "logit_positions": (B, K) ints}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..core._run import run
from ._frozen import cache_frozen, cached_logits

__all__ = [
    "Trainer",
    "TrainState",
    "make_batch",
    "iit_loss",
    "boundary_penalty",
    "trainable_filter",
    "make_train_step",
    "train_interventions",
    "evaluate_iia",
    "shard_batch",
    "cache_frozen",
    "cached_logits",
]


class Trainer(NamedTuple):
    init: Callable  # () -> TrainState
    step: Callable  # (state, batch, params) -> (state, loss), jitted
    interventions_of: Callable  # state -> the interventions tuple


class TrainState(NamedTuple):
    trainable: object  # the trained arrays of the interventions (eqx.partition's first half)
    opt_state: object
    step: jax.Array
    #: the rest of the interventions (eqx.partition's second half: temperatures, frozen fields),
    #: data of the step, so a temperature set between steps is the one the next step uses;
    #: None: the interventions as `make_train_step` found them
    frozen: object = None


def trainable_filter(interventions) -> tuple:
    """Which leaves train: the inexact arrays of interventions whose class is trainable, except
    the fields a class lists in `frozen_fields` (temperatures, PCA statistics)."""
    masks = []
    for iv in interventions:
        mask = jax.tree_util.tree_map(lambda x, t=iv.trainable: bool(t) and eqx.is_inexact_array(x), iv)
        for name in getattr(iv, "frozen_fields", ()):
            if getattr(iv, name, None) is not None:
                where: Callable[..., object] = lambda m, n=name: getattr(m, n)
                mask = eqx.tree_at(where, mask, False)
        masks.append(mask)
    return tuple(masks)


def make_batch(
    model,
    base,
    sources=None,
    unit_locations=None,
    subspaces=None,
    labels=None,
    logit_position: int | None = -1,
    source_representations=None,
) -> dict:
    """A training/eval batch from pyvene-style arguments (checked, as arrays)."""
    base_in, sources_in, locations, subs, constants = model.prepare(
        base, sources, unit_locations, subspaces, source_representations
    )
    batch = {
        "base": base_in,
        "sources": sources_in,
        "locations": locations,
        "subspaces": subs,
        "source_representations": constants,
    }
    if labels is not None:
        batch["labels"] = jnp.asarray(np.asarray(labels)).astype(jnp.int32)
    if logit_position is not None and "input_ids" in base_in:
        length = base_in["input_ids"].shape[1]
        pos = logit_position % length
        batch["logit_positions"] = jnp.full((base_in["input_ids"].shape[0], 1), pos, jnp.int32)
    return batch


def iit_loss(logits, labels):
    """Counterfactual-label cross-entropy: `logits (B, K, V)` at the read positions (the last
    one is used; a classifier's `(B, V)` as is) against the counterfactual labels `(B,)`."""
    logits = logits[:, -1] if logits.ndim == 3 else logits  # classifiers give (B, V)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def boundary_penalty(interventions, coefficient: float = 1.0):
    """Boundless DAS's penalty: `coefficient * sum(boundaries)` over interventions that have
    an `intervention_boundaries` field (it keeps the learned subspace small)."""
    total = jnp.zeros(())
    for iv in interventions:
        boundaries = getattr(iv, "intervention_boundaries", None)
        if boundaries is not None:
            total = total + jnp.sum(boundaries)
    return coefficient * total


def shard_batch(batch, mesh: Mesh, *, local: bool = False):
    """Put a batch on `mesh`, split along its leading (batch) axis over the "data" axis.

    Every array of the batch has the examples on its leading axis. `local=False`: the batch
    is the whole (global) batch, and on several processes every process passes the same one.
    `local=True`: each process passes its own share (the same number of examples on every
    process, in process order: process 0's examples come first), and the result is the global
    batch of all the shares, each process's examples on its own devices. On one process
    both are the same."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))

    def place(x):
        if not getattr(x, "ndim", 0):
            return x
        if local and jax.process_count() > 1:
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))
        return _put(x, sharding)

    return jax.tree_util.tree_map(place, batch)


def _put(x, sharding: NamedSharding):
    """`x`, the same value on every process, placed with `sharding` (which may span devices
    of other processes: then each process fills only its own devices)."""
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _replicate(tree, mesh: Mesh):
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: _put(x, sharding) if isinstance(x, jax.Array) else x, tree)


def _fresh(tree):
    """`tree` with every array copied into a buffer of its own (donation safe: donating the
    copy never invalidates the original)."""
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True) if isinstance(x, jax.Array) else x, tree)


def _on_mesh(tree, mesh: Mesh):
    """Model params for a step on `mesh`: arrays already sharded over this mesh stay as they are
    (FSDP or tensor-parallel params are never gathered); the others are replicated onto it."""

    def place(x):
        if not isinstance(x, jax.Array):
            return x
        if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh:
            return x
        return _put(x, NamedSharding(mesh, PartitionSpec()))

    return jax.tree_util.tree_map(place, tree)


class _Step:
    """`step(state, batch, params)` over the jitted `fn((batch, params), state)` that donates
    the state; `lower` gives the compiled program (e.g. to read its HLO)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, state: TrainState, batch, params):
        return self.fn((batch, params), state)

    def lower(self, state: TrainState, batch, params):
        """`jax.stages.Lowered` of the step (`.compile().as_text()` is its HLO)."""
        return self.fn.lower((batch, params), state).lowered


def make_train_step(
    model,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable = iit_loss,
    penalty: Callable | None = None,
    *,
    cached: bool = False,
):
    """A :class:`Trainer` `(init, step, interventions_of)` for `model`'s interventions.

    `init() -> TrainState` (the model's intervention arrays copied: the step may reuse the
    state's buffers); `step(state, batch, params) -> (state, loss)` is jitted and **donates**
    `state`: its buffers become the new state's, so use the returned state and never the one
    passed in (the batch and the params are not donated). `loss_fn(logits, labels)`;
    `penalty(interventions) -> scalar` is added (e.g. :func:`boundary_penalty`).

    With the batch sharded over devices (data parallel), the step's program reduces the
    intervention gradients across devices with all-reduces that XLA combines; the loss comes
    back as a replicated scalar.

    `cached=True`: the step takes frozen caches (:func:`jaxvene.training.cache_frozen`) in
    place of batches and runs only the layers and positions the interventions can change; the
    same loss and gradients.
    """
    adapter, plan = model.adapter, model.plan()
    interventions = model.intervention_params()
    trainable, static = eqx.partition(interventions, trainable_filter(interventions))

    def loss(trainable, frozen, batch, params):
        ivs = eqx.combine(trainable, static if frozen is None else frozen)
        if cached:
            value = loss_fn(cached_logits(adapter, plan, params, ivs, batch), batch["labels"])
            return value if penalty is None else value + penalty(ivs)
        outputs, _ = run(
            adapter,
            plan,
            params,
            ivs,
            batch["base"],
            batch["sources"],
            batch["locations"],
            batch.get("subspaces"),
            batch.get("source_representations"),
            logit_positions=batch.get("logit_positions"),
        )
        value = loss_fn(outputs["logits"], batch["labels"])
        if penalty is not None:
            value = value + penalty(ivs)
        return value

    # the state is the second argument so that equinox donates it and only it (the batch and
    # the model's params, the first argument, are never donated)
    @eqx.filter_jit(donate="all-except-first")
    def donating_step(fixed, state: TrainState):
        batch, params = fixed
        value, grads = jax.value_and_grad(loss)(state.trainable, state.frozen, batch, params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        new = optax.apply_updates(state.trainable, updates)
        return TrainState(new, opt_state, state.step + 1, state.frozen), value

    step = _Step(donating_step)

    def init() -> TrainState:
        # copies: the state is donated to the step, the model keeps its own arrays
        return _fresh(TrainState(trainable, optimizer.init(trainable), jnp.zeros((), jnp.int32), static))

    def interventions_of(state: TrainState):
        return eqx.combine(state.trainable, static if state.frozen is None else state.frozen)

    return Trainer(init, step, interventions_of)


def train_interventions(
    model,
    batches: Iterable[dict],
    optimizer: optax.GradientTransformation,
    *,
    epochs: int = 1,
    loss_fn: Callable = iit_loss,
    penalty: Callable | None = None,
    mesh: Mesh | None = None,
    on_step: Callable | None = None,
    progress: bool = True,
    params=None,
    local: bool = False,
    log_every: int | None = None,
    cached: bool = False,
) -> list[float]:
    """Train the interventions of `model` on `batches` (a list of batches from
    :func:`make_batch`) for `epochs`; installs the result in `model` and returns the losses.

    Args:
      on_step: `on_step(step, interventions) -> interventions` may change the interventions
        between steps (e.g. a temperature schedule); `step` counts the steps done (from 1),
        and calling it makes no host sync. The interventions it is given are the training
        state's, which the next step donates: read what it needs during the call (keep
        `float(iv.temperature)`, not the array). What it returns is what the next step trains
        on; arrays in it that the state does not own (new ones, the model's) are copied first.
      mesh: a mesh with a "data" axis: every batch is sharded over it; model params already
        sharded over that mesh keep their sharding, the others are replicated.
      params: replaces the model's own (e.g. params sharded by hand).
      local: on several processes, each process passes its own share of every batch (see
        :func:`shard_batch`); needs `mesh`. Without it every process passes the whole batch.
      log_every: read the losses back from the device every `log_every` steps (the progress
        bar then shows the last loss read); default: once, after the loop, so no step waits
        for the device (the bar reads the latest loss only when it redraws).
      cached: compute each batch's frozen cache once (:func:`jaxvene.training.cache_frozen`:
        source activations, the base's state entering the lowest intervened layer, its keys
        and values) and train every epoch on the layers and positions the interventions can
        change only. Same losses; for plans a cache serves (else a clear error).

    Only process 0 shows a progress bar. Returns the loss of every step, as floats.
    """
    if local and mesh is None:
        raise ValueError("local=True assembles each process's share of a batch on a mesh: pass mesh= too")
    if log_every is not None and log_every < 1:
        raise ValueError(f"log_every must be a positive number of steps, got {log_every}")
    batches = list(batches)
    init, step, interventions_of = make_train_step(model, optimizer, loss_fn, penalty, cached=cached)
    state = init()
    params = _model_params(model) if params is None else params
    if mesh is not None:
        state, params = _replicate(state, mesh), _on_mesh(params, mesh)
        batches = [shard_batch(b, mesh, local=local) for b in batches]
    if cached:  # built from the (sharded) batches: sharded as they are
        batches = cache_frozen(model, batches, params)
    from ..analysis._progress import progress_bar  # redraws at most every 0.5 s (10 s in a log)

    bar = progress_bar(epochs * len(batches), "training interventions", progress)
    losses: list[float] = []
    pending: list[jax.Array] = []  # device scalars not read back yet
    done = 0
    for _ in range(epochs):
        for batch in batches:
            state, value = step(state, batch, params)
            pending.append(value)
            done += 1
            if on_step is not None:
                state = _after_on_step(state, on_step(done, interventions_of(state)), mesh)
            if log_every is not None and done % log_every == 0:
                losses.extend(float(v) for v in jax.device_get(pending))
                pending = []
            if bar is not None:
                if log_every is None:
                    bar.update(1, loss=value)  # a device scalar: read only when the bar redraws
                elif done % log_every == 0:
                    bar.update(1, loss=losses[-1])
                else:
                    bar.update(1)
    if bar is not None:
        bar.close()
    losses.extend(float(v) for v in jax.device_get(pending))
    model.set_intervention_params(interventions_of(state))
    return losses


def _model_params(model):
    """The params an intervenable model's calls use (its `params=`, else the model's own)."""
    own = getattr(model, "params", None)
    return model.adapter.params if own is None else own


def _after_on_step(state: TrainState, interventions, mesh: Mesh | None) -> TrainState:
    """The state with the interventions `on_step` returned: arrays that are not the state's
    own (new temperatures, arrays the caller still holds) are copied, since the next step
    donates them, and put on the mesh."""
    own = {id(x) for x in jax.tree_util.tree_leaves(state) if isinstance(x, jax.Array)}
    interventions = jax.tree_util.tree_map(
        lambda x: x if not isinstance(x, jax.Array) or id(x) in own else jnp.array(x, copy=True), interventions
    )
    trainable, frozen = eqx.partition(interventions, trainable_filter(interventions))
    if mesh is not None:
        trainable, frozen = _replicate(trainable, mesh), _replicate(frozen, mesh)
    return state._replace(trainable=trainable, frozen=frozen)  # a new temperature is used


def evaluate_iia(
    model, batches: Iterable[dict], params=None, *, mesh: Mesh | None = None, local: bool = False
) -> float:
    """Interchange intervention accuracy: the share of examples whose intervened prediction at
    the read position (argmax) equals the counterfactual label.

    `params` replaces the model's own. With `mesh` (and `local`) the batches are sharded as
    in :func:`train_interventions`. The count of correct predictions is reduced on device and
    read back once, so batches sharded over several processes' devices work as they are."""
    if local and mesh is None:
        raise ValueError("local=True assembles each process's share of a batch on a mesh: pass mesh= too")
    adapter, plan = model.adapter, model.plan()
    params = _model_params(model) if params is None else params
    interventions = model.intervention_params()
    if mesh is not None:
        interventions, params = _replicate(interventions, mesh), _on_mesh(params, mesh)

    @eqx.filter_jit
    def count_correct(ivs, batch, params):
        outputs, _ = run(
            adapter,
            plan,
            params,
            ivs,
            batch["base"],
            batch["sources"],
            batch["locations"],
            batch.get("subspaces"),
            batch.get("source_representations"),
            logit_positions=batch.get("logit_positions"),
        )
        logits = outputs["logits"]
        pred = jnp.argmax(logits[:, -1] if logits.ndim == 3 else logits, axis=-1)
        return jnp.sum(pred == batch["labels"], dtype=jnp.int32)

    counts, total = [], 0
    for batch in batches:
        if mesh is not None:
            batch = shard_batch(batch, mesh, local=local)
        counts.append(count_correct(interventions, batch, params))
        total += int(batch["labels"].shape[0])
    return int(sum(jax.device_get(counts))) / max(total, 1)
