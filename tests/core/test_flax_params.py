"""Flax's per-param shape re-derivation is skipped only inside jaxvene's applies, and
jaxvene's own check catches the params it would have caught."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.errors import ScopeParamShapeError

import jaxvene as jv
from jaxvene.core._flax_params import check_params, unchecked_param_shapes


class Dense(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x @ self.param("w", nn.initializers.ones, (3, 2))


def test_flax_checks_outside_the_context_and_not_inside():
    wrong = {"params": {"w": jnp.ones((3, 5))}}  # the initializer says (3, 2)
    with pytest.raises(ScopeParamShapeError):
        Dense().apply(wrong, jnp.ones((1, 3)))
    with unchecked_param_shapes():
        assert Dense().apply(wrong, jnp.ones((1, 3))).shape == (1, 5)
    with pytest.raises(ScopeParamShapeError):  # and checks again after it
        Dense().apply(wrong, jnp.ones((1, 3)))


def test_check_params_names_the_leaf(flax_gpt2):
    params = flax_gpt2.params
    check_params(jax.tree_util.tree_map(jnp.zeros_like, params), params)  # same tree and shapes
    bad = jax.tree_util.tree_map(lambda x: x, params)
    bad["transformer"]["h"]["1"]["mlp"]["c_fc"]["kernel"] = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match=r"\['h'\]\['1'\]\['mlp'\]\['c_fc'\]\['kernel'\] has shape \(3, 3\)"):
        check_params(bad, params)
    missing = jax.tree_util.tree_map(lambda x: x, params)
    del missing["transformer"]["ln_f"]
    with pytest.raises(ValueError, match="missing"):
        check_params(missing, params)
    # through the public surface: a sweep and a patch on someone else's params
    ids = {"input_ids": np.ones((1, 4), np.int32)}
    with pytest.raises(ValueError, match="has shape"):
        jv.sweep(flax_gpt2, ids, ids, metric=lambda lg: lg[:, -1, 0], params=bad, progress=False)
    jm = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "block_output"}]), flax_gpt2)
    with pytest.raises(ValueError, match="has shape"):
        jv.core.run(jm.adapter, jm.plan(), bad, jm.intervention_params(), ids, [ids], [(None, None)])
