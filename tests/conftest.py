"""Test session setup: several CPU devices, so that sharding is exercised.

JAX's strict modes (`jax_numpy_rank_promotion="raise"`, strict dtype promotion) are not set:
transformers' Flax models rely on implicit rank and dtype promotion internally.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def flax_gpt2():
    """A tiny random Flax GPT-2 (4 layers, width 24, 4 heads, vocab 50), no torch needed."""
    import transformers

    config = transformers.GPT2Config(
        n_embd=24,
        n_layer=4,
        n_head=4,
        vocab_size=50,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.3,
    )
    return transformers.FlaxGPT2LMHeadModel(config, seed=0)


@pytest.fixture(scope="session")
def flax_llama():
    """A tiny random Flax LLaMA with grouped-query attention (4 heads, 2 KV heads)."""
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=64,
        initializer_range=0.3,
    )
    return transformers.FlaxLlamaForCausalLM(config, seed=0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. A test worker compiles thousands of
    programs; without this its memory only grows, and twice a long-lived worker crashed inside
    XLA's CPU compiler (a segfault in `backend_compile_and_load`) late in the run, in tests
    that pass on their own."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
