"""The train step's layer scan is split at the intervention (issue #12, item 2).

`jaxvene.scan_layers` runs the layers below the first intervened layer as a loop of their own,
which does not depend on the interventions, so `jax.grad` keeps no residuals for them, and each
intervened layer as a piece of its own. Checked:
- exactness: losses and gradients equal those of the unsplit scan (the split turned off by
  hand), for one site and for two sites at different layers;
- a batch-sharded step sums the gradients across devices once, not once per layer above;
- memory, from the compiled step's `memory_analysis()`: the last layer's step holds less than
  layer 0's and does not grow with depth; with `remat` layer 0's does not either; FSDP params
  with the batch-pinned residual stream take less per device than replicated ones.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxvene as jv
from jaxvene.core import _run
from jaxvene.models.decoder import sharding_rules

RAW = dict(
    model_type="llama",
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
)
RNG = np.random.default_rng(0)
BASE, SRC, LABELS = RNG.integers(0, 64, (6, 7)), RNG.integers(0, 64, (6, 7)), RNG.integers(0, 64, 6)


def _loss_and_grads(model, reps, locations, unsplit=False, monkeypatch=None):
    config = jv.IntervenableConfig(reps, intervention_types=jv.LowRankRotatedSpaceIntervention)
    jm = jv.IntervenableModel(config, model)
    batch = jv.training.make_batch(jm, {"input_ids": BASE}, [{"input_ids": SRC}], locations, labels=LABELS)
    trainer = jv.training.make_train_step(jm, optax.sgd(0.0))
    state = trainer.init()
    if unsplit:
        monkeypatch.setattr(_run._Handler, "scan_cuts", lambda self, n: ())

    @jax.jit
    def value_and_grad(trainable, batch, params):
        def loss(trainable):
            ivs = trainer.interventions_of(state._replace(trainable=trainable))
            out, _ = jv.core.run(
                jm.adapter,
                jm.plan(),
                params,
                ivs,
                batch["base"],
                batch["sources"],
                batch["locations"],
                logit_positions=batch["logit_positions"],
            )
            return jv.training.iit_loss(out["logits"], batch["labels"])

        return jax.value_and_grad(loss)(trainable)

    return value_and_grad(state.trainable, batch, jm.adapter.params)


@pytest.mark.parametrize(
    "reps",
    [
        [{"layer": 2, "component": "block_output", "low_rank_dimension": 2}],
        [
            {"layer": 1, "component": "mlp_output", "low_rank_dimension": 2},
            {"layer": 3, "component": "block_input", "low_rank_dimension": 2},
        ],
    ],
)
def test_the_split_scan_gives_the_unsplit_losses_and_gradients(reps, monkeypatch):
    model = jv.NativeDecoder.random(RAW, seed=1, scale=0.3)
    locations = {"sources->base": ([[[3]] * 6] * len(reps), [[[5]] * 6] * len(reps))}
    loss, grads = _loss_and_grads(model, reps, locations)
    ref_loss, ref_grads = _loss_and_grads(model, reps, locations, unsplit=True, monkeypatch=monkeypatch)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for g, r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads), strict=True):
        assert float(jnp.abs(r).max()) > 0  # every trained array gets a gradient
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)  # float reassociation only


def test_the_cuts_fall_before_the_first_write_and_after_the_last_read():
    model = jv.NativeDecoder.random(dict(RAW, num_hidden_layers=8), seed=0)
    config = jv.IntervenableConfig(
        [{"layer": 2, "component": "block_output"}, {"layer": 5, "component": "mlp_output"}],
        intervention_types=jv.VanillaIntervention,
    )
    jm = jv.IntervenableModel(config, model)
    plan = jm.plan()
    ex = _run.Execution(jm.adapter, plan, None, jm.intervention_params(), [None] * plan.num_groups, [(None, None)] * 2)
    assert ex.handler([0, 1], []).scan_cuts(8) == (2, 3, 5, 6)  # the base run: each intervened layer alone
    assert ex.handler([], [0, 1]).scan_cuts(8) == (6,)  # a source run: only reads, none after layer 5
    assert ex.handler([], [0]).scan_cuts(3) == ()  # layer 2 is the last of 3: a cut at the end is no cut


def _step_memory(raw, layer, remat, mesh=None, fsdp=False):
    """Per-device (argument, temp) bytes of the compiled DAS step for abstract params."""
    from jaxvene.models.decoder import decoder_config, layout
    from jaxvene.models.decoder._model import _spec_for
    from jaxvene.models.decoder._params import tree_from_paths

    cfg = decoder_config(raw, where="test")
    rules = sharding_rules("data", None) if fsdp else {}
    leaves = layout(cfg)

    def abstract(path, leaf):
        sharding = None if mesh is None else NamedSharding(mesh, _spec_for(rules, ".".join(path), leaf.shape))
        return jax.ShapeDtypeStruct(leaf.shape, jnp.float32, sharding=sharding)

    params = tree_from_paths({p: abstract(p, leaf) for p, leaf in leaves.items()})
    by_batch = None if mesh is None else NamedSharding(mesh, PartitionSpec("data"))
    model = jv.NativeDecoder(cfg, params, remat=remat, batch_sharding=by_batch)
    config = jv.IntervenableConfig(
        [{"layer": layer, "component": "block_output", "low_rank_dimension": 2}],
        intervention_types=jv.LowRankRotatedSpaceIntervention,
    )
    trainer = jv.training.make_train_step(jv.IntervenableModel(config, model), optax.adam(1e-3))
    state = trainer.init()
    if mesh is not None:
        state = jax.tree_util.tree_map(lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec())), state)
    ids = jax.ShapeDtypeStruct((16, 64), jnp.int32, sharding=by_batch)
    pos = jax.ShapeDtypeStruct((16, 1), jnp.int32, sharding=by_batch)
    inputs = {"input_ids": ids, "attention_mask": ids, "position_ids": ids}
    batch = {
        "base": inputs,
        "sources": [inputs],
        "locations": ((pos, pos),),
        "labels": jax.ShapeDtypeStruct((16,), jnp.int32, sharding=by_batch),
        "logit_positions": pos,
    }
    mem = jax.jit(lambda s, b, p: trainer.step(s, b, p)).lower(state, batch, params).compile().memory_analysis()
    return mem.argument_size_in_bytes, mem.temp_size_in_bytes


WIDE = dict(RAW, hidden_size=128, intermediate_size=512, num_attention_heads=4, num_key_value_heads=4)


def test_a_late_intervention_keeps_no_residuals_of_the_layers_below():
    temp = {
        (layers, layer): _step_memory(dict(WIDE, num_hidden_layers=layers), layer, remat=False)[1]
        for layers in (4, 8)
        for layer in (0, layers - 1)
    }
    assert temp[(8, 0)] > 1.5 * temp[(4, 0)]  # at layer 0 every layer is differentiated
    assert temp[(8, 7)] < 1.1 * temp[(4, 3)]  # at the last layer depth costs nothing
    assert temp[(8, 7)] < 0.5 * temp[(8, 0)]


def test_remat_bounds_the_memory_of_an_early_intervention():
    early = [_step_memory(dict(WIDE, num_hidden_layers=n), 0, remat=True)[1] for n in (4, 8)]
    no_remat = _step_memory(dict(WIDE, num_hidden_layers=8), 0, remat=False)[1]
    assert early[1] < 1.25 * early[0]
    assert early[1] < 0.5 * no_remat


def test_fsdp_takes_less_per_device_than_replicated_params():
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(8, 1), ("data", "model"))
    raw = dict(WIDE, num_hidden_layers=4)
    for remat in (False, True):
        args_r, temp_r = _step_memory(raw, 0, remat, mesh)
        args_f, temp_f = _step_memory(raw, 0, remat, mesh, fsdp=True)
        assert args_f < args_r / 4  # the params are split 8 ways (the state and batch are small)
        assert temp_f < 1.5 * temp_r  # and no device computes the whole batch (it did: 5x)


def test_a_data_parallel_step_all_reduces_once():
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
    model = jv.NativeDecoder.random(dict(RAW, num_hidden_layers=8), seed=0)
    config = jv.IntervenableConfig(
        [{"layer": 1, "component": "block_output", "low_rank_dimension": 2}],
        intervention_types=jv.LowRankRotatedSpaceIntervention,
    )
    jm = jv.IntervenableModel(config, model)
    ids = np.random.default_rng(0).integers(0, 64, (16, 6))
    batch = jv.training.make_batch(
        jm, {"input_ids": ids}, [{"input_ids": ids[::-1]}], {"sources->base": 3}, labels=ids[:, 0]
    )
    trainer = jv.training.make_train_step(jm, optax.adam(1e-3))
    state = jax.device_put(trainer.init(), NamedSharding(mesh, PartitionSpec()))
    params = jax.device_put(jm.adapter.params, NamedSharding(mesh, PartitionSpec()))
    hlo = trainer.step.lower(state, jv.training.shard_batch(batch, mesh), params).compile().as_text()
    # one (tuple) all-reduce of the gradients and the loss: an intervention computed, masked, in
    # every layer above its own made one per layer
    assert hlo.count(" all-reduce(") == 1


def test_a_batch_sharding_that_is_not_a_named_sharding_is_refused():
    params = jv.NativeDecoder.random(RAW, seed=0).params
    with pytest.raises(TypeError, match="batch_sharding must be a jax.sharding.NamedSharding"):
        jv.NativeDecoder(
            jv.models.decoder.decoder_config(RAW, where="test"), params, batch_sharding=PartitionSpec("data")
        )
