"""Bad input gets a clear error before anything is traced (inside jit JAX would clamp)."""

import numpy as np
import pytest

import jaxvene as jv

IDS = np.random.default_rng(0).integers(0, 50, (2, 6))
SRC = np.random.default_rng(1).integers(0, 50, (2, 8))


def _model(flax_gpt2, **rep):
    rep = {"layer": 1, "component": "block_output", **rep}
    return jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), flax_gpt2)


def test_unknown_component_lists_the_valid_ones(flax_gpt2):
    with pytest.raises(ValueError, match="unknown component 'mlp'.*block_output.*head_query_output"):
        _model(flax_gpt2, component="mlp")


def test_unknown_module_path(flax_gpt2):
    with pytest.raises(ValueError, match="does not name a module call"):
        _model(flax_gpt2, component="transformer.h[9].mlp.output")


def test_module_path_component_works(flax_gpt2):
    a = _model(flax_gpt2, component="transformer.h[1].mlp.output")
    b = _model(flax_gpt2, component="mlp_output")
    np.testing.assert_allclose(
        a({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": 2})[1].logits,
        b({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": 2})[1].logits,
    )


def test_layer_out_of_range(flax_gpt2):
    with pytest.raises(IndexError, match="layer 4 is out of range.*4 layers"):
        _model(flax_gpt2, layer=4)


def test_unknown_unit_and_wrong_unit_for_component(flax_gpt2):
    with pytest.raises(ValueError, match="unknown unit 'token'"):
        _model(flax_gpt2, unit="token")
    with pytest.raises(ValueError, match="per-head component.*'h'"):
        _model(flax_gpt2, component="head_query_output", unit="pos")
    with pytest.raises(ValueError, match="needs a head component"):
        _model(flax_gpt2, unit="h")


def test_position_out_of_range_names_position_and_length(flax_gpt2):
    m = _model(flax_gpt2)
    with pytest.raises(IndexError, match="base.*position 6 is out of range.*0..5"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": (3, 6)})
    with pytest.raises(IndexError, match="source.*position 8 is out of range.*0..7"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": (8, 3)})
    with pytest.raises(IndexError, match="position -1"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": -1})


def test_head_out_of_range(flax_gpt2):
    m = _model(flax_gpt2, component="head_value_output", unit="h.pos")
    with pytest.raises(IndexError, match="head 4 is out of range.*0..3"):
        m(
            {"input_ids": IDS},
            [{"input_ids": SRC}],
            {"sources->base": ([[[[4]] * 2, [[1]] * 2]], [[[[0]] * 2, [[1]] * 2]])},
        )


def test_subspace_out_of_range(flax_gpt2):
    m = _model(flax_gpt2, subspace_partition=[[0, 12], [12, 24]])
    with pytest.raises(IndexError, match="subspace 2 is out of range.*2 subspaces"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": 1}, subspaces=2)
    raw = _model(flax_gpt2)
    with pytest.raises(IndexError, match="subspace index 24 is out of range.*width 24"):
        raw({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": 1}, subspaces=[0, 24, 3])


def test_token_ids_past_the_vocabulary(flax_gpt2):
    m = _model(flax_gpt2)
    with pytest.raises(ValueError, match="token id 5[0-9], outside the vocabulary of 50 tokens"):
        m({"input_ids": IDS + 10}, [{"input_ids": SRC}], {"sources->base": 1})
    with pytest.raises(ValueError, match="source 0 input_ids contain token id"):
        m({"input_ids": IDS}, [{"input_ids": SRC + 50}], {"sources->base": 1})


def test_location_nesting_and_batch_mismatches(flax_gpt2):
    m = _model(flax_gpt2)
    with pytest.raises(ValueError, match="2 entries but there are 1 interventions"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": ([[[1]] * 2] * 2, [[[1]] * 2] * 2)})
    with pytest.raises(ValueError, match="3 rows of positions for a batch of 2"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": ([[[1]] * 3], [[[1]] * 3])})
    with pytest.raises(ValueError, match="same number of positions"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": ([[[1], [1, 2]]], [[[1], [1, 2]]])})
    with pytest.raises(ValueError, match="source 0 has 1 examples but the base has 2"):
        m({"input_ids": IDS}, [{"input_ids": SRC[:1]}], {"sources->base": 1})
    with pytest.raises(ValueError, match="source selects \\(2,\\) units.*base \\(1,\\)"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": ([[[1, 2]] * 2], [[[1]] * 2])})


def test_wrong_number_of_sources(flax_gpt2):
    reps = [
        {"layer": 1, "component": "block_output"},
        {"layer": 2, "component": "block_output"},
        {"layer": 3, "component": "block_output"},
    ]
    m = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention), flax_gpt2)
    with pytest.raises(ValueError, match="2 sources were given for 3 source groups"):
        m({"input_ids": IDS}, [{"input_ids": SRC}] * 2, {"sources->base": 1})


def test_ambiguous_two_int_list_and_unknown_key(flax_gpt2):
    m = _model(flax_gpt2)
    with pytest.raises(ValueError, match="ambiguous.*\\(3, 5\\)"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": [3, 5]})
    with pytest.raises(ValueError, match="unknown unit_locations key 'source->base'"):
        m({"input_ids": IDS}, [{"input_ids": SRC}], {"source->base": 3})


def test_config_errors():
    with pytest.raises(ValueError, match="unknown representation fields \\['layers'\\]"):
        jv.IntervenableConfig([{"layers": 1}])
    with pytest.raises(ValueError, match="mode must be"):
        jv.IntervenableConfig([{"layer": 1}], mode="sequential")
    with pytest.raises(ValueError, match="2 entries for 1 representations"):
        jv.IntervenableConfig([{"layer": 1}], intervention_types=[jv.VanillaIntervention] * 2)


def test_group_keys_must_be_all_or_none(flax_gpt2):
    reps = [{"layer": 1, "component": "block_output", "group_key": 0}, {"layer": 2, "component": "block_output"}]
    with pytest.raises(ValueError, match="group_key must be set on every representation"):
        jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention), flax_gpt2)


def test_unsupported_model_and_inputs(flax_gpt2):
    with pytest.raises(TypeError, match="cannot wrap a dict"):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 1}]), {"not": "a model"})
    m = _model(flax_gpt2)
    with pytest.raises(ValueError, match="unsupported model inputs \\['inputs_embeds'\\]"):
        m({"input_ids": IDS, "inputs_embeds": IDS}, [{"input_ids": SRC}], {"sources->base": 1})
