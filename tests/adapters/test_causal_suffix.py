"""Causal suffix recomputation is exact: layers `l..` run on positions `s..` only, attending to
the clean run's cached keys and values before `s`, give what the whole sequence recomputed
gives there, for every family whose stack is causal (HF Flax and native decoders, GQA, left
padding, sliding windows, Gemma 3's local layers)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers as T

import jaxvene as jv
from jaxvene.adapters import layer_stack

_TOKENS = dict(vocab_size=50, bos_token_id=0, eos_token_id=10_000, pad_token_id=0)
_NATIVE = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=50, max_position_embeddings=64)


@functools.cache
def model(name):
    if name == "gpt2":
        return T.FlaxGPT2LMHeadModel(T.GPT2Config(n_embd=24, n_layer=3, n_head=4, initializer_range=0.3, **_TOKENS))
    if name == "llama":  # GQA 4/2, rotary
        config = T.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            initializer_range=0.3,
            **_TOKENS,
        )
        return T.FlaxLlamaForCausalLM(config, seed=0)
    if name == "gpt_neo":  # global, local (window 2), global
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
    if name == "native_llama":
        raw = dict(model_type="llama", num_hidden_layers=3, num_key_value_heads=2, **_NATIVE)
        return jv.NativeDecoder.random(raw, seed=0, scale=0.3)
    if name == "native_mistral":  # sliding window 3 on every layer
        raw = dict(model_type="mistral", num_hidden_layers=3, num_key_value_heads=2, sliding_window=3, **_NATIVE)
        return jv.NativeDecoder.random(raw, seed=0, scale=0.3)
    if name == "native_gemma3":  # sliding / full / sliding, local rotary base on the sliding layers
        raw = dict(
            model_type="gemma3_text",
            num_hidden_layers=3,
            num_key_value_heads=1,
            head_dim=16,
            query_pre_attn_scalar=8,
            sliding_window=3,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_theta=10000.0,
            rope_local_base_freq=100.0,
            **_NATIVE,
        )
        return jv.NativeDecoder.random(raw, seed=0, scale=0.3)
    raise KeyError(name)


CAUSAL = ["gpt2", "llama", "gpt_neo", "gptj", "native_llama", "native_mistral", "native_gemma3"]


@pytest.mark.parametrize("name", CAUSAL)
def test_suffix_equals_full_recomputation(name):
    m = model(name)
    stack = layer_stack(m)
    assert stack.causal
    ids = np.random.default_rng(0).integers(1, 50, (2, 7))
    mask = np.ones_like(ids)
    mask[1, :2] = 0  # left padding
    inputs = stack.adapter.prepare({"input_ids": ids, "attention_mask": mask})
    params = stack.adapter.params
    stacked = stack.layer_params(params)
    hs, kv = jax.jit(stack.scan_kv)(params, inputs)
    np.testing.assert_allclose(
        hs, jax.jit(stack.scan)(params, inputs)[0], rtol=1e-4, atol=1e-4
    )  # the cache changes nothing
    L = stack.num_layers
    for first in range(L):
        for start in (0, 3, 6):
            # a change entering layer `first` at position start + 1 (and after): the positions
            # from `start` on must follow it, and the clean cache must serve the ones before
            bump = jnp.zeros_like(hs[first]).at[:, start + 1 :].set(0.5) if start + 1 < 7 else 0.0
            h = hs[first] + bump
            full = jax.jit(stack.run_layers, static_argnums=4)(stacked, h, inputs, first, L)
            suffix = jax.jit(stack.run_suffix, static_argnums=4)(stacked, h[:, start:], inputs, kv, start, first)
            np.testing.assert_allclose(
                suffix, full[:, start:], rtol=1e-4, atol=1e-4, err_msg=f"first={first} start={start}"
            )
            if start + 1 < 7:
                assert not np.allclose(full[:, start + 1 :], hs[L][:, start + 1 :], atol=1e-3)  # the bump mattered


def test_non_causal_stacks_say_so():
    config = T.BloomConfig(hidden_size=32, n_layer=2, n_head=4, initializer_range=0.3, **_TOKENS)
    stack = layer_stack(T.FlaxBloomForCausalLM(config, seed=0))
    assert not stack.causal
    inputs = stack.adapter.prepare({"input_ids": np.ones((1, 4), np.int32)})
    with pytest.raises(NotImplementedError, match="no causal cache"):
        stack.scan_kv(stack.adapter.params, inputs)
