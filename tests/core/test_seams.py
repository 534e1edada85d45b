"""The seams: adapters and their capabilities as protocols, clear errors for a capability a
model lacks, and plans built without the facade."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

BASE = np.random.default_rng(0).integers(0, 50, (2, 5))
SRC = np.random.default_rng(1).integers(0, 50, (2, 5))


def _function_adapter():
    def fn(params, inputs):
        h = jv.tap("hidden", jnp.tanh(inputs["x"] @ params["w"]))
        return {"logits": h @ params["head"]}

    params = {"w": jnp.eye(4) * 0.5, "head": jnp.ones((4, 3))}
    return jv.FunctionAdapter(fn, params, {"x": jnp.ones((2, 5, 4))})


def test_adapters_implement_the_model_protocol(flax_gpt2):
    hf, fn = jv.adapters.adapt(flax_gpt2), _function_adapter()
    for adapter in (hf, fn):
        assert isinstance(adapter, jv.core.ModelAdapter)
    assert isinstance(hf, jv.core.LayerwiseModel) and isinstance(hf, jv.core.CachedDecoder)
    assert not isinstance(fn, jv.core.CachedDecoder) and not isinstance(fn, jv.core.LayerwiseModel)
    assert jv.adapters.adapt(flax_gpt2) is hf  # one adapter per model: compiled programs are shared


def test_generate_on_a_model_without_a_cache_names_the_capability():
    adapter = _function_adapter()
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "hidden"}]), adapter)
    with pytest.raises(jv.core.MissingCapability, match="decodes with a key/value cache.*CachedDecoder"):
        model.generate({"x": jnp.ones((2, 5, 4))}, max_new_tokens=2)


def test_sweep_on_a_model_without_a_layer_stack_names_the_capability():
    with pytest.raises(jv.core.MissingCapability, match="jaxvene.sweep needs a model that runs layer by layer"):
        jv.sweep(_function_adapter(), {"x": jnp.ones((2, 5, 4))}, metric=lambda x: x)


def test_a_family_without_a_layer_stack_spec_declines_the_capability():
    import transformers

    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    bert = transformers.FlaxBertForMaskedLM(config, seed=0)
    with pytest.raises(
        jv.core.MissingCapability, match="causal_trace needs a model that runs layer by layer.*bert model does not"
    ):
        jv.causal_trace(bert, {"input_ids": BASE[:1]}, subject=[1], target=3, key=jax.random.key(0))


def test_build_plan_without_the_facade_equals_the_facade(flax_gpt2):
    config = jv.IntervenableConfig(
        [{"layer": 1, "component": "mlp_output"}, {"layer": 2, "component": "head_query_output", "unit": "h.pos"}],
        intervention_types=jv.VanillaIntervention,
    )
    adapter = jv.adapters.adapt(flax_gpt2)
    plan, interventions, keys = jv.core.build_plan(adapter, config)
    facade = jv.IntervenableModel(config, flax_gpt2)
    assert plan == facade.plan() and list(keys) == facade.sorted_keys
    locations = {"sources->base": ([[[3]] * 2, [[[1]] * 2, [[2]] * 2]], [[[3]] * 2, [[[1]] * 2, [[2]] * 2]])}
    base, sources, locs, subs, consts = facade.prepare({"input_ids": BASE}, [{"input_ids": SRC}] * 2, locations)
    ours, _ = jax.jit(lambda p: jv.core.run(adapter, plan, p, interventions, base, sources, locs, subs, consts))(
        flax_gpt2.params
    )
    _, theirs = facade({"input_ids": BASE}, [{"input_ids": SRC}] * 2, locations)
    chex.assert_trees_all_close(ours["logits"], theirs.logits, atol=1e-6)
    assert not np.allclose(ours["logits"], flax_gpt2(BASE).logits, atol=1e-4)


@pytest.mark.parametrize("variant", [jax.jit, lambda f: f], ids=["jit", "eager"])
def test_write_on_a_hand_computed_case(variant):
    """The write path on a hand-computed case: a rotated interchange of the first two rotated
    coordinates at one position, in pyvene's flattened layout."""
    site = jv.core.Site("t")
    iv = jv.RotatedSpaceIntervention(embed_dim=4, seed=1, interchange_dim=2)
    base = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)
    source = -jnp.ones((2, 1, 4))
    loc = jnp.array([[1], [2]])
    new, extra = variant(lambda b, s: jv.core.write(site, "pos", iv, b, loc, s))(base, source)
    r = np.asarray(iv.rotation)
    expected = np.asarray(base).copy()
    for b, p in enumerate((1, 2)):
        rb, rs = expected[b, p] @ r, np.asarray(source[b, 0]) @ r
        rb[:2] = rs[:2]
        expected[b, p] = rb @ r.T
    assert extra is None
    chex.assert_trees_all_close(new, jnp.asarray(expected), atol=1e-5)
    chex.assert_trees_all_close(new[0, 0], base[0, 0])  # untouched positions stay


def test_an_intervention_returning_the_wrong_shape_is_refused(flax_gpt2):
    """Scatter would broadcast a (B, 1, 1) result over the units without a word."""
    config = jv.IntervenableConfig([jv.RepresentationConfig(1, "mlp_output", intervention=lambda b, s: b[..., :1])])
    model = jv.IntervenableModel(config, flax_gpt2)
    with pytest.raises(ValueError, match=r"returned shape \(2, 1, 1\) for activations of shape \(2, 1, 24\)"):
        model({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": 2})
