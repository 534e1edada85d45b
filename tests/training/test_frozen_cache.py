"""Training on the frozen model's cache gives the uncached step's loss and gradients (and the
same training run), on HF Flax and native decoders, with per-example positions, left padding,
two intervened layers and head units; plans a cache cannot serve are refused."""

import jax
import numpy as np
import optax
import pytest

import jaxvene as jv


def _native():
    raw = dict(
        model_type="llama",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=64,
    )
    return jv.NativeDecoder.random(raw, seed=0, scale=0.3)


REPS = {
    "one": [{"layer": 1, "component": "block_output", "low_rank_dimension": 2}],
    "two": [  # two layers, the lower one an attention input
        {"layer": 1, "component": "attention_input", "low_rank_dimension": 2},
        {"layer": 2, "component": "block_output", "low_rank_dimension": 2},
    ],
}


def _setup(model, reps, seed=0):
    rng = np.random.default_rng(seed)
    n, t = 6, 7
    base = {"input_ids": rng.integers(1, 50, (n, t)), "attention_mask": np.ones((n, t), np.int32)}
    base["attention_mask"][1, :2] = 0  # left padding
    src = {"input_ids": rng.integers(1, 50, (n, t))}
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.LowRankRotatedSpaceIntervention), model)
    where = [[[3]] + [[int(p)] for p in rng.integers(3, t, n - 1)] for _ in reps]  # per-example positions 3..6
    locs = {"sources->base": (where, where)}
    batch = jv.training.make_batch(jm, base, [src] * 1, locs, labels=rng.integers(0, 50, n))
    return jm, batch


@pytest.mark.parametrize("name", ["flax_gpt2", "flax_llama", "native"])
@pytest.mark.parametrize("reps", ["one", "two"])
def test_cached_step_equals_the_full_step(name, reps, request):
    model = _native() if name == "native" else request.getfixturevalue(name)
    jm, batch = _setup(model, REPS[reps])
    params = jm.adapter.params
    (cache,) = jv.training.cache_frozen(jm, [batch])
    assert cache["hidden"].shape[1] == 7 - 3  # recomputed from the first intervened position on
    ivs = jm.intervention_params()
    plan = jm.plan()

    def full(ivs):
        outputs, _ = jv.core.run(
            jm.adapter,
            plan,
            params,
            ivs,
            batch["base"],
            batch["sources"],
            batch["locations"],
            logit_positions=batch["logit_positions"],
        )
        return jv.training.iit_loss(outputs["logits"], batch["labels"])

    def cached(ivs):
        return jv.training.iit_loss(jv.training.cached_logits(jm, plan, params, ivs, cache), batch["labels"])

    ref_loss, ref_grads = jax.value_and_grad(full)(ivs)
    loss, grads = jax.jit(jax.value_and_grad(cached))(ivs)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
    assert max(float(np.abs(r).max()) for r in jax.tree_util.tree_leaves(ref_grads)) > 1e-4  # not vacuous


def test_cached_training_follows_the_uncached_run(flax_gpt2):
    runs = []
    for cached in (False, True):
        jm, batch = _setup(flax_gpt2, REPS["one"])
        losses = jv.training.train_interventions(
            jm, [batch, batch], optax.adam(0.05), epochs=2, progress=False, cached=cached
        )
        runs.append((losses, np.asarray(jax.tree_util.tree_leaves(jm.intervention_params())[0])))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-4)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-3, atol=1e-5)
    assert runs[0][0][-1] < runs[0][0][0]


def test_head_units_and_refusals(flax_llama):
    reps = [{"layer": 1, "component": "head_value_output", "unit": "h.pos", "low_rank_dimension": 1}]
    rng = np.random.default_rng(1)
    base, src = {"input_ids": rng.integers(1, 50, (2, 6))}, {"input_ids": rng.integers(1, 50, (2, 6))}
    jm = jv.IntervenableModel(
        jv.IntervenableConfig(reps, intervention_types=jv.LowRankRotatedSpaceIntervention), flax_llama
    )
    loc = [[[[1]] * 2, [[4]] * 2]]  # kv head 1 at position 4
    batch = jv.training.make_batch(jm, base, [src], {"sources->base": (loc, loc)}, labels=[3, 4])
    (cache,) = jv.training.cache_frozen(jm, [batch])
    assert cache["hidden"].shape[1] == 2
    ref, _ = jv.core.run(
        jm.adapter,
        jm.plan(),
        jm.adapter.params,
        jm.intervention_params(),
        batch["base"],
        batch["sources"],
        batch["locations"],
        logit_positions=batch["logit_positions"],
    )
    ours = jv.training.cached_logits(jm, jm.plan(), jm.adapter.params, jm.intervention_params(), cache)
    np.testing.assert_allclose(ours, ref["logits"], rtol=1e-5, atol=1e-5)
    # a module path is no layer-stack component: the cache then holds the source activations
    # only, and the base runs whole
    path = jv.IntervenableModel(
        jv.IntervenableConfig([{"component": "model.layers[1].mlp.output"}], intervention_types=jv.VanillaIntervention),
        flax_llama,
    )
    b = jv.training.make_batch(path, base, [src], {"sources->base": 2}, labels=[3, 4])
    (sources_only,) = jv.training.cache_frozen(path, [b])
    assert "hidden" not in sources_only
    _, ref = path({"input_ids": base["input_ids"]}, [{"input_ids": src["input_ids"]}], {"sources->base": 2})
    ours = jv.training.cached_logits(path, path.plan(), path.adapter.params, path.intervention_params(), sources_only)
    np.testing.assert_allclose(ours[:, -1], ref.logits[:, -1], rtol=1e-5, atol=1e-5)
    # serial mode chains the source runs; a None source turns placements off
    serial = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": 0, "component": "block_output"}, {"layer": 1, "component": "block_output"}],
            intervention_types=jv.VanillaIntervention,
            mode="serial",
        ),
        flax_llama,
    )
    b = jv.training.make_batch(serial, base, [src, src], {"source_0->source_1": 2, "source_1->base": 2}, labels=[3, 4])
    with pytest.raises(NotImplementedError, match="serial mode"):
        jv.training.cache_frozen(serial, [b])
    b = jv.training.make_batch(jm, base, [None], {"sources->base": (loc, loc)}, labels=[3, 4])
    with pytest.raises(NotImplementedError, match="no None sources"):
        jv.training.cache_frozen(jm, [b])


def test_a_model_without_a_layer_stack_caches_its_sources():
    """The shipped hierarchical-equality MLP (no layer stack): the cached step's loss and
    gradients are the full step's."""
    from jaxvene.pretrained import load_hierarchical_equality_model

    mlp = load_hierarchical_equality_model()
    reps = [
        {"layer": 0, "component": "block_output", "subspace_partition": [[0, 8], [8, 16]], "intervention_link_key": 0}
    ] * 2
    das = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.RotatedSpaceIntervention), mlp)
    rng = np.random.default_rng(0)
    x = lambda: {"inputs_embeds": rng.uniform(-1, 1, (8, 16)).astype(np.float32)}
    batch = jv.training.make_batch(
        das,
        x(),
        [x(), x()],
        {"sources->base": 0},
        subspaces=[[[0]] * 8, [[1]] * 8],
        labels=rng.integers(0, 2, 8),
        logit_position=None,
    )
    (cache,) = jv.training.cache_frozen(das, [batch])
    assert "source_reads" in cache
    plan, params = das.plan(), das.adapter.params

    def full(ivs):
        outputs, _ = jv.core.run(
            das.adapter, plan, params, ivs, batch["base"], batch["sources"], batch["locations"], batch["subspaces"]
        )
        return jv.training.iit_loss(outputs["logits"], batch["labels"])

    def cached(ivs):
        return jv.training.iit_loss(jv.training.cached_logits(das, plan, params, ivs, cache), batch["labels"])

    ivs = das.intervention_params()
    (ref, ref_g), (ours, g) = jax.value_and_grad(full)(ivs), jax.value_and_grad(cached)(ivs)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_cached_training_on_a_mesh_equals_one_device(flax_gpt2):
    """The cache is built from the sharded batches, so it is sharded like them: two devices
    train the same intervention as one."""
    if len(jax.devices()) < 2:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    from jax.sharding import Mesh

    results = []
    for devices in (jax.devices()[:1], jax.devices()[:2]):
        jm, batch = _setup(flax_gpt2, REPS["one"])
        mesh = Mesh(np.array(devices), ("data",))
        jv.training.train_interventions(jm, [batch], optax.adam(0.05), epochs=3, mesh=mesh, progress=False, cached=True)
        results.append(np.asarray(jax.tree_util.tree_leaves(jm.intervention_params())[0]))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-6)
    (cache,) = jv.training.cache_frozen(jm, [jv.training.shard_batch(batch, mesh)])
    assert len(cache["hidden"].sharding.device_set) == 2  # on the batch's devices
