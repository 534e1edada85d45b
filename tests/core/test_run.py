"""The pure core under jit, vmap and grad, and that locations are data (no recompiles)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv


def _ids(seed, shape, vocab=50):
    return np.random.default_rng(seed).integers(0, vocab, shape)


def _vanilla(model, component="block_output", layer=1, unit="pos"):
    config = jv.IntervenableConfig(
        [{"layer": layer, "component": component, "unit": unit}], intervention_types=jv.VanillaIntervention
    )
    return jv.IntervenableModel(config, model)


def test_block_output_patch_matches_hidden_states_by_hand(flax_gpt2):
    """Patching block_output of the last layer at a position = the clean source's final hidden
    state there (before ln_f), so the patched logits at that position equal the source's."""
    base, src = _ids(0, (2, 6)), _ids(1, (2, 6))
    model = _vanilla(flax_gpt2, layer=3)
    _, patched = model({"input_ids": base}, [{"input_ids": src}], {"sources->base": ([[[4], [2]]], [[[4], [2]]])})
    clean_src = flax_gpt2(src).logits
    clean_base = flax_gpt2(base).logits
    np.testing.assert_allclose(patched.logits[0, 4], clean_src[0, 4], atol=1e-5)
    np.testing.assert_allclose(patched.logits[1, 2], clean_src[1, 2], atol=1e-5)
    # at the last layer, every other position keeps the base's logits
    np.testing.assert_allclose(patched.logits[0, :4], clean_base[0, :4], atol=1e-5)
    np.testing.assert_allclose(patched.logits[0, 5], clean_base[0, 5], atol=1e-5)
    assert np.abs(np.asarray(clean_src[0, 4] - clean_base[0, 4])).max() > 1e-2


def test_new_positions_reuse_the_compiled_program(flax_gpt2):
    base, src = _ids(0, (2, 6)), _ids(1, (2, 6))
    model = _vanilla(flax_gpt2)
    outs = []
    for p in range(4):
        _, out = model({"input_ids": base}, [{"input_ids": src}], {"sources->base": ([[[p], [p]]], [[[p], [5 - p]]])})
        outs.append(np.asarray(out.logits))
    assert model.trace_count == 1
    assert not np.allclose(outs[0], outs[1])


def test_vmap_over_positions_equals_one_call_per_position(flax_gpt2):
    base, src = _ids(0, (1, 6)), _ids(1, (1, 6))
    model = _vanilla(flax_gpt2, layer=2)
    b, s, locs, subs, consts = model.prepare({"input_ids": base}, [{"input_ids": src}], {"sources->base": 0})
    plan, params, ivs = model.plan(), model.adapter.params, model.intervention_params()

    def logits_at(pos):
        loc = jnp.full((1, 1), pos, jnp.int32)
        out, _ = jv.core.run(model.adapter, plan, params, ivs, b, s, ((loc, loc),), subs, consts)
        return out["logits"][0, -1]

    swept = jax.jit(jax.vmap(logits_at))(jnp.arange(6))
    for p in range(6):
        _, ref = model({"input_ids": base}, [{"input_ids": src}], {"sources->base": p})
        np.testing.assert_allclose(swept[p], ref.logits[0, -1], atol=1e-5)


def test_grad_through_a_constant_source_matches_finite_differences(flax_gpt2):
    base = _ids(0, (1, 5))
    config = jv.IntervenableConfig(
        [{"layer": 1, "component": "block_output"}], intervention_types=jv.AdditionIntervention
    )
    model = jv.IntervenableModel(config, flax_gpt2)
    b, s, locs, subs, _ = model.prepare({"input_ids": base}, None, {"base": 2})
    plan, params, ivs = model.plan(), model.adapter.params, model.intervention_params()

    def objective(vec):
        out, _ = jv.core.run(model.adapter, plan, params, ivs, b, s, locs, subs, (vec,))
        return jax.nn.log_softmax(out["logits"][0, -1])[7]

    vec = jnp.zeros((24,), jnp.float32)
    grad = jax.jit(jax.grad(objective))(vec)
    eps = 1e-2
    for d in (0, 5, 17):
        e = jnp.zeros_like(vec).at[d].set(eps)
        fd = (objective(vec + e) - objective(vec - e)) / (2 * eps)
        np.testing.assert_allclose(grad[d], fd, rtol=2e-2, atol=1e-4)

    # positions before the patched one cannot depend on it
    def early(vec):
        out, _ = jv.core.run(model.adapter, plan, params, ivs, b, s, locs, subs, (vec,))
        return out["logits"][0, 1].sum()

    assert float(jnp.abs(jax.grad(early)(vec)).max()) == 0.0


def test_left_padding_matches_the_unpadded_run(flax_gpt2):
    """Position ids come from the attention mask, so a left-padded example gives the same
    logits (and the same intervention effect) as the unpadded one."""
    ids = _ids(3, (1, 5))
    src = _ids(4, (1, 5))
    pad = np.concatenate([np.zeros((1, 2), np.int64), ids], axis=1)
    src_pad = np.concatenate([np.zeros((1, 2), np.int64), src], axis=1)
    mask = np.array([[0, 0, 1, 1, 1, 1, 1]])
    model = _vanilla(flax_gpt2)
    _, plain = model({"input_ids": ids}, [{"input_ids": src}], {"sources->base": 1})
    _, padded = model(
        {"input_ids": pad, "attention_mask": mask},
        [{"input_ids": src_pad, "attention_mask": mask}],
        {"sources->base": 3},
    )
    np.testing.assert_allclose(padded.logits[0, 2:], plain.logits[0], atol=1e-4)


def test_pure_core_under_jit_with_interventions_as_pytrees(flax_gpt2):
    base, src = _ids(0, (2, 6)), _ids(1, (2, 6))
    model = _vanilla(flax_gpt2)
    b, s, locs, subs, consts = model.prepare({"input_ids": base}, [{"input_ids": src}], {"sources->base": 3})
    fn = jax.jit(
        lambda params, ivs, locs: jv.core.run(model.adapter, model.plan(), params, ivs, b, s, locs, subs, consts)[0]
    )
    out = fn(model.adapter.params, model.intervention_params(), locs)
    _, ref = model({"input_ids": base}, [{"input_ids": src}], {"sources->base": 3})
    np.testing.assert_allclose(out["logits"], ref.logits, atol=1e-6)


@pytest.mark.parametrize("name", ["flax_gpt2", "flax_llama"])
def test_logits_at_chosen_positions_only(name, request):
    model = request.getfixturevalue(name)
    base, src = _ids(0, (2, 6)), _ids(1, (2, 6))
    jm = _vanilla(model, layer=1)
    b, s, locs, subs, consts = jm.prepare({"input_ids": base}, [{"input_ids": src}], {"sources->base": 2})
    positions = jnp.array([[5, 3], [4, 4]])
    out, _ = jv.core.run(
        jm.adapter,
        jm.plan(),
        jm.adapter.params,
        jm.intervention_params(),
        b,
        s,
        locs,
        subs,
        consts,
        logit_positions=positions,
    )
    _, full = jm({"input_ids": base}, [{"input_ids": src}], {"sources->base": 2})
    assert out["logits"].shape == (2, 2, 50)
    np.testing.assert_allclose(out["logits"][0], full.logits[0, [5, 3]], atol=1e-5)
    np.testing.assert_allclose(out["logits"][1], full.logits[1, [4, 4]], atol=1e-5)
