"""Patching helpers and attribution patching against exact patching."""

import numpy as np
import pytest
import transformers

import jaxvene as jv

CLEAN = np.array([[3, 14, 15, 9, 26, 5, 8]])
CORRUPTED = CLEAN.copy()
CORRUPTED[0, 2] = 40


@pytest.fixture(scope="module")
def small_gpt2():
    config = transformers.GPT2Config(
        n_embd=32, n_layer=3, n_head=4, vocab_size=50, n_positions=32, initializer_range=0.1
    )
    return transformers.FlaxGPT2LMHeadModel(config, seed=0)


def _metric(model):
    order = np.argsort(np.asarray(model(CLEAN).logits[0, -1]))
    return jv.patching.logit_diff(int(order[-1]), int(order[-2]))


def _ranks(x):
    return np.argsort(np.argsort(x))


def test_patch_helpers_equal_single_interventions(small_gpt2):
    metric = _metric(small_gpt2)
    res = jv.patching.patch_mlp_output(
        small_gpt2, {"input_ids": CLEAN}, {"input_ids": CORRUPTED}, metric, progress=False
    )
    heads = jv.patching.patch_heads(small_gpt2, {"input_ids": CLEAN}, {"input_ids": CORRUPTED}, metric, progress=False)
    assert res.shape == (3, 7) and heads.shape == (3, 4)
    mlp = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "mlp_output"}]), small_gpt2)
    _, out = mlp({"input_ids": CORRUPTED}, [{"input_ids": CLEAN}], {"sources->base": 4})
    np.testing.assert_allclose(res[1, 4], metric(out.logits), atol=1e-5)
    head = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 2, "component": "head_attention_value_output", "unit": "h"}]), small_gpt2
    )
    _, out = head({"input_ids": CORRUPTED}, [{"input_ids": CLEAN}], {"sources->base": ([[[3]]], [[[3]]])})
    np.testing.assert_allclose(heads[2, 3], metric(out.logits), atol=1e-5)


@pytest.mark.parametrize("component", ["block_output", "mlp_output", "attention_output"])
def test_attribution_patching_agrees_with_exact_patching(small_gpt2, component):
    metric = _metric(small_gpt2)
    exact = jv.sweep(
        small_gpt2, {"input_ids": CORRUPTED}, {"input_ids": CLEAN}, metric=metric, component=component, progress=False
    )
    effect = (exact - float(metric(small_gpt2(CORRUPTED).logits))).ravel()
    estimate = jv.patching.attribution_patching(
        small_gpt2, {"input_ids": CLEAN}, {"input_ids": CORRUPTED}, metric, component=component
    ).ravel()
    assert estimate.shape == effect.shape
    big = np.abs(effect) > 0.1 * np.abs(effect).max()
    assert big.any()
    np.testing.assert_array_equal(np.sign(estimate[big]), np.sign(effect[big]))
    rank_corr = np.corrcoef(_ranks(effect), _ranks(estimate))[0, 1]
    assert rank_corr > 0.85, rank_corr
