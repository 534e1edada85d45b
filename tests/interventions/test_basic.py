"""Intervention semantics against hand computations on small arrays and on collected activations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

BASE = jnp.arange(2 * 3 * 6, dtype=jnp.float32).reshape(2, 3, 6)
SOURCE = -1.0 - jnp.arange(2 * 3 * 6, dtype=jnp.float32).reshape(2, 3, 6)


def test_vanilla_interchange_dim_swaps_the_leading_dims():
    out = jv.VanillaIntervention(6, interchange_dim=2)(BASE, SOURCE)
    expected = np.array(BASE)
    expected[..., :2] = np.array(SOURCE)[..., :2]
    np.testing.assert_array_equal(out, expected)


def test_subspaces_through_a_partition_are_per_example():
    iv = jv.VanillaIntervention(6, subspace_partition=[[0, 2], [2, 4], [4, 6]])
    subspaces = jnp.array([[0, 1, 2, 3], [4, 5, -1, -1]])  # example 0: groups 0+1, example 1: group 2
    out = np.array(iv(BASE, SOURCE, subspaces))
    expected = np.array(BASE)
    expected[0, :, 0:4] = np.array(SOURCE)[0, :, 0:4]
    expected[1, :, 4:6] = np.array(SOURCE)[1, :, 4:6]
    np.testing.assert_array_equal(out, expected)


def test_addition_subtraction_zero_on_selected_dims():
    sub = jnp.array([[1], [3]])
    add = np.array(jv.AdditionIntervention(6)(BASE, SOURCE, sub))
    subtract = np.array(jv.SubtractionIntervention(6)(BASE, SOURCE, sub))
    zero = np.array(jv.ZeroIntervention(6)(BASE, None, sub))
    b, s = np.array(BASE), np.array(SOURCE)
    for e, d in ((0, 1), (1, 3)):
        others = [k for k in range(6) if k != d]
        np.testing.assert_array_equal(add[e, :, d], b[e, :, d] + s[e, :, d])
        np.testing.assert_array_equal(subtract[e, :, d], b[e, :, d] - s[e, :, d])
        np.testing.assert_array_equal(zero[e, :, d], 0)
        for out in (add, subtract, zero):
            np.testing.assert_array_equal(out[e][:, others], b[e][:, others])


def test_source_broadcasts_from_a_vector():
    vec = jnp.arange(6, dtype=jnp.float32) * 100
    out = jv.AdditionIntervention(6)(BASE, vec)
    np.testing.assert_array_equal(out, np.array(BASE) + np.array(vec))
    with pytest.raises(ValueError, match="last dimensions differ"):
        jv.VanillaIntervention(6)(BASE, jnp.ones(5))


def test_collect_returns_selected_dims():
    iv = jv.CollectIntervention(6)
    np.testing.assert_array_equal(
        iv(BASE, None, jnp.array([[2, 3], [0, 1]])),
        np.stack([np.array(BASE)[0][:, [2, 3]], np.array(BASE)[1][:, [0, 1]]]),
    )


def test_noise_needs_a_key_and_is_reproducible():
    iv = jv.NoiseIntervention(6, noise_level=0.5)
    with pytest.raises(ValueError, match="PRNG key"):
        iv(BASE)
    a = iv(BASE, key=jax.random.key(0))
    b = iv(BASE, key=jax.random.key(0))
    c = iv(BASE, key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    noise = np.array(a) - np.array(BASE)
    assert 0.3 < noise.std() < 0.7


def _ids(seed, shape):
    return np.random.default_rng(seed).integers(0, 50, shape)


def _collect(model, component, layer, ids, positions):
    config = jv.IntervenableConfig(
        [{"layer": layer, "component": component}], intervention_types=jv.CollectIntervention
    )
    (_, collected), _ = jv.IntervenableModel(config, model)({"input_ids": ids}, unit_locations={"base": positions})
    return collected[0]


def test_collect_block_output_equals_hidden_states(flax_gpt2):
    ids = _ids(0, (2, 6))
    hidden = flax_gpt2(ids, output_hidden_states=True).hidden_states  # embeddings, then each block
    got = _collect(flax_gpt2, "block_output", 1, ids, [1, 3, 4])
    assert got.shape == (2, 3, 24)
    np.testing.assert_allclose(got, np.array(hidden[2])[:, [1, 3, 4]], atol=1e-6)


def test_linked_interventions_compose_on_one_site(flax_gpt2):
    """Two linked Vanilla interventions on one site, each from its own source on its own
    subspace: the result equals collecting both sources and writing the halves by hand."""
    base, s1, s2 = _ids(0, (1, 5)), _ids(1, (1, 5)), _ids(2, (1, 5))
    reps = [
        {"layer": 1, "component": "block_output", "intervention_link_key": 0, "subspace_partition": [[0, 12], [12, 24]]}
    ] * 2
    config = jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention)
    model = jv.IntervenableModel(config, flax_gpt2)
    assert model.interventions[model.sorted_keys[0]] is model.interventions[model.sorted_keys[1]]
    _, out = model(
        {"input_ids": base}, [{"input_ids": s1}, {"input_ids": s2}], {"sources->base": 2}, subspaces=[[[0]], [[1]]]
    )
    h1 = _collect(flax_gpt2, "block_output", 1, s1, [2])
    h2 = _collect(flax_gpt2, "block_output", 1, s2, [2])
    patched = jnp.concatenate([h1[..., :12], h2[..., 12:]], axis=-1)
    add = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.VanillaIntervention),
        flax_gpt2,
    )
    _, ref = add({"input_ids": base}, unit_locations={"base": 2}, source_representations=patched)
    np.testing.assert_allclose(out.logits, ref.logits, atol=1e-5)


def test_zero_intervention_equals_constant_zero_source(flax_gpt2):
    ids = _ids(0, (2, 5))
    zero = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 2, "component": "mlp_output"}], intervention_types=jv.ZeroIntervention),
        flax_gpt2,
    )
    van = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 2, "component": "mlp_output"}], intervention_types=jv.VanillaIntervention),
        flax_gpt2,
    )
    _, a = zero({"input_ids": ids}, unit_locations={"base": 3})
    _, b = van({"input_ids": ids}, unit_locations={"base": 3}, source_representations=jnp.zeros(24))
    _, clean = van({"input_ids": ids}, [{"input_ids": ids}], {"sources->base": 3})
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)
    assert np.abs(np.asarray(a.logits - clean.logits)).max() > 1e-3


def test_skip_intervention_replaces_the_mlp_output_by_its_input(flax_gpt2):
    """Skipping layer 1's MLP with the base as its own source writes the MLP's input in place
    of its output: the same as a constant source equal to the collected mlp_input."""
    ids = _ids(5, (1, 5))
    skip = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "mlp_output"}], intervention_types=jv.SkipIntervention),
        flax_gpt2,
    )
    _, out = skip({"input_ids": ids}, [{"input_ids": ids}], {"sources->base": 2})
    mlp_in = _collect(flax_gpt2, "mlp_input", 1, ids, [2])
    van = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "mlp_output"}], intervention_types=jv.VanillaIntervention),
        flax_gpt2,
    )
    _, ref = van({"input_ids": ids}, unit_locations={"base": 2}, source_representations=mlp_in)
    np.testing.assert_allclose(out.logits, ref.logits, atol=1e-6)


def test_lambda_intervention_and_custom_subclass(flax_gpt2):
    ids, src = _ids(0, (2, 5)), _ids(1, (2, 5))
    halve = jv.RepresentationConfig(1, "block_output", intervention=lambda b, s: 0.5 * (b + s))

    class Mix(jv.Intervention):
        weight: jax.Array

        def __init__(self, embed_dim=None, **kwargs):
            super().__init__(embed_dim, **kwargs)
            self.weight = jnp.full((embed_dim,), 0.5)

        def __call__(self, base, source, subspaces=None, *, key=None):
            return (1 - self.weight) * base + self.weight * source

    a = jv.IntervenableModel(jv.IntervenableConfig([halve]), flax_gpt2)
    b = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=Mix), flax_gpt2
    )
    loc = {"sources->base": ([[[1], [2]]], [[[3], [4]]])}
    _, out_a = a({"input_ids": ids}, [{"input_ids": src}], loc)
    _, out_b = b({"input_ids": ids}, [{"input_ids": src}], loc)
    np.testing.assert_allclose(out_a.logits, out_b.logits, atol=1e-6)
    hb = _collect(flax_gpt2, "block_output", 1, ids, [3])
    hs = _collect(flax_gpt2, "block_output", 1, src, [1])
    van = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    # example 0: base pos 3 <- mean(base pos 3, source pos 1)
    _, ref = van({"input_ids": ids[:1]}, unit_locations={"base": 3}, source_representations=0.5 * (hb[:1] + hs[:1]))
    np.testing.assert_allclose(out_a.logits[:1], ref.logits, atol=1e-5)


def test_noise_through_the_model_depends_only_on_the_key(flax_gpt2):
    ids = _ids(0, (1, 5))
    config = jv.IntervenableConfig([{"layer": 0, "component": "block_input"}], intervention_types=jv.NoiseIntervention)
    model = jv.IntervenableModel(config, flax_gpt2)
    _, a = model({"input_ids": ids}, unit_locations={"base": [0, 1, 2]}, key=jax.random.key(0))
    _, b = model({"input_ids": ids}, unit_locations={"base": [0, 1, 2]}, key=jax.random.key(0))
    _, c = model({"input_ids": ids}, unit_locations={"base": [0, 1, 2]}, key=jax.random.key(1))
    np.testing.assert_array_equal(a.logits, b.logits)
    assert not np.allclose(a.logits, c.logits)


def test_serial_mode_chains_sources_into_the_base(flax_gpt2):
    """source_0 -> source_1 at layer 0 position 3, then source_1 (now counterfactual) ->
    base at layer 2 position 4; the same as doing both steps by hand with constant sources."""
    base, s0, s1 = _ids(0, (2, 6)), _ids(1, (2, 6)), _ids(2, (2, 6))
    reps = [{"layer": 0, "component": "block_output"}, {"layer": 2, "component": "block_output"}]
    serial = jv.IntervenableModel(jv.IntervenableConfig(reps, mode="serial"), flax_gpt2)
    _, out = serial(
        {"input_ids": base}, [{"input_ids": s0}, {"input_ids": s1}], {"source_0->source_1": 3, "source_1->base": 4}
    )
    # by hand
    h0 = _collect(flax_gpt2, "block_output", 0, s0, [3])
    first = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": 0, "component": "block_output"}, {"layer": 2, "component": "block_output"}],
            intervention_types=[jv.VanillaIntervention, jv.CollectIntervention],
        ),
        flax_gpt2,
    )
    # patch position 3 at layer 0 of source_1, and read its layer-2 output at position 4
    (_, collected), _ = first(
        {"input_ids": s1}, unit_locations={"base": [[[3]] * 2, [[4]] * 2]}, source_representations=[h0, None]
    )
    second = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 2, "component": "block_output"}]), flax_gpt2)
    _, ref = second({"input_ids": base}, unit_locations={"base": 4}, source_representations=collected[0])
    np.testing.assert_allclose(out.logits, ref.logits, atol=1e-5)


def test_positional_representation_and_defaults(flax_gpt2):
    config = jv.IntervenableConfig([jv.RepresentationConfig(1, "mlp_output", "pos", 1)])
    assert config.representations[0].component == "mlp_output"
    assert config.intervention_types is jv.VanillaIntervention  # as given (the default), like pyvene
    assert config.type_per_representation() == [jv.VanillaIntervention]
    model = jv.IntervenableModel(config, flax_gpt2)
    assert model.sorted_keys == ["layer_1_comp_mlp_output_unit_pos_nunit_1#0"]
