"""Data-parallel training on 8 host devices: what the compiled step communicates, the donated
state, the loss read back every k steps, IIA reduced on device, and process-local batches on
one process (the 2-process case is tests/training/test_multiprocess.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxvene as jv
from jaxvene.core._write import gather, scatter

RAW = dict(
    model_type="qwen3",
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=64,
)
B, T = 16, 6


def _collectives(hlo: str) -> dict:
    ops = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
    return {op: len(re.findall(rf" {op}(-start)?\(", hlo)) for op in ops}


@pytest.fixture(scope="module")
def mesh():
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
    return Mesh(np.asarray(jax.devices()[:8]), ("data",))


@pytest.fixture(scope="module")
def model():
    return jv.NativeDecoder.random(RAW, seed=1, scale=0.3)


def _setup(model, rank=4):
    rng = np.random.default_rng(0)
    base, src = rng.integers(0, 64, (B, T)), rng.integers(0, 64, (B, T))
    positions = rng.integers(0, T, (B, 1)).tolist()  # a position per example: a real gather
    jm = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": 1, "component": "block_output", "low_rank_dimension": rank}],
            intervention_types=jv.LowRankRotatedSpaceIntervention,
        ),
        model,
    )
    labels = np.asarray(model(src).logits[:, -1].argmax(-1))
    batch = jv.training.make_batch(
        jm, {"input_ids": base}, [{"input_ids": src}], {"sources->base": ([positions], [positions])}, labels=labels
    )
    return jm, batch


def test_gather_and_scatter_at_locations_stay_batch_local(mesh):
    """With the batch sharded, reading and writing units at per-example locations needs no
    communication (indexing with an explicit batch iota made XLA all-gather the scatter)."""
    sharded = NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(0)
    cases = {
        "pos": ((B, T, 8), rng.integers(0, T, (B, 2))),
        "h": ((B, 4, T, 8), rng.integers(0, 4, (B, 2))),
        "h.pos": ((B, 4, T, 8), (rng.integers(0, 4, (B, 2)), rng.integers(0, T, (B, 3)))),
    }
    for unit, (shape, loc) in cases.items():
        view = jax.device_put(jnp.asarray(rng.normal(size=shape), jnp.float32), sharded)
        loc = jax.tree_util.tree_map(lambda x: jax.device_put(jnp.asarray(x, jnp.int32), sharded), loc)

        def patched(view, loc, unit=unit):
            return scatter(view, unit, loc, 2.0 * gather(view, unit, loc) + 1.0)

        def loss(view, loc, patched=patched):
            return jnp.sum(jnp.sin(patched(view, loc)))

        assert _collectives(jax.jit(patched).lower(view, loc).compile().as_text())["all-gather"] == 0, unit
        counts = _collectives(jax.jit(jax.grad(loss)).lower(view, loc).compile().as_text())
        assert counts == dict.fromkeys(counts, 0), (unit, counts)
        # the same values as on one device, written out by hand
        v, l = np.asarray(view), jax.tree_util.tree_map(np.asarray, loc)
        want = v.copy()
        for b in range(B):
            if unit == "h.pos":
                idx = np.ix_(l[0][b], l[1][b])
                want[b][idx] = 2.0 * v[b][idx] + 1.0
            else:
                want[b, l[b]] = 2.0 * v[b, l[b]] + 1.0
        np.testing.assert_allclose(np.asarray(jax.jit(patched)(view, loc)), want, rtol=1e-6)


def test_compiled_step_communicates_only_gradient_reductions(model, mesh):
    """The batch-sharded step gathers nothing (no all-gather of activations, indices or
    params); its all-reduces carry the intervention's gradients and the loss, combined by XLA
    into tuple all-reduces. (Measured here: 3 layers, intervention at layer 1: one tuple
    all-reduce; deeper models keep one per differentiated layer inside the backward loop.)"""
    jm, batch = _setup(model)
    init, step, _ = jv.training.make_train_step(jm, optax.adam(0.01))
    state = jv.training._train._replicate(init(), mesh)
    params = jv.training._train._on_mesh(model.params, mesh)
    hlo = step.lower(state, jv.training.shard_batch(batch, mesh), params).compile().as_text()
    counts = _collectives(hlo)
    assert counts["all-gather"] == counts["all-to-all"] == counts["collective-permute"] == 0, counts
    assert counts["all-reduce"] >= 1
    reduced = re.findall(r"= \(?([^=]*?)\)? all-reduce\(", hlo)
    shapes = {s.split("{")[0] for r in reduced for s in r.split(", ")}
    raw = jm.intervention_params()[0].raw
    assert f"f32[{raw.shape[0]},{raw.shape[1]}]" in shapes  # the rotation's gradient
    assert not any(s.startswith(("s32", "u32")) or s.count(",") >= 2 for s in shapes), shapes  # no activations


def test_the_step_donates_its_state_and_never_the_model_arrays(model):
    jm, batch = _setup(model)
    own = jm.intervention_params()[0].raw
    init, step, _ = jv.training.make_train_step(jm, optax.adam(0.01))
    state = init()
    old = state.trainable[0].raw
    state, _ = step(state, batch, model.params)
    assert old.is_deleted()  # the step reused the old state's buffer
    assert not own.is_deleted() and not any(x.is_deleted() for x in jax.tree_util.tree_leaves(model.params))
    np.asarray(own)  # the model's interventions and params stay readable
    # train_interventions twice on one model, and an on_step that hands back arrays the model
    # holds: they are copied before the next step donates them
    held = jm.intervention_params()

    def back_to_start(step, interventions):
        return held

    jv.training.train_interventions(jm, [batch], optax.adam(0.01), epochs=2, progress=False)
    jv.training.train_interventions(jm, [batch], optax.adam(0.01), epochs=2, on_step=back_to_start, progress=False)
    assert not held[0].raw.is_deleted()
    np.testing.assert_array_equal(np.asarray(jm.intervention_params()[0].raw), np.asarray(held[0].raw))


def test_log_every_reads_the_loss_every_k_steps(model, monkeypatch):
    jm, batch = _setup(model)
    start = jm.intervention_params()
    reference = jv.training.train_interventions(jm, [batch], optax.adam(0.05), epochs=7, progress=False)
    reads = []
    device_get = jax.device_get

    def spy(x):
        reads.append(len(x))
        return device_get(x)

    monkeypatch.setattr(jax, "device_get", spy)
    jm.set_intervention_params(start)
    losses = jv.training.train_interventions(jm, [batch], optax.adam(0.05), epochs=7, log_every=3, progress=False)
    assert reads == [3, 3, 1]  # after steps 3 and 6, and the last one after the loop
    np.testing.assert_allclose(losses, reference, rtol=1e-6)
    with pytest.raises(ValueError, match="log_every"):
        jv.training.train_interventions(jm, [batch], optax.adam(0.05), log_every=0, progress=False)


def test_iia_and_local_batches_on_the_mesh_equal_one_device(model, mesh):
    results = []
    for kwargs in ({}, {"mesh": mesh}, {"mesh": mesh, "local": True}):
        jm, batch = _setup(model)
        losses = jv.training.train_interventions(jm, [batch], optax.adam(0.1), epochs=4, progress=False, **kwargs)
        results.append((losses, jv.training.evaluate_iia(jm, [batch], **kwargs)))
    for losses, iia in results[1:]:
        np.testing.assert_allclose(losses, results[0][0], rtol=1e-5)
        assert iia == results[0][1]
    on_mesh = jv.training.shard_batch(batch, mesh, local=True)  # one process: its share is the batch
    assert on_mesh["labels"].sharding.spec == P("data")
    np.testing.assert_array_equal(np.asarray(on_mesh["labels"]), np.asarray(batch["labels"]))
    with pytest.raises(ValueError, match="mesh"):
        jv.training.train_interventions(jm, [batch], optax.adam(0.1), local=True, progress=False)
