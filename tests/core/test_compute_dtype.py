"""Interventions compute in float32 on a bfloat16 model (`jaxvene.core.write`'s compute dtype).

On a bfloat16 native decoder, a rotation with source == base must leave the logits exactly as
the plain run's (the rotation round trip in float32 is far below bfloat16's rounding); in the
model's bfloat16 it does not (the guard that shows the test can fail). Rotation gradients are
float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv
from jaxvene.core import Site, write

RAW = dict(
    model_type="llama",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=64,
)
IDS = np.random.default_rng(0).integers(0, 64, (2, 10))


@pytest.fixture(scope="module")
def bf16_model():
    return jv.NativeDecoder.random(RAW, seed=1, scale=0.3, dtype=jnp.bfloat16)


@pytest.mark.parametrize(
    "cls, extra",
    [
        (jv.RotatedSpaceIntervention, {}),
        (jv.LowRankRotatedSpaceIntervention, {"low_rank_dimension": 8}),
        (jv.BoundlessRotatedSpaceIntervention, {}),
    ],
)
def test_source_equal_to_base_leaves_bfloat16_logits_unchanged(bf16_model, cls, extra):
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output", **extra}], intervention_types=cls),
        bf16_model,
    )
    _, out = jm({"input_ids": IDS}, [{"input_ids": IDS}], {"sources->base": 3})
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(bf16_model(IDS).logits))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(jm.intervention_params()))


def test_float32_compute_is_what_makes_it_exact():
    iv = jv.RotatedSpaceIntervention(embed_dim=64, seed=0)
    value = jax.random.normal(jax.random.key(1), (2, 5, 64)).astype(jnp.bfloat16)
    site, loc = Site("h"), jnp.array([[1], [3]])
    source = value[jnp.arange(2)[:, None], loc]
    exact, _ = write(site, "pos", iv, value, loc, source)
    np.testing.assert_array_equal(np.asarray(exact), np.asarray(value))
    rounded, _ = write(site, "pos", iv, value, loc, source, compute_dtype=None)  # bfloat16 throughout
    assert np.abs(np.asarray(rounded, np.float32) - np.asarray(value, np.float32)).max() > 1e-3

    def loss(iv):
        out, _ = write(site, "pos", iv, value, loc, source * 0.5)
        return jnp.sum(out.astype(jnp.float32) ** 2)

    grads = jax.grad(loss)(iv)
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads))
