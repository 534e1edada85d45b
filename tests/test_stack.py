"""The layer stack reproduces the HF module's forward pass exactly."""

import jax
import numpy as np
import pytest
import transformers

from jaxvene._stack import LayerStack


@pytest.mark.parametrize("name", ["flax_gpt2", "flax_llama"])
def test_stack_logits_equal_module_apply(name, request):
    model = request.getfixturevalue(name)
    ids = np.random.default_rng(0).integers(0, 50, (2, 7))
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # left padding
    stack = LayerStack(model)
    inputs = stack.adapter.prepare({"input_ids": ids, "attention_mask": mask})
    ours = jax.jit(stack.logits)(model.params, inputs)
    ref = stack.adapter.apply(model.params, inputs)["logits"]
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    hs, _ = jax.jit(stack.scan)(model.params, inputs)
    assert hs.shape[0] == model.config.num_hidden_layers + 1
    np.testing.assert_allclose(stack.head(model.params, hs[-1]), ref, atol=2e-5)


def test_stack_gemma_scaling_and_tied_head():
    config = transformers.GemmaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                                      vocab_size=50, max_position_embeddings=64)
    model = transformers.FlaxGemmaForCausalLM(config, seed=0)
    ids = np.random.default_rng(1).integers(0, 50, (1, 5))
    stack = LayerStack(model)
    inputs = stack.adapter.prepare({"input_ids": ids})
    np.testing.assert_allclose(stack.logits(model.params, inputs),
                               stack.adapter.apply(model.params, inputs)["logits"], atol=2e-5)
