"""jaxvene's native Qwen2 (a family of the native decoder) against HF's PyTorch
Qwen2ForCausalLM and pyvene.

Tiny random PyTorch models (2 layers, hidden 32, 4 query heads sharing 2 key/value heads) are
saved with `save_pretrained` and read back by `jv.from_pretrained`; logits,
cached greedy generation and interventions must agree with PyTorch (and pyvene 0.1.8, which
registers Qwen2) within 1e-4.
"""

import json
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jaxvene as jv  # noqa: E402

H, KV, DH = 4, 2, 8


def _config(**kw):
    base = dict(
        hidden_size=32,
        num_attention_heads=H,
        num_key_value_heads=KV,
        num_hidden_layers=2,
        vocab_size=50,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.3,
        rope_theta=10000.0,
        attn_implementation="eager",
    )
    return transformers.Qwen2Config(**{**base, **kw})


def _torch_model(**kw):
    torch.manual_seed(0)
    return transformers.Qwen2ForCausalLM(_config(**kw)).eval()


def _load(torch_model):
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        return jv.from_pretrained(d)


@pytest.fixture(scope="module")
def pair():
    tm = _torch_model(head_dim=DH)  # Qwen2Config has no head_dim attribute unless given; pyvene reads it
    return tm, _load(tm)


BASE = np.random.default_rng(0).integers(0, 50, (2, 6))
SRC = np.random.default_rng(1).integers(0, 50, (2, 7))


def _close(ours, theirs, atol=1e-4):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=atol, rtol=1e-4)


# ------------------------------------------------------------------------------ numerics
@pytest.mark.parametrize(
    "kw",
    [{}, {"tie_word_embeddings": True}, {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1}],
    ids=["untied", "tied", "sliding"],
)
def test_logits_match_torch(kw):
    tm = _torch_model(**kw)
    model = _load(tm)
    assert ("lm_head" in model.params) != bool(kw.get("tie_word_embeddings"))
    with torch.no_grad():
        ref = tm(torch.tensor(BASE), output_hidden_states=True)
    out = model(BASE, output_hidden_states=True)
    _close(out.logits, ref.logits.numpy())
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for a, b in zip(out.hidden_states, ref.hidden_states):
        _close(a, b.numpy())
    if kw.get("use_sliding_window"):  # the window really masks something in layer 1
        without = _load(_torch_model())
        assert np.abs(np.asarray(without(BASE).logits) - np.asarray(out.logits)).max() > 1e-3


def test_left_padding(pair):
    tm, model = pair
    mask = np.ones_like(BASE)
    mask[0, :3] = 0
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        ref = tm(torch.tensor(BASE), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)).logits.numpy()
    out = np.asarray(model(BASE, attention_mask=mask, position_ids=pos).logits)
    _close(out[0, 3:], ref[0, 3:])  # padded positions' logits are meaningless
    _close(out[1], ref[1])


def test_config_errors(pair, tmp_path):
    pair[0].save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    for change, error, match in [
        ({"rope_scaling": {"rope_type": "foo", "factor": 2.0}}, NotImplementedError, "rope_type 'foo'"),
        ({"num_key_value_heads": 3}, ValueError, "num_key_value_heads"),
        ({"model_type": "bert"}, NotImplementedError, "model_type 'bert'"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(error, match=match):
            jv.from_pretrained(tmp_path)
    # the deprecated name still loads, and checks the family
    (tmp_path / "config.json").write_text(json.dumps({**raw, "model_type": "llama"}))
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not 'qwen2'"):
        jv.FlaxQwen2ForCausalLM.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------ generation
def test_cached_greedy_matches_torch_with_left_padding(pair):
    """jaxvene's decode loop (KV cache of the kv heads) against torch's greedy `generate`."""
    tm, model = pair
    n_new = 5
    mask = np.ones_like(BASE)
    mask[0, :2] = 0
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.AdditionIntervention),
        model,
    )
    _, ours = jm.generate(
        {"input_ids": BASE, "attention_mask": mask}, source_representations=jnp.zeros(32), max_new_tokens=n_new
    )
    cache = jax.eval_shape(lambda: model.init_cache(2, BASE.shape[1] + n_new))
    assert cache["key"].shape == (2, 2, BASE.shape[1] + n_new, KV, DH)  # the cache holds kv heads only
    with torch.no_grad():
        ref = tm.generate(
            torch.tensor(BASE), attention_mask=torch.tensor(mask), max_new_tokens=n_new, do_sample=False, pad_token_id=0
        ).numpy()
    np.testing.assert_array_equal(ours, ref)


# ------------------------------------------------------------------------------ interventions
# (layer, component, unit, source locations, base locations); every site writes a different
# base position per example, so none hides another and each one changes the logits
SITES = [
    (0, "mlp_activation", "pos", [[6], [0]], [[2], [5]]),
    (0, "head_value_output", "h.pos", [[[1], [0]], [[3], [1]]], [[[1], [0]], [[1], [4]]]),  # kv heads 1, 0
    (1, "attention_value_output", "pos", [[4], [2]], [[3], [0]]),
    (1, "head_query_output", "h.pos", [[[3], [2]], [[5], [6]]], [[[3], [2]], [[4], [1]]]),
    (1, "block_output", "pos", [[1], [3]], [[5], [2]]),
]


def _reps_and_locs(sites):
    reps = [
        {"layer": layer, "component": c, "unit": unit, "max_number_of_units": 1, "group_key": 0}
        for layer, c, unit, _, _ in sites
    ]
    return reps, {"sources->base": ([s[3] for s in sites], [s[4] for s in sites])}


def _pyvene(tm, reps, locs):
    pv = pytest.importorskip("pyvene")
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps, intervention_types=pv.VanillaIntervention), tm)
    with torch.no_grad():
        _, out = pm({"input_ids": torch.tensor(BASE)}, [{"input_ids": torch.tensor(SRC)}], locs)
    return out.logits.numpy()


def _jaxvene(model, reps, locs):
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention), model)
    _, out = jm({"input_ids": BASE}, [{"input_ids": SRC}], locs)
    return np.asarray(out.logits)


def test_vanilla_patches_match_pyvene(pair):
    """block_output, mlp_activation, GQA head_value_output, attention_value_output and
    head_query_output patched in one pass (one group), then each site dropped in turn."""
    tm, model = pair
    reps, locs = _reps_and_locs(SITES)
    ours = _jaxvene(model, reps, locs)
    _close(ours, _pyvene(tm, reps, locs))
    for k in range(len(SITES)):
        fewer = [s for i, s in enumerate(SITES) if i != k]
        ours_fewer = _jaxvene(model, *_reps_and_locs(fewer))
        _close(ours_fewer, _pyvene(tm, *_reps_and_locs(fewer)))
        assert np.abs(ours - ours_fewer).max() > 1e-3, SITES[k]


# ------------------------------------------------------------------------------ sites
def test_site_table_and_adapter(pair):
    _, model = pair
    adapter = model.jaxvene_adapter()
    assert adapter.site("mlp_activation", 1).tap == "mlp.act_fn.output"
    site = adapter.site("head_key_output", 0)
    assert (site.tap, site.heads) == ("self_attn.k_proj.output", KV)
    assert adapter.site("head_attention_value_output", 0).heads == H
    taps = ["self_attn.v_proj.output", "mlp.act_fn.output", "output"]
    assert adapter.tap_shapes(taps) == dict(zip(taps, [(1, 4, KV * DH), (1, 4, 64), (1, 4, 32)]))
    inputs = adapter.prepare({"input_ids": BASE})
    positions = jnp.array([[1, 5], [0, 3]])
    for m in (model, _load(_torch_model(tie_word_embeddings=True))):  # both unembeddings
        a = m.jaxvene_adapter()
        some = jax.jit(lambda p: a.apply(p, inputs, logit_positions=positions)["logits"])(m.params)  # noqa: B023
        _close(some, jnp.take_along_axis(m(BASE).logits, positions[..., None], axis=1), atol=1e-5)
    assert set(model.params["layers"]["mlp"]) == {"gate_proj", "up_proj", "down_proj"}


def test_sweep_uses_the_layer_stack(pair):
    """`jv.sweep` (which runs the native layer stack) agrees with one patch per cell."""
    _, model = pair
    src = SRC[:, : BASE.shape[1]]
    metric = lambda logits: logits[:, -1, :3]  # noqa: E731
    for component, unit in [("block_output", "pos"), ("head_value_output", "h.pos")]:
        grid = jv.sweep(
            model,
            {"input_ids": BASE},
            {"input_ids": src},
            metric=metric,
            component=component,
            positions=[1, 4],
            heads=[1] if unit == "h.pos" else None,
            progress=False,
        )
        for layer in range(2):
            jm = jv.IntervenableModel(
                jv.IntervenableConfig([{"layer": layer, "component": component, "unit": unit}]), model
            )
            for j, p in enumerate([1, 4]):
                at = [[[p]] * 2]
                locs = (
                    {"sources->base": (at, at)} if unit == "pos" else {"sources->base": ([[[[1]] * 2, [[p]] * 2]],) * 2}
                )
                _, out = jm({"input_ids": BASE}, [{"input_ids": src}], locs)
                cell = grid[layer, j] if unit == "pos" else grid[layer, 0, j]
                _close(cell, metric(out.logits))
