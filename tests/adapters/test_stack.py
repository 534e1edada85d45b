"""The layer stack reproduces the HF module's forward pass exactly, for every family with a
layer stack spec; sweeps, causal tracing and attribution patching run on it."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

import jaxvene as jv
from jaxvene.adapters import layer_stack


@pytest.mark.parametrize("name", ["flax_gpt2", "flax_llama"])
def test_stack_logits_equal_module_apply(name, request):
    model = request.getfixturevalue(name)
    ids = np.random.default_rng(0).integers(0, 50, (2, 7))
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # left padding
    stack = layer_stack(model)
    inputs = stack.adapter.prepare({"input_ids": ids, "attention_mask": mask})
    ours = jax.jit(stack.logits)(model.params, inputs)
    ref = stack.adapter.apply(model.params, inputs)["logits"]
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    hs, _ = jax.jit(stack.scan)(model.params, inputs)
    assert hs.shape[0] == model.config.num_hidden_layers + 1
    np.testing.assert_allclose(stack.head(model.params, hs[-1]), ref, atol=2e-5)


def test_stack_gemma_scaling_and_tied_head():
    config = transformers.GemmaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        vocab_size=50,
        max_position_embeddings=64,
    )
    model = transformers.FlaxGemmaForCausalLM(config, seed=0)
    ids = np.random.default_rng(1).integers(0, 50, (1, 5))
    stack = layer_stack(model)
    inputs = stack.adapter.prepare({"input_ids": ids})
    np.testing.assert_allclose(
        stack.logits(model.params, inputs), stack.adapter.apply(model.params, inputs)["logits"], atol=2e-5
    )


# ------------------------------------------------------------------------ more decoder families
T = transformers
_TOKENS = dict(vocab_size=50, bos_token_id=0, eos_token_id=10_000, pad_token_id=0)  # eos never sampled


@functools.cache
def tiny(name):
    """Tiny random Flax models (width 32, 4 heads), no torch needed."""
    if name == "gpt_neo":  # global, local, global: the stack switches on the layer's kind
        config = T.GPTNeoConfig(
            hidden_size=32,
            num_layers=3,
            num_heads=4,
            intermediate_size=64,
            window_size=2,
            attention_types=[[["global", "local"], 1], [["global"], 1]],
            max_position_embeddings=64,
            initializer_range=0.3,
            **_TOKENS,
        )
        return T.FlaxGPTNeoForCausalLM(config, seed=0)
    if name == "gptj":
        config = T.GPTJConfig(
            n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64, rotary_dim=4, initializer_range=0.3, **_TOKENS
        )
        return T.FlaxGPTJForCausalLM(config, seed=0)
    if name in ("opt", "opt_post_ln"):  # project_in/out; OPT-350m's post-LN layout
        extra = dict(word_embed_proj_dim=16) if name == "opt" else dict(do_layer_norm_before=False)
        config = T.OPTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            max_position_embeddings=64,
            init_std=0.3,
            **extra,
            **_TOKENS,
        )
        return T.FlaxOPTForCausalLM(config, seed=0)
    if name == "bloom":
        config = T.BloomConfig(hidden_size=32, n_layer=2, n_head=4, initializer_range=0.3, **_TOKENS)
        return T.FlaxBloomForCausalLM(config, seed=0)
    if name == "gpt_neox":  # the native decoder's GPT-NeoX family (its own layer stack)
        import jaxvene as jv

        raw = dict(
            model_type="gpt_neox",
            hidden_size=32,
            num_attention_heads=4,
            num_hidden_layers=2,
            intermediate_size=64,
            vocab_size=50,
            max_position_embeddings=64,
            rotary_pct=0.5,
        )
        return jv.NativeDecoder.random(raw, seed=0, scale=0.3)
    raise KeyError(name)


FAMILIES = ["gpt_neo", "gptj", "opt", "opt_post_ln", "bloom", "gpt_neox"]


@pytest.mark.parametrize("name", FAMILIES)
def test_stack_logits_equal_module_apply_for_more_families(name):
    model = tiny(name)
    ids = np.random.default_rng(0).integers(0, 50, (2, 7))
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # left padding
    stack = layer_stack(model)
    inputs = stack.adapter.prepare({"input_ids": ids, "attention_mask": mask})
    ref = stack.adapter.apply(model.params, inputs)["logits"]
    np.testing.assert_allclose(jax.jit(stack.logits)(model.params, inputs), ref, atol=2e-5)
    hs, _ = jax.jit(stack.scan)(model.params, inputs)
    np.testing.assert_allclose(stack.head(model.params, hs[-1]), ref, atol=2e-5)


BASE = np.random.default_rng(0).integers(0, 50, (2, 5))
SRC = np.random.default_rng(1).integers(0, 50, (2, 5))


def _metric(logits):
    return jax.nn.log_softmax(logits[:, -1])[:, 7]


@pytest.mark.parametrize("name", ["gpt_neo", "gptj", "opt", "bloom", "gpt_neox"])
def test_sweep_equals_facade_and_causal_trace_runs(name):
    model = tiny(name)
    L = model.config.num_hidden_layers
    cells = [(0, 1), (L - 2, 4), (L - 1, 4)]  # GPT-Neo: layer 1 is its local-attention layer
    for component in ("block_output", "mlp_output"):
        res = jv.sweep(
            model,
            {"input_ids": BASE},
            {"input_ids": SRC},
            metric=_metric,
            component=component,
            chunk_size=5,
            progress=False,
        )
        assert res.shape == (L, 5, 2)
        for layer, pos in cells:
            single = jv.IntervenableModel(
                jv.IntervenableConfig(
                    [{"layer": layer, "component": component}], intervention_types=jv.VanillaIntervention
                ),
                model,
            )
            _, out = single({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": pos})
            np.testing.assert_allclose(res[layer, pos], _metric(out.logits), atol=1e-5)

    ids = BASE[:1]
    trace = jv.causal_trace(
        model,
        {"input_ids": ids},
        subject=[1, 2],
        target=7,
        key=jax.random.key(0),
        samples=3,
        components=("block_output", "mlp_output"),
        progress=False,
    )
    clean = jax.nn.softmax(jnp.asarray(model(ids).logits)[0, -1])[7]
    np.testing.assert_allclose(trace.clean, clean, rtol=1e-5)
    assert trace.scores["mlp_output"].shape == (L, 5)
    # restoring the whole stream at the last layer and position restores the clean run
    np.testing.assert_allclose(trace.scores["block_output"][L - 1, 4], clean, rtol=1e-4)


@pytest.mark.parametrize("name, component", [("gpt_neo", "mlp_output"), ("opt", "mlp_activation")])
def test_attribution_patching_runs_through_switch_and_layer_override(name, component):
    """Gradients through GPT-Neo's per-kind `lax.switch` and OPT's layer override."""
    model = tiny(name)

    def metric(logits):
        return jax.nn.log_softmax(logits[:, -1])[:, 7].mean()

    est = jv.patching.attribution_patching(model, {"input_ids": SRC}, {"input_ids": BASE}, metric, component=component)
    assert est.shape == (model.config.num_hidden_layers, 5)
    assert np.isfinite(est).all() and np.abs(est).max() > 0
    same = jv.patching.attribution_patching(
        model, {"input_ids": BASE}, {"input_ids": BASE}, metric, component=component
    )
    np.testing.assert_array_equal(same, 0)  # no difference to patch
