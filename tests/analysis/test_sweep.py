"""Every sweep cell equals the same intervention run alone through the facade."""

import jax
import numpy as np
import pytest

import jaxvene as jv

BASE = np.random.default_rng(0).integers(0, 50, (2, 5))
SRC = np.random.default_rng(1).integers(0, 50, (2, 5))


def metric(logits):
    return jax.nn.log_softmax(logits[:, -1])[:, 7]


def _single(model, reps, iv_type=jv.VanillaIntervention):
    return jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=iv_type), model)


@pytest.mark.parametrize("name", ["flax_gpt2", "flax_llama"])
def test_block_output_sweep_equals_single_calls(name, request):
    model = request.getfixturevalue(name)
    res = jv.sweep(model, {"input_ids": BASE}, {"input_ids": SRC}, metric=metric, chunk_size=3, progress=False)
    L = model.config.num_hidden_layers
    assert res.shape == (L, 5, 2)
    for layer in range(L):
        single = _single(model, [{"layer": layer, "component": "block_output"}])
        for pos in range(5):
            _, out = single({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": pos})
            np.testing.assert_allclose(res[layer, pos], metric(out.logits), atol=1e-5)
    # the last layer only changes the last position's logits when patched there
    clean = metric(model(BASE).logits)
    np.testing.assert_allclose(res[L - 1, :4], np.broadcast_to(clean, (4, 2)), atol=1e-5)


def test_head_sweeps_and_windows_equal_single_calls(flax_llama):
    res = jv.sweep(
        flax_llama,
        {"input_ids": BASE},
        {"input_ids": SRC},
        metric=metric,
        component="head_value_output",
        layers=[1, 2],
        positions=[1, 4],
        progress=False,
    )
    assert res.shape == (2, 2, 2, 2)  # layers x kv heads x positions x batch
    for i, layer in enumerate([1, 2]):
        single = _single(flax_llama, [{"layer": layer, "component": "head_value_output", "unit": "h.pos"}])
        for h in range(2):
            for j, pos in enumerate([1, 4]):
                loc = [[[[h]] * 2, [[pos]] * 2]]
                _, out = single({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": (loc, loc)})
                np.testing.assert_allclose(res[i, h, j], metric(out.logits), atol=1e-5)
    # a window of 2 layers = two representations patched together
    win = jv.sweep(
        flax_llama,
        {"input_ids": BASE},
        {"input_ids": SRC},
        metric=metric,
        component="mlp_output",
        layers=[1],
        positions=[2],
        window=2,
        progress=False,
    )
    both = _single(
        flax_llama,
        [
            {"layer": 0, "component": "mlp_output", "group_key": 0},
            {"layer": 1, "component": "mlp_output", "group_key": 0},
        ],
    )
    _, out = both({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": 2})
    np.testing.assert_allclose(win[0, 0], metric(out.logits), atol=1e-5)


def test_sourceless_sweep_and_head_unit(flax_gpt2):
    res = jv.sweep(
        flax_gpt2,
        {"input_ids": BASE},
        metric=metric,
        component="head_attention_value_output",
        unit="h",
        intervention=jv.ZeroIntervention(),
        layers=[0, 3],
        progress=False,
    )
    assert res.shape == (2, 4, 2)
    single = _single(
        flax_gpt2, [{"layer": 3, "component": "head_attention_value_output", "unit": "h"}], jv.ZeroIntervention
    )
    _, out = single({"input_ids": BASE}, unit_locations={"base": [[[2]] * 2]})
    np.testing.assert_allclose(res[1, 2], metric(out.logits), atol=1e-5)


def test_sweep_rejects_bad_grids(flax_gpt2):
    with pytest.raises(IndexError, match="layer 4 is out of range"):
        jv.sweep(flax_gpt2, {"input_ids": BASE}, {"input_ids": SRC}, metric=metric, layers=[4], progress=False)
    with pytest.raises(IndexError, match="position 5 is out of range"):
        jv.sweep(flax_gpt2, {"input_ids": BASE}, {"input_ids": SRC}, metric=metric, positions=[5], progress=False)
    with pytest.raises(ValueError, match="the base's shape"):
        jv.sweep(flax_gpt2, {"input_ids": BASE}, {"input_ids": SRC[:, :4]}, metric=metric, progress=False)
