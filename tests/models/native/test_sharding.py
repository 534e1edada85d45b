"""Native decoders with sharded params (FSDP over "data", tensor parallel over "model", both on
a 2 x 4 mesh of host devices): a call, a sweep and intervention training (the jitted step takes
the sharded params as they are; no `mesh=`) give the unsharded results, and the params keep
their sharding (nothing gathers them for good)."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxvene as jv
from jaxvene.models.decoder import sharding_rules

RAW = dict(
    model_type="qwen3",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=8,
    vocab_size=64,
)
IDS = np.random.default_rng(0).integers(0, 64, (4, 7))
SRC = np.random.default_rng(1).integers(0, 64, (4, 7))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
    folder = str(tmp_path_factory.mktemp("ckpt"))
    plain = jv.NativeDecoder.random(RAW, seed=2, scale=0.3)
    plain.save_pretrained(folder)
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    return plain, jv.from_pretrained(folder, mesh=mesh, sharding=sharding_rules("data", "model")), mesh


def _specs(params):
    return jax.tree_util.tree_map(lambda x: x.sharding.spec if isinstance(x.sharding, NamedSharding) else None, params)


def test_params_land_with_the_rules(pair):
    _, sharded, _ = pair
    p = sharded.params["layers"]
    assert tuple(p["self_attn"]["q_proj"]["kernel"].sharding.spec) == (None, "data", "model")
    assert tuple(p["mlp"]["down_proj"]["kernel"].sharding.spec) == (None, "model", "data")
    shard = p["mlp"]["up_proj"]["kernel"].addressable_shards[0].data
    assert shard.shape == (3, 64 // 2, 128 // 4)  # each device holds one block, not the whole


def test_call_sweep_and_training_equal_the_unsharded_model(pair):
    plain, sharded, _ = pair
    before = _specs(sharded.params)
    np.testing.assert_allclose(np.asarray(sharded(IDS).logits), np.asarray(plain(IDS).logits), atol=1e-4)

    def metric(logits):
        return logits[:, -1, 5]

    grids = [
        jv.sweep(m, {"input_ids": IDS}, {"input_ids": SRC}, metric=metric, positions=[2, 6], progress=False)
        for m in (plain, sharded)
    ]
    np.testing.assert_allclose(grids[1], grids[0], atol=1e-4)

    losses = []
    for m in (plain, sharded):
        jm = jv.IntervenableModel(
            jv.IntervenableConfig(
                [{"layer": 1, "component": "block_output", "low_rank_dimension": 4}],
                intervention_types=jv.LowRankRotatedSpaceIntervention,
            ),
            m,
        )
        labels = np.asarray(plain(SRC).logits[:, -1].argmax(-1))
        batch = jv.training.make_batch(
            jm, {"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": 6}, labels=labels
        )
        losses.append(jv.training.train_interventions(jm, [batch], optax.adam(0.05), epochs=2, progress=False))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert losses[0][-1] < losses[0][0]
    assert _specs(sharded.params) == before


def _train_addition(model, mesh):
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 2, "component": "mlp_output"}], intervention_types=jv.AdditionIntervention),
        model,
    )
    batch = jv.training.make_batch(
        jm, {"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": 3}, labels=[1, 2, 3, 4]
    )
    return jv.training.train_interventions(jm, [batch], optax.sgd(0.1), mesh=mesh, progress=False)


def test_training_on_the_mesh_keeps_fsdp_params_sharded(pair, monkeypatch):
    """`train_interventions(mesh=)` shards the batch over "data" and leaves params that are
    already on the mesh as they are (it used to replicate the whole model)."""
    plain, sharded, mesh = pair
    seen = []
    original = jv.training._train.make_train_step

    def spy(*args, **kwargs):
        init, step, out = original(*args, **kwargs)

        def watched(state, batch, params):
            seen.append(_specs(params))
            return step(state, batch, params)

        return init, watched, out

    monkeypatch.setattr(jv.training._train, "make_train_step", spy)
    unsharded = _train_addition(plain, None)
    on_mesh = _train_addition(sharded, mesh)
    assert seen[-1] == _specs(sharded.params)  # the step saw the FSDP x TP params, not replicas
    np.testing.assert_allclose(on_mesh, unsharded, rtol=1e-4)


def test_causal_trace_and_a_batch_sharded_sweep_equal_the_unsharded_model(pair):
    """`causal_trace(params=)` and `sweep(params=)` with FSDP x TP params, the sweep's batch
    sharded over "data" too: the unsharded tables, and the params keep their sharding."""
    plain, sharded, mesh = pair
    before = _specs(sharded.params)
    traces = [
        jv.causal_trace(
            m,
            {"input_ids": IDS[:1]},
            subject=[1, 2],
            target=5,
            key=jax.random.key(0),
            samples=4,
            components=("block_output", "mlp_output"),
            progress=False,
            params=m.params,
        )
        for m in (plain, sharded)
    ]
    for component in ("block_output", "mlp_output"):
        np.testing.assert_allclose(traces[1].scores[component], traces[0].scores[component], atol=1e-5)
    np.testing.assert_allclose(
        [traces[1].clean, traces[1].corrupted], [traces[0].clean, traces[0].corrupted], atol=1e-6
    )

    def metric(logits):
        return logits[:, -1, 5]  # per example: (B,), batch-sharded inside the program

    data = NamedSharding(mesh, PartitionSpec("data"))
    ids, src = jax.device_put(IDS, data), jax.device_put(SRC, data)
    grid = jv.sweep(
        sharded, {"input_ids": ids}, {"input_ids": src}, metric=metric, params=sharded.params, progress=False
    )
    want = jv.sweep(plain, {"input_ids": IDS}, {"input_ids": SRC}, metric=metric, progress=False)
    np.testing.assert_allclose(grid, want, atol=1e-4)
    # causal suffixes on the sharded batch and params: the cached keys and values are sharded too
    grouped = jv.sweep(
        sharded,
        {"input_ids": ids},
        {"input_ids": src},
        metric=metric,
        params=sharded.params,
        progress=False,
        suffix_groups=3,
    )
    np.testing.assert_allclose(grouped, want, atol=1e-4)
    assert _specs(sharded.params) == before
