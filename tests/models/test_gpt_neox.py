"""jaxvene's native GPT-NeoX (Pythia), a family of the native decoder, against HF's PyTorch
GPTNeoXForCausalLM and pyvene.

Tiny random PyTorch models are saved with `save_pretrained` and read back by
`FlaxGPTNeoXForCausalLM.from_pretrained`; logits, cached generation and interventions must
agree with PyTorch (and pyvene 0.1.8, which registers GPT-NeoX) within 1e-4. pyvene has no
q/k/v sites for GPT-NeoX, so those are checked against a forward hook on the fused
`query_key_value` projection that swaps the slice by hand.
"""

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jaxvene as jv  # noqa: E402

H, DH = 4, 8


def _config(**kw):
    base = dict(
        hidden_size=32,
        num_attention_heads=H,
        num_hidden_layers=2,
        vocab_size=50,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.3,
        attn_implementation="eager",
    )
    return transformers.GPTNeoXConfig(**{**base, **kw})


def _torch_model(**kw):
    torch.manual_seed(0)
    return transformers.GPTNeoXForCausalLM(_config(**kw)).eval()


def _load(torch_model, safe=True):
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d, safe_serialization=safe)
        return jv.from_pretrained(d)


@pytest.fixture(scope="module")
def pair():
    tm = _torch_model(rotary_pct=0.25, use_parallel_residual=True)
    return tm, _load(tm)


BASE = np.random.default_rng(0).integers(0, 50, (2, 6))
SRC = np.random.default_rng(1).integers(0, 50, (2, 7))


def _close(ours, theirs, atol=1e-4):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=atol, rtol=1e-4)


# ------------------------------------------------------------------------------ numerics
@pytest.mark.parametrize(
    "pct, parallel, act, bias",
    [
        (0.25, False, "gelu_new", True),
        (1.0, True, "gelu", False),
        (1.0, False, "relu", True),
    ],
)  # rotary_pct 0.25 with the parallel residual and exact GELU: the `pair` model (Pythia's settings)
def test_logits_match_torch(pct, parallel, act, bias):
    tm = _torch_model(rotary_pct=pct, use_parallel_residual=parallel, hidden_act=act, attention_bias=bias)
    model = _load(tm)
    assert model.config.model_type == "gpt_neox"
    with torch.no_grad():
        ref = tm(torch.tensor(BASE), output_hidden_states=True)
    out = model(BASE, output_hidden_states=True)
    _close(out.logits, ref.logits.numpy())
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for a, b in zip(out.hidden_states, ref.hidden_states):
        _close(a, b.numpy())


def test_left_padding_with_position_ids(pair):
    tm, model = pair
    mask = np.ones_like(BASE)
    mask[0, :3] = 0
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    with torch.no_grad():
        ref = tm(torch.tensor(BASE), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)).logits.numpy()
    out = np.asarray(model(BASE, attention_mask=mask, position_ids=pos).logits)
    _close(out[0, 3:], ref[0, 3:])  # padded positions' logits are meaningless
    _close(out[1], ref[1])
    with torch.no_grad():
        hidden = tm(torch.tensor(BASE), output_hidden_states=True).hidden_states
    for a, b in zip(model(BASE, output_hidden_states=True).hidden_states, hidden):
        _close(a, b.numpy())


def test_pickle_refused_sharded_index_and_bfloat16_safetensors(pair, tmp_path):
    tm, model = pair
    tm.save_pretrained(tmp_path, safe_serialization=False)  # pytorch_model.bin: never unpickled
    with pytest.raises(ValueError, match="never unpickles"):
        jv.from_pretrained(tmp_path)
    with tempfile.TemporaryDirectory() as d:  # sharded safetensors with an index
        tm.save_pretrained(d, safe_serialization=True, max_shard_size="20KB")
        assert os.path.exists(os.path.join(d, "model.safetensors.index.json"))
        sharded = jv.from_pretrained(d)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), sharded.params, model.params)
    bf16 = _torch_model().to(torch.bfloat16)
    loaded = _load(bf16)  # read as ml_dtypes.bfloat16, cast to float32
    w = bf16.gpt_neox.layers[1].attention.query_key_value.weight.detach().float().numpy()
    keys = w.reshape(H, 3, DH, -1)[:, 1].reshape(H * DH, -1)  # HF interleaves q/k/v per head
    np.testing.assert_array_equal(loaded.params["layers"]["self_attn"]["k_proj"]["kernel"][1], keys.T)


def test_checkpoint_and_config_errors(pair, tmp_path):
    tm, _ = pair
    with pytest.raises(FileNotFoundError, match="not a directory"):
        jv.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        jv.from_pretrained(tmp_path)
    tm.save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="truncated"):
        jv.from_pretrained(tmp_path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        jv.from_pretrained(tmp_path)
    tm.save_pretrained(tmp_path, safe_serialization=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "hidden_act": "mish"}))
    with pytest.raises(NotImplementedError, match="hidden_act 'mish'"):
        jv.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(NotImplementedError, match="model_type 'gpt2'"):
        jv.from_pretrained(tmp_path)
    # a checkpoint whose shapes disagree with its config
    tm.save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 48}))
    with pytest.raises(ValueError, match="dense_h_to_4h.weight"):
        jv.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------ generation
def test_cached_greedy_equals_recomputation_and_torch(pair):
    """jaxvene's decode loop (`init_cache`, a KV cache of every layer) against recomputing the prefix."""
    tm, model = pair
    n_new, (b, t) = 5, BASE.shape
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.AdditionIntervention),
        model,
    )
    _, with_cache = jm.generate({"input_ids": BASE}, source_representations=jnp.zeros(32), max_new_tokens=n_new)
    cache = jax.eval_shape(lambda: model.init_cache(b, t + n_new))
    assert cache["key"].shape == (2, b, t + n_new, H, DH)  # (layers, batch, length, kv heads, head dim)
    # no cache: recompute the whole prefix each step (one fixed-length buffer: the model is causal)
    seq = np.zeros((b, t + n_new), np.int64)
    seq[:, :t] = BASE
    for i in range(t, t + n_new):
        seq[:, i] = np.argmax(np.asarray(model(seq).logits)[:, i - 1], -1)
    np.testing.assert_array_equal(with_cache, seq)
    with torch.no_grad():
        ref = tm.generate(
            torch.tensor(BASE),
            attention_mask=torch.ones(BASE.shape, dtype=torch.long),
            max_new_tokens=n_new,
            do_sample=False,
            pad_token_id=0,
        ).numpy()
    np.testing.assert_array_equal(with_cache, ref)


# ------------------------------------------------------------------------------ interventions
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


# one source, one group: every site is patched in the same pass (one compiled program per test)
SRC_POS, BASE_POS, HEADS = [[6], [0]], [[2], [5]], [[1], [3]]
LOCS = {"pos": (SRC_POS, BASE_POS), "h.pos": ([HEADS, SRC_POS], [HEADS, BASE_POS])}


def _reps_and_locs(sites):
    reps = [
        {"layer": layer, "component": c, "unit": unit, "max_number_of_units": 1, "group_key": 0}
        for layer, c, unit in sites
    ]
    src, base = zip(*(LOCS[unit] for _, _, unit in sites))
    return reps, {"sources->base": (list(src), list(base))}


def test_vanilla_patches_match_pyvene(pair):
    """block_output, mlp_output and head_attention_value_output (unit h.pos) against pyvene."""
    tm, model = pair
    sites = [(0, "mlp_output", "pos"), (0, "head_attention_value_output", "h.pos"), (1, "block_output", "pos")]
    reps, locs = _reps_and_locs(sites)
    ours = _jaxvene(model, reps, locs)
    _close(ours, _pyvene(tm, reps, locs))
    # each site matters: dropping any one of them changes the logits
    for k in range(len(sites)):
        fewer = [r for i, r in enumerate(reps) if i != k]
        fewer_locs = {
            "sources->base": tuple([x for i, x in enumerate(side) if i != k] for side in locs["sources->base"])
        }
        assert np.abs(ours - _pyvene(tm, fewer, fewer_locs)).max() > 1e-3


def _hand_patch(tm, specs):
    """Base logits with, for each `(layer, which, heads)`, q/k/v (`which` 0/1/2) of those heads at
    BASE_POS replaced by the source's at SRC_POS, by hooks on the fused `query_key_value`."""
    layers = sorted({layer for layer, _, _ in specs})
    saved = {}

    def save(layer):
        def hook(mod, args, out):
            saved[layer] = out.detach().clone()

        return hook

    def swap(layer):
        def hook(mod, args, out):
            out = out.clone()
            view = out.view(out.shape[0], out.shape[1], H, 3, DH)  # HF views (B, T, H, 3*Dh), splits in 3
            src = saved[layer].view(*saved[layer].shape[:2], H, 3, DH)
            for lay, which, heads in specs:
                if lay == layer:
                    for b, ((sp,), (bp,)) in enumerate(zip(SRC_POS, BASE_POS)):
                        view[b, bp, heads[b], which] = src[b, sp, heads[b], which]
            return out

        return hook

    def run(ids, make):
        handles = [tm.gpt_neox.layers[i].attention.query_key_value.register_forward_hook(make(i)) for i in layers]
        try:
            return tm(torch.tensor(ids)).logits.numpy()
        finally:
            for h in handles:
                h.remove()

    with torch.no_grad():
        run(SRC, save)
        return run(BASE, swap)


def test_qkv_patches_match_hand_computation(pair):
    """q/k/v sites (pyvene has none for GPT-NeoX) against swapping slices of the fused projection."""
    tm, model = pair
    sites = [(0, "query_output", "pos"), (1, "head_key_output", "h.pos"), (0, "head_value_output", "h.pos")]
    which = {"query": 0, "key": 1, "value": 2}
    heads = {"pos": [list(range(H))] * 2, "h.pos": HEADS}
    specs = [(layer, which[c.split("_")[-2]], heads[unit]) for layer, c, unit in sites]
    reps, locs = _reps_and_locs(sites)
    ours = _jaxvene(model, reps, locs)
    _close(ours, _hand_patch(tm, specs))
    assert np.abs(ours - np.asarray(model(BASE).logits)).max() > 1e-3  # the patch changes something
    # GPT-2's layout (contiguous thirds of the fused output) would be a different patch
    for k in range(len(specs)):
        shifted = [(lay, (w + 1) % 3 if i == k else w, hs) for i, (lay, w, hs) in enumerate(specs)]
        assert np.abs(ours - _hand_patch(tm, shifted)).max() > 1e-3


# ------------------------------------------------------------------------------ sites
def test_site_table_and_adapter(pair):
    _, model = pair
    adapter = model.jaxvene_adapter()
    site = adapter.site("head_key_output", 1)
    assert (site.tap, site.heads, site.layer, site.indexed) == ("self_attn.k_proj.output", H, 1, True)
    assert adapter.site("mlp_activation", 0).tap == "mlp.act_fn.output"
    assert adapter.site("model.layers[1].mlp.act_fn.output").layer == 1  # pyvene-style module paths
    taps = ["self_attn.q_proj.output", "output", "mlp.act_fn.output"]
    assert adapter.tap_shapes(taps) == dict(zip(taps, [(1, 4, 32), (1, 4, 32), (1, 4, 64)]))
    inputs = adapter.prepare({"input_ids": BASE})
    positions = jnp.array([[1, 5], [0, 3]])
    some = jax.jit(lambda p: adapter.apply(p, inputs, logit_positions=positions)["logits"])(model.params)
    full = model(BASE).logits
    _close(some, jnp.take_along_axis(full, positions[..., None], axis=1), atol=1e-5)
