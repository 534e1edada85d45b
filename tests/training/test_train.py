"""Training interventions: the jitted step, IIA, and 1 vs 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

import jaxvene as jv


class Gate(jv.TrainableIntervention):
    """base + sigmoid(w) * (source - base): learns how much of the source to let through."""

    w: jax.Array

    def __init__(self, embed_dim=None, **kwargs):
        super().__init__(embed_dim, **kwargs)
        self.w = jnp.full((embed_dim,), -2.0)

    def __call__(self, base, source, subspaces=None, *, key=None):
        return base + jax.nn.sigmoid(self.w) * (source - base)


def _setup(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    base, src = rng.integers(0, 50, (n, 5)), rng.integers(0, 50, (n, 5))
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 3, "component": "block_output"}], intervention_types=Gate), model
    )
    labels = np.asarray(model(src).logits[:, -1].argmax(-1))  # patching the last layer fully gives these
    batch = jv.training.make_batch(jm, {"input_ids": base}, [{"input_ids": src}], {"sources->base": 4}, labels=labels)
    return jm, batch


def test_training_learns_the_interchange_and_iia_reaches_one(flax_gpt2):
    jm, batch = _setup(flax_gpt2)
    before = jv.training.evaluate_iia(jm, [batch])
    losses = jv.training.train_interventions(jm, [batch], optax.adam(0.5), epochs=30, progress=False)
    assert losses[-1] < losses[0] * 0.2
    after = jv.training.evaluate_iia(jm, [batch])
    assert after == 1.0 and before < 1.0
    assert float(jax.nn.sigmoid(jm.intervention_params()[0].w).mean()) > 0.9


def test_train_step_loss_equals_the_facade_loss(flax_gpt2):
    jm, batch = _setup(flax_gpt2)
    init, step, _ = jv.training.make_train_step(jm, optax.sgd(0.0))
    _, loss = step(init(), batch, jm.adapter.params)
    _, out = jm(
        {"input_ids": np.asarray(batch["base"]["input_ids"])},
        [{"input_ids": np.asarray(batch["sources"][0]["input_ids"])}],
        {"sources->base": 4},
    )
    logp = jax.nn.log_softmax(out.logits[:, -1])
    ref = -jnp.mean(logp[jnp.arange(8), batch["labels"]])
    np.testing.assert_allclose(loss, ref, rtol=1e-5)


def test_one_and_eight_devices_give_the_same_params(flax_gpt2):
    if len(jax.devices()) < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        jm, batch = _setup(flax_gpt2)
        mesh = Mesh(np.array(devices), ("data",))
        jv.training.train_interventions(jm, [batch], optax.adam(0.1), epochs=5, mesh=mesh, progress=False)
        results.append(np.asarray(jm.intervention_params()[0].w))
    np.testing.assert_allclose(results[0], results[1], atol=1e-5)
    assert not np.allclose(results[0], -2.0)


def test_temperatures_are_not_trained(flax_gpt2):
    jm = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": 3, "component": "block_output"}], intervention_types=jv.BoundlessRotatedSpaceIntervention
        ),
        flax_gpt2,
    )
    (mask,) = jv.training.trainable_filter(jm.intervention_params())
    assert mask.temperature is False and mask.raw is True and mask.intervention_boundaries is True
    base, src = np.random.default_rng(0).integers(0, 50, (4, 5)), np.random.default_rng(1).integers(0, 50, (4, 5))
    batch = jv.training.make_batch(
        jm, {"input_ids": base}, [{"input_ids": src}], {"sources->base": 4}, labels=np.array([1, 2, 3, 4])
    )
    jv.training.train_interventions(
        jm, [batch], optax.adamw(0.1, weight_decay=0.5), epochs=3, penalty=jv.training.boundary_penalty, progress=False
    )
    (iv,) = jm.intervention_params()
    assert float(iv.temperature) == 50.0
    assert float(iv.intervention_boundaries[0]) != 0.5
