"""Interventions on jaxvene's native decoders against pyvene and against torch forward hooks.

Vanilla patches, many sites in one group (each site at its own base position, so none hides
another), must give the logits of

* pyvene 0.1.8 on the same torch model for the families it registers (LLaMA, Mistral, Gemma,
  Gemma 2, Qwen2), except the sites it sizes wrongly (`PYVENE_WRONG`), and
* the hook reference of `_torch_ref.py` for the others (Qwen3, Gemma 3, Phi-3, OLMo 2: Phi-3's
  q/k/v are slices of `qkv_proj`'s output, its mlp_activation `mlp.activation_fn`'s output).
  The hook reference is itself checked against pyvene where both exist, and stands in for
  pyvene everywhere in a venv without it (the transformers 5 one).

Two groups of sites cover every component: block, attention (input, output, value output),
MLP (input, activation, output), q/k/v and the head views (query heads; key/value heads under
GQA). A torch-only guard shows each site changes the reference's logits.

`attention_weight` (the attention probabilities, unit "h.pos": one row over the keys per head
and query position): a CollectIntervention returns torch's `output_attentions=True` rows, on a
sliding-window layer (Gemma 2, layer 0) and a full one (Qwen3, layer 1); a Vanilla patch of
rows equals torch with those rows replaced where eager attention passes the probabilities to
its (p=0) dropout (see `_torch_ref.attention_probs`).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import _torch_ref as ref  # noqa: E402
from _cases import BASE, CASES, FAMILY_CASES, SRC, assert_close, max_diff, native, torch_model  # noqa: E402

import jaxvene as jv  # noqa: E402

# (layer, component, unit, source locations, base locations); base positions per example are
# distinct within each group. h.pos locations are [[heads per example], [positions per example]].
SITES_A = [
    (0, "block_input", "pos", [[0], [8]], [[1], [6]]),
    (0, "head_value_output", "h.pos", [[[1], [0]], [[3], [1]]], [[[1], [0]], [[2], [4]]]),  # kv heads
    (0, "mlp_activation", "pos", [[6], [0]], [[3], [5]]),
    (1, "head_query_output", "h.pos", [[[3], [2]], [[5], [6]]], [[[3], [2]], [[4], [1]]]),
    (1, "attention_value_output", "pos", [[4], [2]], [[5], [0]]),
    (1, "attention_output", "pos", [[7], [3]], [[6], [2]]),
    (1, "mlp_output", "pos", [[2], [5]], [[7], [3]]),
]
SITES_B = [
    (0, "attention_input", "pos", [[1], [7]], [[0], [7]]),
    (0, "query_output", "pos", [[5], [4]], [[2], [1]]),
    (0, "head_key_output", "h.pos", [[[0], [1]], [[8], [2]]], [[[0], [1]], [[4], [3]]]),  # kv heads
    (0, "value_output", "pos", [[3], [6]], [[5], [6]]),
    (1, "key_output", "pos", [[0], [1]], [[1], [0]]),
    (1, "head_attention_value_output", "h.pos", [[[2], [3]], [[6], [0]]], [[[2], [3]], [[3], [5]]]),
    (1, "mlp_input", "pos", [[8], [8]], [[6], [4]]),
    (1, "block_output", "pos", [[4], [3]], [[7], [2]]),
]
GROUPS = {"A": SITES_A, "B": SITES_B}


def _reps_and_locs(sites):
    reps = [
        {"layer": layer, "component": c, "unit": unit, "max_number_of_units": 1, "group_key": 0}
        for layer, c, unit, _, _ in sites
    ]
    return reps, {"sources->base": ([s[3] for s in sites], [s[4] for s in sites])}


def _jaxvene(model, sites, base=BASE, src=SRC):
    reps, locs = _reps_and_locs(sites)
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention), model)
    _, out = jm({"input_ids": base}, [{"input_ids": src}], locs)
    return np.asarray(out.logits)


def _pyvene(tm, sites):
    pv = pytest.importorskip("pyvene")
    reps, locs = _reps_and_locs(sites)
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps, intervention_types=pv.VanillaIntervention), tm)
    with torch.no_grad():
        _, out = pm({"input_ids": torch.tensor(BASE)}, [{"input_ids": torch.tensor(SRC)}], locs)
    return out.logits.float().numpy()


# pyvene 0.1.8 sizes Gemma's attention_value_output and query_output by hidden_size, which is
# not num_heads * head_dim here (16 x 4 = 64 != 32), so it patches only the first 32 features;
# its Gemma (1) head components ask for `config.hhead_dim` and fail. There the hook reference
# stands in (it equals pyvene on the other sites: test_hook_reference_equals_pyvene).
PYVENE_WRONG = {
    "gemma": {
        "attention_value_output",
        "query_output",
        "head_query_output",
        "head_key_output",
        "head_value_output",
        "head_attention_value_output",
    },
    "gemma2": {"attention_value_output", "query_output"},
}


def _pyvene_can(name, sites):
    wrong = PYVENE_WRONG.get(CASES[name].model_type, set())
    return CASES[name].pyvene and not any(s[1] in wrong for s in sites)


def _have_pyvene() -> bool:
    try:
        import pyvene  # noqa: F401
    except ImportError:
        return False
    return True


def _reference(name, sites):
    """pyvene where it registers the family and sizes the sites right; otherwise (and in a venv
    without pyvene, e.g. transformers 5's) the hook reference."""
    tm = torch_model(name)
    if _pyvene_can(name, sites) and _have_pyvene():
        return _pyvene(tm, sites)
    return ref.vanilla_patch(tm, BASE, SRC, sites)


PAIRS = [(n, g) for n in FAMILY_CASES for g in GROUPS]


@pytest.mark.parametrize("name,group", PAIRS, ids=[f"{n}-{g}" for n, g in PAIRS])
def test_vanilla_patches_match_reference(name, group):
    sites = GROUPS[group]
    assert_close(_jaxvene(native(name), sites), _reference(name, sites), what=f"{name} sites {group}")


@pytest.mark.parametrize("name", ["llama", "mistral", "qwen2", "gemma", "gemma2"])
def test_hook_reference_equals_pyvene(name):
    """The torch hook reference used for the families pyvene lacks agrees with pyvene (on the
    sites pyvene gets right, see PYVENE_WRONG)."""
    tm = torch_model(name)
    wrong = PYVENE_WRONG.get(name, set())
    for sites in GROUPS.values():
        sites = [s for s in sites if s[1] not in wrong]
        assert_close(ref.vanilla_patch(tm, BASE, SRC, sites), _pyvene(tm, sites), atol=1e-5, what=name)


@pytest.mark.parametrize("name", ["qwen3", "phi3", "olmo2", "gemma3_text", "gemma"])
def test_every_site_changes_the_reference(name):
    """Guard (torch only): dropping any one site moves the reference's logits by > 1e-3, so a
    site jaxvene skipped or misplaced would show."""
    tm = torch_model(name)
    for sites in GROUPS.values():
        full = ref.vanilla_patch(tm, BASE, SRC, sites)
        for k in range(len(sites)):
            fewer = [s for i, s in enumerate(sites) if i != k]
            assert max_diff(full, ref.vanilla_patch(tm, BASE, SRC, fewer)) > 1e-3, sites[k]


def test_phi3_sites_are_the_fused_slices():
    """Phi-3's key_output is the middle slice of qkv_proj: patching it in torch equals patching
    that slice by hand, and differs from patching the query slice (the reference's layout)."""
    tm = torch_model("phi3")
    h, kv, dh = 4, 2, 8
    module, where, sl, _ = ref.locate(tm, 0, "key_output")
    assert (module, where, sl) == (tm.model.layers[0].self_attn.qkv_proj, "output", slice(h * dh, (h + kv) * dh))
    site = [(0, "key_output", "pos", [[2], [3]], [[4], [5]])]
    q_site = [(0, "query_output", "pos", [[2], [3]], [[4], [5]])]
    assert max_diff(ref.vanilla_patch(tm, BASE, SRC, site), ref.vanilla_patch(tm, BASE, SRC, q_site)) > 1e-3


# ------------------------------------------------------------------------------ attention_weight
HEADS = [[0, 3], [1, 2]]  # per example: the query heads read or written
POSITIONS = [[2, 5], [7, 4]]  # per example: the query positions (rows)
SRC_POSITIONS = [[6, 1], [3, 7]]


def _torch_attentions(tm, ids):
    with torch.no_grad():
        out = tm(torch.tensor(ids, dtype=torch.long), output_attentions=True)
    return [a.float().numpy() for a in out.attentions]


@pytest.mark.parametrize("name,layer", [("gemma2", 0), ("qwen3", 1)], ids=["gemma2-sliding", "qwen3-full"])
def test_collect_attention_weight_matches_output_attentions(name, layer):
    model, tm = native(name), torch_model(name)
    rep = {"layer": layer, "component": "attention_weight", "unit": "h.pos"}
    jm = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.CollectIntervention), model)
    (_, collected), _ = jm({"input_ids": BASE}, unit_locations={"base": ([HEADS, POSITIONS],)})
    ours = np.asarray(collected[0])
    probs = _torch_attentions(tm, BASE)[layer]
    theirs = np.stack([probs[b][np.ix_(HEADS[b], POSITIONS[b])] for b in range(2)])
    assert ours.shape == theirs.shape == (2, 2, 2, BASE.shape[1])
    assert_close(ours, theirs, atol=1e-5, what=f"{name} attention_weight")
    if name == "gemma2":  # the window masks: position 7 sees keys 5..7 only
        assert np.all(theirs[1, :, 0, :5] == 0) and np.all(theirs[1, :, 0, 5:] > 0)


def test_dropout_capture_equals_output_attentions():
    """The reference's place to read the probabilities holds output_attentions' values."""
    tm = torch_model("mistral")
    for layer in range(2):
        assert_close(ref.read_attention_probs(tm, BASE, layer), _torch_attentions(tm, BASE)[layer], atol=0)


@pytest.mark.parametrize("name,layer", [("llama", 1), ("gemma2", 0)])
def test_vanilla_attention_weight_patch_matches_torch(name, layer):
    model, tm = native(name), torch_model(name)
    src = SRC[:, : BASE.shape[1]]  # rows run over the keys: source and base of one length
    rep = {"layer": layer, "component": "attention_weight", "unit": "h.pos"}
    jm = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), model)
    _, out = jm(
        {"input_ids": BASE}, [{"input_ids": src}], {"sources->base": ([[HEADS, SRC_POSITIONS]], [[HEADS, POSITIONS]])}
    )
    theirs = ref.patch_attention_probs(tm, BASE, src, layer, HEADS, POSITIONS, SRC_POSITIONS)
    assert_close(out.logits, theirs, what=f"{name} attention_weight patch")
    assert max_diff(theirs, _torch_logits_plain(tm)) > 1e-3  # the patch does something


def _torch_logits_plain(tm):
    with torch.no_grad():
        return tm(torch.tensor(BASE, dtype=torch.long)).logits.numpy()
