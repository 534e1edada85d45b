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


def _native_llama():
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


@pytest.mark.parametrize(
    "name, component",
    [
        (n, c)
        for n in ("flax_gpt2", "flax_llama", "native")
        for c in ("block_output", "attention_input", "head_query_output")
    ]
    + [("native", "attention_weight")],  # only the native decoder has the probabilities as a site
)
def test_causal_suffixes_equal_full_recomputation(name, component, request):
    """Cells grouped by position recompute only from their group's first position (on the
    clean keys and values before it): the same numbers as recomputing every position, with left
    padding and a metric position before some groups' starts."""
    model = _native_llama() if name == "native" else request.getfixturevalue(name)
    rng = np.random.default_rng(3)
    base = {"input_ids": rng.integers(1, 50, (2, 7)), "attention_mask": np.array([[1] * 7, [0, 0] + [1] * 5])}
    source = {"input_ids": rng.integers(1, 50, (2, 7))}

    def two_positions(logits):  # logits at positions 2 and 6
        return jax.nn.log_softmax(logits)[:, :, 7]

    run = lambda groups: jv.sweep(
        model,
        base,
        source,
        metric=two_positions,
        component=component,
        positions=[6, 1, 4, 3, 5],
        heads=[0, 3] if component.startswith("head") or component == "attention_weight" else None,
        metric_positions=(2, -1),
        suffix_groups=groups,
        chunk_size=2,
        progress=False,
    )
    full, grouped = run(0), run(3)
    np.testing.assert_allclose(grouped, full, rtol=1e-5, atol=1e-5)
    # one cell against the facade
    if component == "block_output":
        single = _single(model, [{"layer": 1, "component": component}])
        _, out = single(base, [source], {"sources->base": 4})
        np.testing.assert_allclose(grouped[1, 2], two_positions(out.logits[:, [2, 6]]), rtol=1e-5, atol=1e-5)
        # a patch after position 2 leaves position 2's logits clean
        adapter = jv.adapters.adapt(model)  # positions from the mask, as the sweep has them
        clean = two_positions(adapter.apply(adapter.params, adapter.prepare(base))["logits"][:, [2, 6]])
        L = grouped.shape[0]
        for j in (0, 2, 3, 4):  # positions 6, 4, 3, 5
            np.testing.assert_allclose(grouped[:, j, :, 0], np.broadcast_to(clean[:, 0], (L, 2)), atol=1e-5)


def test_suffix_plan_covers_every_cell_once():
    from jaxvene.analysis._sweep import _suffix_plan, auto_suffix_groups

    positions = np.array([6, 1, 4, 3, 5, 1, 0])
    for groups in (1, 2, 3, 7, 20):
        plan = _suffix_plan(positions, groups, 8)
        # at most `groups`, cut where the recomputed work reaches equal shares
        assert min(groups, 2) <= len(plan) <= min(groups, len(np.unique(positions)))
        members = np.concatenate([m for _, m in plan])
        assert sorted(members.tolist()) == list(range(len(positions)))
        for start, m in plan:
            assert start == positions[m].min()  # a group starts at its first position
        starts = [s for s, _ in plan]
        assert starts == sorted(starts)
    assert (
        auto_suffix_groups(1, 12, 12) == 1
        and auto_suffix_groups(1, 256, 256) == 4
        and auto_suffix_groups(2, 64, 64) == 2
    )
