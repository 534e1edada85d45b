"""`jv.from_pretrained("org/name")` finds a snapshot in the local HF cache (by branch or by
commit) and never downloads; a name that is not there is a clear FileNotFoundError."""

import jax
import numpy as np
import pytest

import jaxvene as jv

RAW = dict(
    model_type="qwen3",
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=40,
)


def test_hub_name_resolves_in_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--acme--tiny-qwen3"
    commit = "0123456789abcdef"
    model = jv.NativeDecoder.random(RAW, seed=3, scale=0.3)
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for revision in ("main", commit):
        loaded = jv.from_pretrained("acme/tiny-qwen3", revision=revision)
        jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.params, model.params)
    with pytest.raises(FileNotFoundError, match="does not download"):
        jv.from_pretrained("acme/not-there")
    with pytest.raises(FileNotFoundError, match="no snapshot for 'v2'"):
        jv.from_pretrained("acme/tiny-qwen3", revision="v2")
