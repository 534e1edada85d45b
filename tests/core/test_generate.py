"""Generation with interventions: equal to HF's greedy output, and to step-by-step recomputation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

IDS = np.random.default_rng(0).integers(0, 50, (2, 5))
SRC = np.random.default_rng(1).integers(0, 50, (2, 5))
VEC = jnp.asarray(np.random.default_rng(2).normal(size=24).astype(np.float32)) * 3


def _model(model, iv, component="block_output", layer=1):
    return jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": layer, "component": component}], intervention_types=iv), model
    )


@pytest.mark.parametrize("name", ["flax_gpt2", "flax_llama"])
def test_greedy_without_intervention_equals_hf_generate(name, request):
    model = request.getfixturevalue(name)
    ref = model.generate(IDS, max_new_tokens=6, do_sample=False, pad_token_id=0).sequences
    jm = _model(model, jv.AdditionIntervention)
    original, steered = jm.generate(
        {"input_ids": IDS},
        source_representations=jnp.zeros(model.config.hidden_size),
        max_new_tokens=6,
        output_original_output=True,
    )
    np.testing.assert_array_equal(original, ref)
    np.testing.assert_array_equal(steered, ref)  # adding zero changes nothing


def test_steering_every_step_equals_recomputation(flax_gpt2):
    jm = _model(flax_gpt2, jv.AdditionIntervention)
    _, seq = jm.generate({"input_ids": IDS}, source_representations=VEC, max_new_tokens=5)
    seq = np.asarray(seq)
    # decode step t reads generated token t (position 5 + t); all of them are steered
    tokens = []
    for t in range(5):
        prefix = seq[:, : 5 + t]
        if t == 0:
            out = flax_gpt2(prefix).logits
        else:
            positions = list(range(5, 5 + t))
            locs = [[positions] * 2]
            _, o = jm({"input_ids": prefix}, unit_locations={"base": locs}, source_representations=VEC)
            out = o.logits
        tokens.append(np.asarray(out[:, -1].argmax(-1)))
    np.testing.assert_array_equal(seq[:, 5:], np.stack(tokens, axis=1))


def test_prompt_only_interchange_equals_recomputation(flax_gpt2):
    jm = _model(flax_gpt2, jv.VanillaIntervention, layer=2)
    _, seq = jm.generate(
        {"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": (1, 3)}, intervene_on_prompt=True, max_new_tokens=4
    )
    seq = np.asarray(seq)
    for t in range(4):
        _, out = jm({"input_ids": seq[:, : 5 + t]}, [{"input_ids": SRC}], {"sources->base": (1, 3)})
        np.testing.assert_array_equal(seq[:, 5 + t], np.asarray(out.logits[:, -1].argmax(-1)))


def test_chosen_timesteps_only(flax_gpt2):
    jm = _model(flax_gpt2, jv.AdditionIntervention)
    _, seq = jm.generate({"input_ids": IDS}, source_representations=VEC, max_new_tokens=5, timesteps=[2])
    seq = np.asarray(seq)
    plain = np.asarray(flax_gpt2.generate(IDS, max_new_tokens=3, do_sample=False, pad_token_id=0).sequences)
    np.testing.assert_array_equal(seq[:, :8], plain)  # steps 0 and 1 untouched
    for t in (3, 4):  # step 2 read generated token 2 at position 7
        _, out = jm({"input_ids": seq[:, : 5 + t]}, unit_locations={"base": [[[7]] * 2]}, source_representations=VEC)
        np.testing.assert_array_equal(seq[:, 5 + t], np.asarray(out.logits[:, -1].argmax(-1)))
    with pytest.raises(IndexError, match="timestep 4 is out of range.*4 decode steps"):
        jm.generate({"input_ids": IDS}, source_representations=VEC, max_new_tokens=5, timesteps=[4])


def test_collect_per_step_and_sampling(flax_gpt2):
    jm = _model(flax_gpt2, jv.CollectIntervention, layer=2)
    (_, collected), seq = jm.generate({"input_ids": IDS}, intervene_on_prompt=True, max_new_tokens=4)
    prompt, steps = collected[0]
    hidden = flax_gpt2(np.asarray(seq)[:, :8], output_hidden_states=True).hidden_states[3]
    np.testing.assert_allclose(prompt, hidden[:, :5], atol=1e-5)
    assert steps.shape == (3, 2, 1, 24)  # decode steps x batch x token x width
    np.testing.assert_allclose(steps[:, :, 0].transpose(1, 0, 2), hidden[:, 5:8], atol=1e-5)

    add = _model(flax_gpt2, jv.AdditionIntervention)
    a = add.generate(
        {"input_ids": IDS}, source_representations=VEC, max_new_tokens=6, do_sample=True, key=jax.random.key(3)
    )[1]
    b = add.generate(
        {"input_ids": IDS}, source_representations=VEC, max_new_tokens=6, do_sample=True, key=jax.random.key(3)
    )[1]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="PRNG key"):
        add.generate({"input_ids": IDS}, source_representations=VEC, do_sample=True)


def _tiny(name):
    """Tiny random Flax models of more families (no position ids in BLOOM: ALiBi)."""
    import transformers as T

    tokens = dict(vocab_size=50, bos_token_id=0, eos_token_id=10_000, pad_token_id=0)  # eos never generated
    if name == "gpt_neo":
        config = T.GPTNeoConfig(
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            intermediate_size=64,
            window_size=3,
            attention_types=[[["global", "local"], 1]],
            max_position_embeddings=64,
            initializer_range=0.3,
            **tokens,
        )
        return T.FlaxGPTNeoForCausalLM(config, seed=0)
    if name == "gptj":
        config = T.GPTJConfig(
            n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64, rotary_dim=4, initializer_range=0.3, **tokens
        )
        return T.FlaxGPTJForCausalLM(config, seed=0)
    if name == "opt":
        config = T.OPTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            word_embed_proj_dim=16,
            max_position_embeddings=64,
            init_std=0.3,
            **tokens,
        )
        return T.FlaxOPTForCausalLM(config, seed=0)
    config = T.BloomConfig(hidden_size=32, n_layer=2, n_head=4, initializer_range=0.3, **tokens)
    return T.FlaxBloomForCausalLM(config, seed=0)


@pytest.mark.parametrize("name", ["gpt_neo", "gptj", "opt", "bloom"])
def test_greedy_equals_hf_generate_for_more_families(name):
    model = _tiny(name)
    ref = model.generate(IDS, max_new_tokens=6, do_sample=False).sequences
    jm = _model(model, jv.AdditionIntervention)
    original, steered = jm.generate(
        {"input_ids": IDS},
        source_representations=jnp.zeros(model.config.hidden_size),
        max_new_tokens=6,
        output_original_output=True,
    )
    np.testing.assert_array_equal(original, ref)
    np.testing.assert_array_equal(steered, ref)
    # left padding: the positions (or BLOOM's ALiBi offsets) come from the mask
    mask = np.ones_like(IDS)
    mask[0, :2] = 0
    ref = model.generate(IDS, attention_mask=mask, max_new_tokens=4, do_sample=False).sequences
    _, ours = jm.generate(
        {"input_ids": IDS, "attention_mask": mask},
        source_representations=jnp.zeros(model.config.hidden_size),
        max_new_tokens=4,
    )
    np.testing.assert_array_equal(ours, ref)


def test_steering_opt_mlp_through_layer_override_equals_recomputation():
    """OPT's MLP sites come from an override of the whole layer; it must work with the KV cache."""
    model = _tiny("opt")
    vec = jnp.asarray(np.random.default_rng(2).normal(size=32).astype(np.float32)) * 3
    jm = _model(model, jv.AdditionIntervention, component="mlp_output")
    _, seq = jm.generate({"input_ids": IDS}, source_representations=vec, max_new_tokens=4)
    seq = np.asarray(seq)
    for t in range(1, 4):  # decode steps 0 .. t-1 read generated tokens 0 .. t-1 (positions 5 ..)
        _, out = jm(
            {"input_ids": seq[:, : 5 + t]},
            unit_locations={"base": [[list(range(5, 5 + t))] * 2]},
            source_representations=vec,
        )
        np.testing.assert_array_equal(seq[:, 5 + t], np.asarray(out.logits[:, -1].argmax(-1)))
    plain = np.asarray(model.generate(IDS, max_new_tokens=4, do_sample=False).sequences)
    assert (seq != plain).any()  # the steering changed something
