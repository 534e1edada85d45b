"""jaxvene's native decoders (`jv.from_pretrained`) against HF's PyTorch models: logits.

For every case of `_cases.CASES` (one tiny random checkpoint per family feature), the native
model's logits equal torch's on the same checkpoint within 1e-4 (atol and rtol), unpadded and
with left padding (row 0's first 3 tokens masked; jaxvene derives the positions from the mask,
torch is given HF's `cumsum(mask) - 1`; only real tokens are compared), and for the scaled
ropes on a sequence past the original window. Guards show that each feature matters: torch with
the feature switched off (same weights) differs by more than 1e-3, so matching torch means
implementing it. Params are checked leaf by leaf against torch's state dict (kernels
transposed, layers stacked, Phi-3's fused projections split), and a bfloat16 load against the
float32 one.
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from _cases import (  # noqa: E402
    BASE,
    CASES,
    assert_close,
    build_torch,
    left_padded,
    max_diff,
    native,
    tokens,
    torch_logits,
    torch_model,
)

import jaxvene as jv  # noqa: E402

ALL = list(CASES)
LONG = [n for n, c in CASES.items() if c.long]
CONTRASTS = [(n, i) for n, c in CASES.items() for i in range(len(c.contrasts))]


def _long_ids(case):
    return tokens((2, case.long), 5)


def _compare_padded(name, ids):
    model = native(name)
    # torch's dynamic NTK rope keeps state between calls: the long cases get a fresh model
    tm = build_torch(CASES[name]) if CASES[name].long else torch_model(name)
    mask, positions = left_padded(ids)
    ref = torch_logits(tm, ids, mask, positions)
    out = np.asarray(model(ids, attention_mask=mask).logits)
    assert out.shape == ref.shape == (*ids.shape, CASES[name].kwargs["vocab_size"])
    assert_close(out[0, 3:], ref[0, 3:], what=f"{name} padded row")
    assert_close(out[1], ref[1], what=f"{name} full row")


@pytest.mark.parametrize("name", ALL)
def test_logits_match_torch(name):
    """Row 0 left-padded (3 tokens), row 1 not: one call covers both."""
    _compare_padded(name, BASE)


def test_no_mask_and_explicit_positions():
    """The defaults (no mask: positions 0..T-1) and explicit position_ids, plain and jitted."""
    model = native("llama")
    ref = torch_logits(torch_model("llama"), BASE)
    assert_close(model(BASE).logits, ref, what="no mask")
    mask, positions = left_padded(BASE)
    f = jax.jit(lambda ids, m, pos: model(ids, attention_mask=m, position_ids=pos).logits)
    padded = torch_logits(torch_model("llama"), BASE, mask, positions)
    out = np.asarray(f(BASE, mask, positions))
    assert_close(out[0, 3:], padded[0, 3:], what="explicit positions, padded row")
    assert_close(out[1], padded[1], what="explicit positions")


@pytest.mark.parametrize("name", LONG)
def test_long_positions_match_torch(name):
    """Scaled ropes past the original window (llama3 and yarn at 40 tokens with window 16;
    dynamic NTK at 24 > max_position_embeddings 16; Phi-3's long factors at 24 > 16)."""
    _compare_padded(name, _long_ids(CASES[name]))


@pytest.mark.parametrize("name,k", CONTRASTS, ids=[f"{n}-{list(CASES[n].contrasts[k])[0]}" for n, k in CONTRASTS])
def test_feature_changes_torch_logits(name, k):
    """Guard: the feature switched off (same weights) moves torch's logits by > 1e-3, at the
    long positions for the scaled ropes (position >= 16, past the original window)."""
    case = CASES[name]
    ids = _long_ids(case) if case.long else BASE
    ref = torch_logits(build_torch(case), ids)
    off = torch_logits(build_torch(case, **case.contrasts[k]), ids)
    if case.long:
        ref, off = ref[:, 16:], off[:, 16:]
    assert max_diff(ref, off) > 1e-3, (name, case.contrasts[k])


def test_dynamic_ntk_is_identity_within_the_window():
    """Dynamic NTK only acts past max_position_embeddings: on 8 tokens it equals no scaling
    (so `test_long_positions_match_torch[llama_dynamic]` is the test that can fail)."""
    case = CASES["llama_dynamic"]
    a = torch_logits(build_torch(case), BASE)
    b = torch_logits(build_torch(case, rope_scaling=None), BASE)
    assert max_diff(a, b) < 1e-6


def test_longrope_short_factors_below_the_window():
    """Phi-3's LongRoPE uses the short factors up to original_max_position_embeddings: on 8
    tokens torch differs from plain rope (so BASE tests the short factors, LONG the long ones)."""
    case = CASES["phi3_longrope"]
    a = torch_logits(build_torch(case), BASE)
    b = torch_logits(build_torch(case, rope_scaling=None), BASE)
    assert max_diff(a, b) > 1e-3


# ------------------------------------------------------------------------------ params
def _expected_params(tm, config):
    """Torch's state dict in the contract's layout: kernels (in, out), layers stacked."""
    state = {k: v.float().numpy() for k, v in tm.state_dict().items()}
    n = config.num_hidden_layers
    h, kv = config.num_attention_heads, config.num_key_value_heads
    dh = getattr(config, "head_dim", None) or config.hidden_size // h
    per_layer: dict = {}
    for i in range(n):
        prefix = f"model.layers.{i}."
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            parts = key[len(prefix) :].split(".")
            if parts[-2] == "qkv_proj":  # Phi-3: rows are [q | k | v]
                w = value
                for proj, rows in zip(("q_proj", "k_proj", "v_proj"), np.split(w, [h * dh, (h + kv) * dh])):
                    per_layer.setdefault(("self_attn", proj, "kernel"), []).append(rows.T)
                continue
            if parts[-2] == "gate_up_proj":  # Phi-3: rows are [gate | up]
                gate, up = np.split(value, 2)
                per_layer.setdefault(("mlp", "gate_proj", "kernel"), []).append(gate.T)
                per_layer.setdefault(("mlp", "up_proj", "kernel"), []).append(up.T)
                continue
            leaf = "kernel" if parts[-1] == "weight" and value.ndim == 2 else parts[-1]
            per_layer.setdefault((*parts[:-1], leaf), []).append(value.T if value.ndim == 2 else value)
    expected = {
        "embed_tokens": {"embedding": state["model.embed_tokens.weight"]},
        "norm": {"weight": state["model.norm.weight"]},
    }
    if not config.tie_word_embeddings:
        expected["lm_head"] = {"kernel": state["lm_head.weight"].T}
    layers: dict = {}
    for path, values in per_layer.items():
        assert len(values) == n, path
        d = layers
        for p in path[:-1]:
            d = d.setdefault(p, {})
        d[path[-1]] = np.stack(values)
    expected["layers"] = layers
    return expected


def _as_numpy(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), tree)


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen2_tied", "qwen3", "gemma2", "gemma3_text", "phi3", "olmo2"])
def test_params_are_torch_state_in_the_contract_layout(name):
    tm, model = torch_model(name), native(name)
    expected = _expected_params(tm, tm.config)
    ours = _as_numpy(model.params)
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(expected)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    c = model.config
    for field in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"):
        assert getattr(c, field) == getattr(tm.config, field), field
    assert c.intermediate_size == tm.config.intermediate_size and c.vocab_size == tm.config.vocab_size
    assert c.head_dim == (
        getattr(tm.config, "head_dim", None) or tm.config.hidden_size // tm.config.num_attention_heads
    )
    q = model.params["layers"]["self_attn"]["q_proj"]["kernel"]
    assert q.shape == (c.num_hidden_layers, c.hidden_size, c.num_attention_heads * c.head_dim)


# ------------------------------------------------------------------------------ bfloat16
# Measured: bfloat16's largest logit error against the float32 load is 3-4% of the largest
# |logit| on these models (e.g. 0.20 at 4.8 for llama); the bound below is 10%.
BF16_REL = 0.10


@pytest.mark.parametrize("name", ["llama", "gemma2", "phi3"])
def test_bfloat16_load(name):
    model16, model32 = native(name, "bfloat16"), native(name)
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(model16.params)}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}, dtypes
    a = np.asarray(model16(BASE).logits.astype(jnp.float32))
    b = np.asarray(model32(BASE).logits)
    scale = np.abs(b).max()
    assert max_diff(a, b) < BF16_REL * scale, (max_diff(a, b), scale)
    assert max_diff(a, b) > 0  # it did compute in a lower precision
    # the bfloat16 params are the float32 ones rounded
    rounded = jax.tree_util.tree_map(lambda x: np.asarray(x.astype(jnp.bfloat16), np.float32), model32.params)
    for x, y in zip(jax.tree_util.tree_leaves(_as_numpy(model16.params)), jax.tree_util.tree_leaves(rounded)):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------ config values
_YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}


@pytest.mark.parametrize(
    "name,edit",
    [
        # null switches a softcap off (HF's class defaults are 30 and 50)
        ("gemma2", {"final_logit_softcapping": None}),
        ("gemma2", {"attn_logit_softcapping": None}),
        ("gemma3_text", {"attn_logit_softcapping": 5.0}),
        ("gemma3_text", {"final_logit_softcapping": 3.0}),
        (
            "qwen2",
            {"layer_types": ["full_attention", "sliding_attention"], "use_sliding_window": True, "sliding_window": 3},
        ),
        (
            "llama_yarn",
            {"rope_scaling": {**_YARN, "beta_fast": 8.0, "beta_slow": 2.0, "mscale": 2.0, "mscale_all_dim": 1.0}},
        ),
        ("llama_yarn", {"rope_scaling": {**_YARN, "truncate": False, "attention_factor": 1.5}}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in list(v)[:1]),
)
def test_config_variant_matches_torch(name, edit, tmp_path):
    """A checkpoint whose config.json torch wrote with these values (an explicit null where a
    feature is off) reads as torch runs it."""
    tm = build_torch(CASES[name], **edit)
    tm.save_pretrained(tmp_path)
    model = jv.from_pretrained(tmp_path)
    mask, positions = left_padded(BASE)
    ref = torch_logits(tm, BASE, mask, positions)
    out = np.asarray(model(BASE, attention_mask=mask).logits)
    assert_close(out[0, 3:], ref[0, 3:], what=f"{name} {edit} padded row")
    assert_close(out[1], ref[1], what=f"{name} {edit}")


def test_null_sliding_window_means_no_window(tmp_path):
    """Mistral's `"sliding_window": null` (Mistral 7B v0.2 on) means full attention, not HF's
    class default of 4096: logits past position 4096 of a 4100-token input equal torch's."""
    tm = build_torch(CASES["mistral"], sliding_window=None)
    tm.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["sliding_window"] is None
    ids = tokens((1, 4100), 11)
    ref = torch_logits(tm, ids)[:, -4:]
    out = np.asarray(jv.from_pretrained(tmp_path)(ids).logits)[:, -4:]
    assert_close(out, ref, what="mistral, sliding_window null, positions 4096-4099")
