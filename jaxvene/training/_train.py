"""Training interventions (DAS, IIT) with Optax: a jitted step over intervention params only.

Why it is fast: the step is one compiled program of the pure core. The model's params are an
argument that is never differentiated; the source runs and the base run below the intervened
layer do not depend on the trained params, so `jax.grad` evaluates them once (forward only)
and differentiates just the layers above the intervention; the unembedding runs only at the
positions the loss reads (`logit_positions`). Nothing is recomputed inside the gradient.

Data-parallel: pass a `jax.sharding.Mesh` with a "data" axis; the batch is sharded along it
and the params and optimizer state are replicated. The same code runs on one device or many
(and on several hosts after `jax.distributed.initialize()`), with the same results up to
float reassociation.

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


def shard_batch(batch, mesh: Mesh):
    """Put a batch on `mesh`, split along its leading (batch) axis over the "data" axis."""
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding) if getattr(x, "ndim", 0) else x, batch)


def _replicate(tree, mesh: Mesh):
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding) if isinstance(x, jax.Array) else x, tree)


def _on_mesh(tree, mesh: Mesh):
    """Model params for a step on `mesh`: arrays already sharded over this mesh stay as they are
    (FSDP or tensor-parallel params are never gathered); the others are replicated onto it."""

    def place(x):
        if not isinstance(x, jax.Array):
            return x
        if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh:
            return x
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))

    return jax.tree_util.tree_map(place, tree)


def make_train_step(
    model, optimizer: optax.GradientTransformation, loss_fn: Callable = iit_loss, penalty: Callable | None = None
):
    """A :class:`Trainer` `(init, step, interventions_of)` for `model`'s interventions.

    `init() -> TrainState`; `step(state, batch, params) -> (state, loss)` is jitted.
    `loss_fn(logits, labels)`; `penalty(interventions) -> scalar` is added (e.g.
    :func:`boundary_penalty`).
    """
    adapter, plan = model.adapter, model.plan()
    interventions = model.intervention_params()
    trainable, static = eqx.partition(interventions, trainable_filter(interventions))

    def loss(trainable, frozen, batch, params):
        ivs = eqx.combine(trainable, static if frozen is None else frozen)
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

    @eqx.filter_jit
    def step(state: TrainState, batch, params):
        value, grads = jax.value_and_grad(loss)(state.trainable, state.frozen, batch, params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        new = optax.apply_updates(state.trainable, updates)
        return TrainState(new, opt_state, state.step + 1, state.frozen), value

    def init() -> TrainState:
        return TrainState(trainable, optimizer.init(trainable), jnp.zeros((), jnp.int32), static)

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
) -> list[float]:
    """Train the interventions of `model` on `batches` (a list of batches from
    :func:`make_batch`) for `epochs`; installs the result in `model` and returns the losses.

    `on_step(step, interventions) -> interventions` may change interventions between steps
    (e.g. a temperature schedule). With `mesh`, every batch is sharded over its "data" axis;
    model params already sharded over that mesh keep their sharding, the others are
    replicated. `params` replaces the model's own (e.g. params sharded by hand).
    """
    batches = list(batches)
    init, step, interventions_of = make_train_step(model, optimizer, loss_fn, penalty)
    state = init()
    params = model.adapter.params if params is None else params
    if mesh is not None:
        state, params = _replicate(state, mesh), _on_mesh(params, mesh)
        batches = [shard_batch(b, mesh) for b in batches]
    from ..analysis._progress import progress_bar  # redraws at most every 0.5 s (10 s in a log)

    bar = progress_bar(epochs * len(batches), "training interventions", progress)
    losses = []
    for _ in range(epochs):
        for batch in batches:
            state, value = step(state, batch, params)
            losses.append(value)  # a device scalar: read back once, after the loop (no per-step sync)
            if on_step is not None:
                ivs = on_step(int(state.step), interventions_of(state))
                trainable, frozen = eqx.partition(ivs, trainable_filter(ivs))
                state = state._replace(trainable=trainable, frozen=frozen)  # a new temperature is used
            if bar is not None:
                bar.update(1, loss=value)  # the loss is read only when the bar redraws
    if bar is not None:
        bar.close()
    model.set_intervention_params(interventions_of(state))
    return [float(v) for v in jax.device_get(losses)]


def evaluate_iia(model, batches: Iterable[dict], params=None) -> float:
    """Interchange intervention accuracy: the share of examples whose intervened prediction at
    the read position (argmax) equals the counterfactual label. `params` replaces the model's
    own."""
    adapter, plan = model.adapter, model.plan()
    params = adapter.params if params is None else params
    interventions = model.intervention_params()

    @eqx.filter_jit
    def predict(ivs, batch, params):
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
        return jnp.argmax(logits[:, -1] if logits.ndim == 3 else logits, axis=-1)

    correct = total = 0
    for batch in batches:
        pred = np.asarray(predict(interventions, batch, params))
        correct += int((pred == np.asarray(batch["labels"])).sum())
        total += pred.shape[0]
    return correct / max(total, 1)
