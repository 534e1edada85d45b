"""pyvene code that ported with surprises (issue #14), against pyvene on the same weights or a
hand computation: per-intervention subspaces with `None` entries, locations as arrays, float
inputs, the output classes, interventions called without sources, the config's attributes,
and saves loaded onto another model."""

import json
import tempfile

import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv
from jaxvene._facade._saving import read_save, restore_interventions, save_intervenable
from jaxvene.core._locations import broadcast_subspaces, expand_subspaces

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")
transformers = pytest.importorskip("transformers")

BASE = np.random.default_rng(0).integers(0, 50, (3, 6))
SRC = np.random.default_rng(1).integers(0, 50, (3, 6))


@pytest.fixture(scope="module")
def pair():
    """A tiny torch GPT-2 and the same weights in Flax."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=24, n_layer=3, n_head=4, vocab_size=50, n_positions=32, attn_implementation="eager"
    )
    torch_model = transformers.GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        flax_model = transformers.FlaxGPT2LMHeadModel.from_pretrained(d, from_pt=True)
    return torch_model, flax_model


def _pyvene(torch_model, reps, types, base, sources, locations, **kwargs):
    model = pv.IntervenableModel(pv.IntervenableConfig(reps, intervention_types=types), torch_model)
    t_sources = None if sources is None else [None if s is None else {"input_ids": torch.tensor(s)} for s in sources]
    with torch.no_grad():
        return model({"input_ids": torch.tensor(base)}, t_sources, locations, **kwargs)[1].logits.numpy()


def _jaxvene(flax_model, reps, types, base, sources, locations, **kwargs):
    model = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=types), flax_model)
    j_sources = None if sources is None else [None if s is None else {"input_ids": s} for s in sources]
    return np.asarray(model({"input_ids": base}, j_sources, locations, **kwargs)[1].logits)


# ---------------------------------------------------------------- 1. subspaces with None entries
LINKED = [
    {"layer": 0, "component": "block_output", "subspace_partition": [[0, 12], [12, 24]], "intervention_link_key": 0},
    {"layer": 0, "component": "block_output", "subspace_partition": [[0, 12], [12, 24]], "intervention_link_key": 0},
]


def test_subspaces_whose_first_entry_is_none(pair):
    """pyvene's test_linked_intervention_and_weights_sharing: `subspaces=[None, [[1]]]` (the
    depth was read from the first entry, None), and the mirrored call gives the same output."""
    torch_model, flax_model = pair
    base, src = BASE[:1], SRC[:1]
    calls = [
        ([None, src], {"sources->base": ([None, [[4]]], [None, [[4]]])}, [None, [[1]]]),
        ([src, None], {"sources->base": ([[[4]], None], [[[4]], None])}, [[[1]], None]),
    ]
    outs = []
    for sources, locations, subspaces in calls:
        theirs = _pyvene(torch_model, LINKED, pv.VanillaIntervention, base, sources, locations, subspaces=subspaces)
        ours = _jaxvene(flax_model, LINKED, jv.VanillaIntervention, base, sources, locations, subspaces=subspaces)
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
        outs.append(ours)
    np.testing.assert_array_equal(outs[0], outs[1])
    plain = np.asarray(flax_model(base).logits)
    assert np.abs(outs[0] - plain).max() > 1e-3  # the second partition was patched


def test_per_intervention_subspaces_for_a_batch():
    """`[None, [[1]] * 16]` (the DAS tutorial's form) is one entry per intervention, by hand."""
    assert broadcast_subspaces([None, [[1]] * 16], 2, 16) == [None, [[1]] * 16]
    assert broadcast_subspaces([[[0, 1]] * 16, None], 2, 16) == [[[0, 1]] * 16, None]
    assert broadcast_subspaces([0, 1], 2, 3) == [[[0, 1]] * 3] * 2  # a flat list of ints: everywhere
    assert broadcast_subspaces(np.array([[[1]] * 3, [[0]] * 3]), 2, 3) == [[[1]] * 3, [[0]] * 3]
    np.testing.assert_array_equal(expand_subspaces([[1]] * 16, 16, ((0, 1), (2, 3)), 4, "s"), [[2, 3]] * 16)


# ---------------------------------------------------------------- 4. locations as arrays, floats refused
def test_integer_arrays_are_locations(flax_gpt2):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    src, base = [[[5], [0]]], [[[2], [3]]]
    ids, source = [{"input_ids": BASE[:2]}, [{"input_ids": SRC[:2]}]]
    _, ref = model(ids, source, {"sources->base": (src, base)})
    for form in (
        (np.array(src), np.array(base)),
        (jnp.array(src), jnp.array(base)),
        np.array([src, base]),  # (2, interventions, batch, units)
        ([np.array(src[0])], [jnp.array(base[0], jnp.int32)]),  # one array per intervention
    ):
        _, out = model(ids, source, {"sources->base": form})
        np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(ref.logits))
    _, ref = model(ids, source, {"sources->base": 3})
    _, out = model(ids, source, {"sources->base": np.int64(3)})
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(ref.logits))
    _, out = model(ids, source, {"sources->base": jnp.asarray(3)})
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(ref.logits))
    assert model.trace_count == 1  # arrays are data like lists


def test_head_position_locations_as_arrays(flax_gpt2):
    model = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "head_attention_value_output", "unit": "h.pos"}]), flax_gpt2
    )
    side = [[[[1], [3]], [[2], [4]]]]  # per intervention: [heads (B, 1), positions (B, 1)]
    args = ({"input_ids": BASE[:2]}, [{"input_ids": SRC[:2]}])
    _, ref = model(*args, {"sources->base": (side, side)})
    _, out = model(*args, {"sources->base": (np.array(side), jnp.array(side))})
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(ref.logits))


@pytest.mark.parametrize(
    "locations",
    [
        {"sources->base": 2.0},
        {"sources->base": 2.5},
        {"sources->base": (2.0, 3)},
        {"base": [[[2.0], [1]]]},
        {"sources->base": ([[[2], [1]]], np.array([[[2.5], [1.0]]]))},
        {"sources->base": jnp.array([[[[2.0]] * 2]] * 2)},
        {"sources->base": True},
    ],
)
def test_float_locations_say_locations_must_be_integers(flax_gpt2, locations):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    with pytest.raises(TypeError, match="must be integers"):
        model({"input_ids": BASE[:2]}, [{"input_ids": SRC[:2]}], locations)


def test_float_subspaces_are_refused(flax_gpt2):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    with pytest.raises(TypeError, match="must be integers"):
        model({"input_ids": BASE[:2]}, [{"input_ids": SRC[:2]}], {"sources->base": 1}, subspaces=[[[1.0]] * 2])
    _, ref = model({"input_ids": BASE[:2]}, [{"input_ids": SRC[:2]}], {"sources->base": 1}, subspaces=[[[1, 2]] * 2])
    _, out = model(
        {"input_ids": BASE[:2]}, [{"input_ids": SRC[:2]}], {"sources->base": 1}, subspaces=np.array([[[1, 2]] * 2])
    )
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(ref.logits))


@pytest.mark.parametrize("ids", [np.array([[1.0, 42.5, 3.0]]), np.array([[1.0, np.nan, 3.0]]), [[1, 2.0, 3]]])
@pytest.mark.parametrize("where", ["base", "source"])
def test_float_input_ids_are_refused(flax_gpt2, ids, where):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    good = {"input_ids": np.array([[1, 2, 3]])}
    base, source = ({"input_ids": ids}, good) if where == "base" else (good, {"input_ids": ids})
    with pytest.raises(TypeError, match="input_ids must be integers"):
        model(base, [source], {"sources->base": 1})


def test_float_position_ids_are_refused(flax_gpt2):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    with pytest.raises(TypeError, match="position_ids must be integers"):
        model({"input_ids": np.array([[1, 2, 3]]), "position_ids": np.array([[0.0, 1.0, 2.5]])}, unit_locations=None)


# ---------------------------------------------------------------- 3. output classes
IDS = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])


@pytest.fixture(scope="module")
def causal_models(flax_gpt2, flax_llama):
    """One IntervenableModel per causal LM, shared so that each compiles once."""
    config = jv.IntervenableConfig([{"layer": 1, "component": "block_output"}])
    return {"gpt2": jv.IntervenableModel(config, flax_gpt2), "llama": jv.IntervenableModel(config, flax_llama)}


def _patch(model, **kwargs):
    return model({"input_ids": IDS}, [{"input_ids": IDS[::-1].copy()}], {"sources->base": 2}, **kwargs)


def test_causal_lm_outputs_are_causal_lm_classes(causal_models):
    from transformers.modeling_flax_outputs import FlaxCausalLMOutput, FlaxCausalLMOutputWithCrossAttentions

    for kind, name in (("gpt2", "FlaxCausalLMOutputWithCrossAttentions"), ("llama", "FlaxCausalLMOutput")):
        original, patched = _patch(causal_models[kind], output_original_output=True)
        for out in (original, patched):
            assert type(out).__name__ == name, type(out)  # was FlaxMaskedLMOutput for both
            assert out.logits.shape == (2, 5, 50)
        if kind == "gpt2":
            assert type(patched) is FlaxCausalLMOutputWithCrossAttentions  # the class GPT-2 itself returns
    assert isinstance(patched, FlaxCausalLMOutput)  # transformers' own name for LLaMA's class still holds


def test_labels_add_a_loss_to_the_causal_lm_output(causal_models):
    labels = IDS.copy()
    labels[1, :2] = -100
    for model in causal_models.values():
        _, out = _patch(model, labels=labels)  # crashed: the output class had no loss field
        assert "CausalLM" in type(out).__name__
        logits = np.asarray(out.logits, np.float64)[:, :-1]
        top = logits.max(-1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        target, keep = labels[:, 1:], labels[:, 1:] != -100
        picked = np.take_along_axis(logp, np.where(keep, target, 0)[..., None], -1)[..., 0]
        np.testing.assert_allclose(float(out.loss), -(picked * keep).sum() / keep.sum(), rtol=1e-5)


def test_other_heads_keep_their_own_output_class():
    """A classifier's logits were wrapped as FlaxMaskedLMOutput too."""
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    adapter = jv.adapters.adapt(transformers.FlaxBertForSequenceClassification(config))
    out = adapter.wrap_output({"logits": jnp.zeros((1, 2))})
    assert type(out).__name__ == "FlaxSequenceClassifierOutput"


# ---------------------------------------------------------------- 5. interventions without sources
NO_SOURCE_KINDS = [
    # (class, whether pyvene 0.1.8 changes the output in parallel mode when the source is None)
    ("VanillaIntervention", False),
    ("AdditionIntervention", False),
    ("SubtractionIntervention", False),
    ("SkipIntervention", False),
    ("RotatedSpaceIntervention", False),
    ("LowRankRotatedSpaceIntervention", False),
    ("BoundlessRotatedSpaceIntervention", False),
    ("SigmoidMaskRotatedSpaceIntervention", False),
    ("SigmoidMaskIntervention", False),
    ("AutoencoderIntervention", False),
    ("JumpReLUAutoencoderIntervention", False),
    ("CollectIntervention", False),  # applied, but it only reads
    ("ZeroIntervention", True),
]


def _rep(name, layer=1):
    component = "mlp_output" if name == "SkipIntervention" else "block_output"
    return {"layer": layer, "component": component, "low_rank_dimension": 2, "latent_dim": 4}


def _locations(mode, n=1):
    if mode == "parallel":
        return {"base": 2}
    return {f"source_{g}->" + ("base" if g == n - 1 else f"source_{g + 1}"): (None, 2) for g in range(n)}


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_every_intervention_kind_without_sources_does_what_pyvene_does(pair, mode):
    """pyvene skips an intervention whose source is None unless it needs none (parallel mode),
    and skips every intervention of a group without a source (serial mode). Per kind: pyvene's
    output against the plain run, and jaxvene's decision (`Execution.active`); then every kind
    at once (each at its own layer and component), jaxvene's logits against pyvene's."""
    torch_model, flax_model = pair
    with torch.no_grad():
        plain = torch_model(torch.tensor(BASE)).logits.numpy()
    kinds = [k for k in NO_SOURCE_KINDS if not (mode == "serial" and k[0] == "CollectIntervention")]  # pyvene: KeyError
    for name, changes in kinds:
        pm = pv.IntervenableModel(pv.IntervenableConfig([_rep(name)], getattr(pv, name), mode=mode), torch_model)
        with torch.no_grad():
            theirs = pm({"input_ids": torch.tensor(BASE)}, unit_locations=_locations(mode))[1].logits.numpy()
        assert (np.abs(theirs - plain).max() > 1e-4) == (changes and mode == "parallel"), name
        jm = jv.IntervenableModel(jv.IntervenableConfig([_rep(name)], getattr(jv, name), mode=mode), flax_model)
        b, s, locs, subs, consts = jm.prepare({"input_ids": BASE}, None, _locations(mode))
        ex = jv.core.Execution(
            jm.adapter, jm.plan(), jm.adapter.params, jm.intervention_params(), s, locs, subs, consts
        )
        pyvene_acts = mode == "parallel" and name in ("ZeroIntervention", "CollectIntervention")
        assert ex.active(0) == pyvene_acts, name
    names = [k[0] for k in kinds]
    reps = [_rep(name, layer=i % 3) for i, name in enumerate(names)]
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps, [getattr(pv, n) for n in names], mode=mode), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, [getattr(jv, n) for n in names], mode=mode), flax_model)
    with torch.no_grad():
        theirs = pm({"input_ids": torch.tensor(BASE)}, unit_locations=_locations(mode, len(reps)))
    ours = jm({"input_ids": BASE}, unit_locations=_locations(mode, len(reps)))
    np.testing.assert_allclose(np.asarray(ours[1].logits), theirs[1].logits.numpy(), atol=1e-4)
    if mode == "parallel":
        (collected,) = ours[0][1]
        expected = theirs[0][1][0].numpy().reshape(3, -1)
        np.testing.assert_allclose(np.asarray(collected).reshape(3, -1), expected, atol=1e-5)


def _no_source_call(model, mode, key=None):
    if isinstance(model, pv.IntervenableModel):
        return model({"input_ids": torch.tensor(BASE)}, unit_locations=_locations(mode))
    return model({"input_ids": BASE}, unit_locations=_locations(mode), key=key)


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_function_intervention_without_sources_is_called_with_none(pair, mode):
    """pyvene applies a plain function even without a source, passing `source=None` (parallel);
    the "smart jump" used to skip it in jaxvene. In serial mode pyvene skips the group."""
    torch_model, flax_model = pair

    def halve(base, source):
        assert source is None
        return base * 0.5

    rep = {"layer": 1, "component": "block_output", "intervention": halve}
    pm = pv.IntervenableModel(pv.IntervenableConfig([rep], mode=mode), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig([rep], mode=mode), flax_model)
    with torch.no_grad():
        _, theirs = _no_source_call(pm, mode)
    _, ours = _no_source_call(jm, mode)
    np.testing.assert_allclose(np.asarray(ours.logits), theirs.logits.numpy(), atol=1e-4)
    plain = np.asarray(flax_model(BASE).logits)
    assert (np.abs(np.asarray(ours.logits) - plain).max() > 1e-3) == (mode == "parallel")
    # by hand: the same as a constant-free halving written as a full-activation function with a source
    if mode == "parallel":
        seen = []
        both = jv.IntervenableModel(
            jv.IntervenableConfig(
                [{"layer": 1, "component": "block_output", "intervention": lambda b, s: seen.append(s) or b * 0.5}]
            ),
            flax_model,
        )
        _, with_source = both({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": 2})
        assert seen and seen[0] is not None  # with a source, the function gets its activations
        np.testing.assert_allclose(np.asarray(with_source.logits), np.asarray(ours.logits), atol=1e-5)


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_constant_sources_and_noise_without_sources(pair, mode):
    torch_model, flax_model = pair
    vec = np.random.default_rng(2).normal(size=(24,)).astype(np.float32)
    rep = {"layer": 1, "component": "block_output"}
    pm = pv.IntervenableModel(pv.IntervenableConfig([rep], mode=mode), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig([rep], mode=mode), flax_model)
    with torch.no_grad():
        _, theirs = pm(
            {"input_ids": torch.tensor(BASE)}, unit_locations=_locations(mode), source_representations=torch.tensor(vec)
        )
    _, ours = jm({"input_ids": BASE}, unit_locations=_locations(mode), source_representations=vec)
    np.testing.assert_allclose(np.asarray(ours.logits), theirs.logits.numpy(), atol=1e-4)
    # pyvene's noise is fixed for exactly 4 positions (it fails on one); jaxvene's applies with a key
    noise = jv.IntervenableModel(
        jv.IntervenableConfig([rep], intervention_types=jv.NoiseIntervention, mode=mode), flax_model
    )
    import jax

    _, noisy = _no_source_call(noise, mode, key=jax.random.key(0))
    plain = np.asarray(flax_model(BASE).logits)
    assert (np.abs(np.asarray(noisy.logits) - plain).max() > 1e-4) == (mode == "parallel")


# ---------------------------------------------------------------- 5. the config keeps what was given
def test_config_keeps_intervention_types_and_model_type_as_given(flax_gpt2):
    reps = [{"layer": 1, "component": "block_output"}, {"layer": 2, "component": "block_output"}]

    def theirs_of(given):
        if given is None:
            return {}
        if isinstance(given, list):
            return {"intervention_types": [getattr(pv, t.__name__) for t in given]}
        return {"intervention_types": getattr(pv, given.__name__)}

    for given in (None, jv.AdditionIntervention, [jv.ZeroIntervention, jv.VanillaIntervention]):
        ours = jv.IntervenableConfig(reps, intervention_types=given, model_type="gpt2")
        theirs = pv.IntervenableConfig(reps, model_type="gpt2", **theirs_of(given))
        assert ours.model_type == theirs.model_type == "gpt2"
        if isinstance(given, list):
            assert ours.intervention_types is given
            assert [t.__name__ for t in ours.intervention_types] == [t.__name__ for t in theirs.intervention_types]
        else:
            assert isinstance(ours.intervention_types, type)
            assert ours.intervention_types.__name__ == theirs.intervention_types.__name__
        jv.IntervenableModel(ours, flax_gpt2)  # builds from the class as from the list
    own = [{**r, "intervention_type": jv.ZeroIntervention} for r in reps]
    # the representations' own types win, as a list (as in pyvene)
    own_types = jv.IntervenableConfig(own, intervention_types=jv.VanillaIntervention).intervention_types
    assert own_types == [jv.ZeroIntervention] * 2
    config = jv.IntervenableConfig(reps[:1], intervention_types=jv.VanillaIntervention)
    config.add_intervention({"layer": 2, "component": "mlp_output", "intervention_type": jv.ZeroIntervention})
    assert config.intervention_types == [jv.VanillaIntervention, jv.ZeroIntervention]
    model = jv.IntervenableModel(config, flax_gpt2)
    assert [type(iv).__name__ for iv in model.intervention_params()] == ["VanillaIntervention", "ZeroIntervention"]
    assert '"model_type": "gpt2"' in repr(jv.IntervenableConfig(reps, model_type="gpt2"))


# ---------------------------------------------------------------- 4. saves know their model
@pytest.fixture(scope="module")
def same_width_llama():
    config = transformers.LlamaConfig(
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=50,
        max_position_embeddings=64,
    )
    return transformers.FlaxLlamaForCausalLM(config, seed=0)


def _gpt2_setup(flax_gpt2):
    reps = [{"layer": 1, "component": "block_output", "low_rank_dimension": 2}]
    return jv.IntervenableModel(
        jv.IntervenableConfig(reps, intervention_types=jv.LowRankRotatedSpaceIntervention), flax_gpt2
    )


def test_a_gpt2_save_does_not_load_onto_a_llama_of_the_same_width(flax_gpt2, same_width_llama, tmp_path):
    model = _gpt2_setup(flax_gpt2)
    model.save(str(tmp_path))
    with pytest.raises(ValueError, match="does not match the model"):
        jv.IntervenableModel.load(str(tmp_path), same_width_llama)
    # with the model's adapter the save's record names both models
    save_intervenable(model, str(tmp_path / "recorded"))
    saved = json.loads((tmp_path / "recorded" / "jaxvene_config.json").read_text())
    assert saved["model"] == {"class": "FlaxGPT2LMHeadModel", "family": "gpt2", "model_type": "gpt2"}
    assert saved["sites"] == [
        {
            "component": "block_output",
            "layer": 1,
            "tap": "transformer.h.1.output",
            "part": None,
            "heads": None,
            "shape": [24],
        }
    ]
    config, saved, weights = read_save(str(tmp_path / "recorded"))
    llama = jv.IntervenableModel(config, same_width_llama)
    with pytest.raises(ValueError, match=r"made on a gpt2 model \(FlaxGPT2LMHeadModel\).*onto a llama model"):
        restore_interventions(llama.plan(), llama.intervention_params(), saved, weights, adapter=llama.adapter)


def test_a_save_loads_onto_the_base_model_of_the_same_weights(flax_gpt2, tmp_path):
    model = _gpt2_setup(flax_gpt2)
    model.save(str(tmp_path))
    bare = transformers.FlaxGPT2Model(flax_gpt2.config, seed=0)
    bare.params = flax_gpt2.params["transformer"]
    loaded = jv.IntervenableModel.load(str(tmp_path), bare)  # "h.1.output" is "transformer.h.1.output"
    np.testing.assert_array_equal(
        np.asarray(loaded.intervention_params()[0].weight), np.asarray(model.intervention_params()[0].weight)
    )


def test_head_sites_record_their_shape(flax_gpt2, tmp_path):
    reps = [{"layer": 2, "component": "head_attention_value_output", "unit": "h.pos"}]
    model = jv.IntervenableModel(jv.IntervenableConfig(reps), flax_gpt2)
    save_intervenable(model, str(tmp_path))
    saved = json.loads((tmp_path / "jaxvene_config.json").read_text())
    assert saved["sites"][0]["heads"] == 4 and saved["sites"][0]["shape"] == [4, 6]
    config, saved, weights = read_save(str(tmp_path))
    saved["sites"][0]["shape"] = [4, 5]
    again = jv.IntervenableModel(config, flax_gpt2)
    with pytest.raises(ValueError, match=r"shape \(4, 6\) in this model but \(4, 5\) in the save"):
        restore_interventions(again.plan(), again.intervention_params(), saved, weights, adapter=again.adapter)


def test_old_saves_still_load_with_a_warning(flax_gpt2, tmp_path):
    model = _gpt2_setup(flax_gpt2)
    model.save(str(tmp_path))
    path = tmp_path / "jaxvene_config.json"
    saved = json.loads(path.read_text())
    for key in ("model", "sites", "interchange_dims"):
        saved.pop(key)
    saved["version"] = 1
    path.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match="before jaxvene recorded the model"):
        loaded = jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    ours, theirs = loaded.intervention_params()[0], model.intervention_params()[0]
    np.testing.assert_array_equal(np.asarray(ours.raw), np.asarray(theirs.raw))


def test_interchange_dim_survives_a_save(flax_gpt2, tmp_path):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1, "component": "block_output"}]), flax_gpt2)
    model.set_intervention_params([model.intervention_params()[0].set_interchange_dim(5)])
    model.save(str(tmp_path))
    loaded = jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    iv = loaded.intervention_params()[0]
    assert iv.interchange_dim == 5
    b, s = np.zeros((1, 24), np.float32), np.ones((1, 24), np.float32)
    np.testing.assert_array_equal(np.asarray(iv(b, s)), (np.arange(24) < 5)[None].astype(np.float32))
