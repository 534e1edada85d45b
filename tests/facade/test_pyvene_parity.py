"""jaxvene against pyvene on identical weights: every component x unit, GPT-2 and LLaMA (GQA).

Tiny random PyTorch models are saved and loaded in Flax with `from_pretrained(dir, from_pt=True)`;
the same pyvene-style call runs through both libraries and the logits must agree within 1e-4.
Batches use different positions per example, and sources longer than the base.
"""

import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")
transformers = pytest.importorskip("transformers")

import jaxvene as jv  # noqa: E402

NON_HEAD = [
    "block_input",
    "block_output",
    "mlp_input",
    "mlp_activation",
    "mlp_output",
    "attention_input",
    "attention_output",
    "attention_value_output",
    "query_output",
    "key_output",
    "value_output",
]
HEAD = ["head_attention_value_output", "head_query_output", "head_key_output", "head_value_output"]


def _pair(kind):
    torch.manual_seed(0)
    if kind == "gpt2":
        config = transformers.GPT2Config(
            n_embd=24,
            n_layer=3,
            n_head=4,
            vocab_size=50,
            n_positions=32,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            attn_implementation="eager",
        )
        torch_model, flax_cls = transformers.GPT2LMHeadModel(config), transformers.FlaxGPT2LMHeadModel
    else:
        config = transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=50,
            max_position_embeddings=64,
            attn_implementation="eager",
        )
        torch_model, flax_cls = transformers.LlamaForCausalLM(config), transformers.FlaxLlamaForCausalLM
    torch_model.eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        flax_model = flax_cls.from_pretrained(d, from_pt=True)
    return torch_model, flax_model


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request):
    return _pair(request.param)


BASE = np.random.default_rng(0).integers(0, 50, (3, 6))
SRC = np.random.default_rng(1).integers(0, 50, (3, 8))


def _both(pair, reps, iv, base=BASE, sources=(SRC,), locations=None, **kwargs):
    torch_model, flax_model = pair
    pv_types = getattr(pv, iv.__name__)
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps, intervention_types=pv_types), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=iv), flax_model)
    t_sources = None if sources is None else [{"input_ids": torch.tensor(s)} for s in sources]
    j_sources = None if sources is None else [{"input_ids": s} for s in sources]
    with torch.no_grad():
        theirs = pm({"input_ids": torch.tensor(base)}, t_sources, locations, **kwargs)
    ours = jm({"input_ids": base}, j_sources, locations, **kwargs)
    return ours, theirs


def _close(ours, theirs):
    np.testing.assert_allclose(np.asarray(ours.logits), theirs.logits.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("component", NON_HEAD)
def test_every_component_per_example_positions(pair, component):
    reps = [{"layer": 1, "component": component, "unit": "pos", "max_number_of_units": 1}]
    locs = {"sources->base": ([[[7], [0], [3]]], [[[2], [5], [1]]])}
    (_, ours), (_, theirs) = _both(pair, reps, jv.VanillaIntervention, locations=locs)
    _close(ours, theirs)


@pytest.mark.parametrize("component", HEAD)
@pytest.mark.parametrize("unit", ["h", "h.pos"])
def test_every_head_component(pair, component, unit):
    reps = [{"layer": 2, "component": component, "unit": unit, "max_number_of_units": 1}]
    if unit == "h":
        locs = {"sources->base": ([[[1], [0], [1]]], [[[0], [1], [1]]])}
        sources = (BASE[::-1].copy(),)  # whole-sequence head patches need equal lengths
    else:
        locs = {
            "sources->base": (
                [[[[1, 0], [0, 1], [1, 1]], [[7, 2], [0, 1], [3, 3]]]],
                [[[[1, 0], [0, 1], [1, 1]], [[2, 4], [5, 0], [1, 1]]]],
            )
        }
        sources = (SRC,)
    (_, ours), (_, theirs) = _both(pair, reps, jv.VanillaIntervention, sources=sources, locations=locs)
    _close(ours, theirs)


@pytest.mark.parametrize("iv", ["AdditionIntervention", "SubtractionIntervention", "VanillaIntervention"])
def test_basic_interventions_several_units_and_subspaces(pair, iv):
    reps = [
        {
            "layer": 1,
            "component": "mlp_output",
            "unit": "pos",
            "max_number_of_units": 2,
            "subspace_partition": [[0, 8], [8, 16]],
        }
    ]
    locs = {"sources->base": ([[[1, 2], [0, 3], [4, 5]]], [[[2, 3], [1, 4], [0, 5]]])}
    (_, ours), (_, theirs) = _both(pair, reps, getattr(jv, iv), locations=locs, subspaces=[[[1]] * 3])
    _close(ours, theirs)


def test_zero_without_source_and_two_sites_with_group_key(pair):
    reps = [{"layer": 0, "component": "block_output"}, {"layer": 2, "component": "attention_output"}]
    (_, ours), (_, theirs) = _both(pair, reps, jv.ZeroIntervention, sources=None, locations={"base": 3})
    _close(ours, theirs)
    grouped = [{**r, "group_key": 0} for r in reps]
    (_, ours), (_, theirs) = _both(pair, grouped, jv.VanillaIntervention, locations={"sources->base": (1, 4)})
    _close(ours, theirs)


def test_serial_mode(pair):
    reps = [{"layer": 0, "component": "block_output"}, {"layer": 2, "component": "block_output"}]
    torch_model, flax_model = pair
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps, mode="serial"), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, mode="serial"), flax_model)
    s0, s1 = SRC, np.random.default_rng(5).integers(0, 50, (3, 7))
    locs = {"source_0->source_1": 3, "source_1->base": 4}
    with torch.no_grad():
        _, theirs = pm(
            {"input_ids": torch.tensor(BASE)}, [{"input_ids": torch.tensor(s0)}, {"input_ids": torch.tensor(s1)}], locs
        )
    _, ours = jm({"input_ids": BASE}, [{"input_ids": s0}, {"input_ids": s1}], locs)
    _close(ours, theirs)


def test_source_representations_and_original_output(pair):
    torch_model, _ = pair
    reps = [{"layer": 1, "component": "block_output"}]
    vec = np.random.default_rng(3).normal(size=(torch_model.config.hidden_size,)).astype(np.float32)
    torch_model_pm = pv.IntervenableModel(
        pv.IntervenableConfig(reps, intervention_types=pv.AdditionIntervention), torch_model
    )
    with torch.no_grad():
        orig_t, theirs = torch_model_pm(
            {"input_ids": torch.tensor(BASE)},
            unit_locations={"base": 2},
            source_representations=torch.tensor(vec),
            output_original_output=True,
        )
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.AdditionIntervention), pair[1])
    orig_j, ours = jm(
        {"input_ids": BASE}, unit_locations={"base": 2}, source_representations=vec, output_original_output=True
    )
    _close(ours, theirs)
    _close(orig_j, orig_t)


def test_collect_single_position_matches_pyvene(pair):
    reps = [{"layer": 1, "component": "block_output"}]
    (ours_pair, _), (theirs_pair, _) = _both(
        pair, reps, jv.CollectIntervention, sources=None, locations={"base": [[[2], [4], [0]]]}
    )
    ours, theirs = np.asarray(ours_pair[1][0]), theirs_pair[1][0].numpy()
    np.testing.assert_allclose(ours.reshape(theirs.shape), theirs, atol=1e-5)


def test_left_padding_with_position_ids(pair):
    torch_model, flax_model = pair
    mask = np.ones_like(BASE)
    mask[0, :2] = 0
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    reps = [{"layer": 1, "component": "block_output"}]
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps), flax_model)
    t = lambda a: torch.tensor(a)
    with torch.no_grad():
        _, theirs = pm(
            {"input_ids": t(BASE), "attention_mask": t(mask), "position_ids": t(pos)},
            [{"input_ids": t(BASE[::-1].copy())}],
            {"sources->base": 5},
        )
    _, ours = jm({"input_ids": BASE, "attention_mask": mask}, [{"input_ids": BASE[::-1].copy()}], {"sources->base": 5})
    # padded positions' logits are meaningless; compare the real tokens
    np.testing.assert_allclose(np.asarray(ours.logits)[0, 2:], theirs.logits.numpy()[0, 2:], atol=1e-4)
    np.testing.assert_allclose(np.asarray(ours.logits)[1:], theirs.logits.numpy()[1:], atol=1e-4)
