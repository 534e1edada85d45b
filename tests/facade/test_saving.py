"""Save -> load round trips, clear errors for bad files, and pyvene's saved weights."""

import json
import os

import numpy as np
import pytest

import jaxvene as jv

IDS = np.random.default_rng(0).integers(0, 50, (2, 5))
SRC = np.random.default_rng(1).integers(0, 50, (2, 5))


def _setup(model, types):
    reps = [
        {"layer": 1, "component": "block_output", "low_rank_dimension": 3, "intervention_link_key": 0},
        {"layer": 1, "component": "block_output", "low_rank_dimension": 3, "intervention_link_key": 0},
        {"layer": 2, "component": "mlp_output", "low_rank_dimension": 3},
    ]
    return jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=types), model)


def _call(m):
    return m({"input_ids": IDS}, [{"input_ids": SRC}] * 3, {"sources->base": 2})[1].logits


@pytest.mark.parametrize(
    "types",
    [
        [jv.VanillaIntervention] * 3,
        [jv.LowRankRotatedSpaceIntervention, jv.LowRankRotatedSpaceIntervention, jv.BoundlessRotatedSpaceIntervention],
    ],
)
def test_round_trip_gives_identical_outputs(flax_gpt2, tmp_path, types):
    model = _setup(flax_gpt2, types)
    # change the weights from their initial values so the test sees the load
    import equinox as eqx
    import jax

    slots = [
        jax.tree_util.tree_map(lambda x: x * 1.5 if eqx.is_inexact_array(x) else x, iv)
        for iv in model.intervention_params()
    ]
    model.set_intervention_params(slots)
    model.save(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["interventions.safetensors", "jaxvene_config.json"]
    loaded = jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    np.testing.assert_array_equal(_call(loaded), _call(model))
    assert loaded.interventions[loaded.sorted_keys[0]] is loaded.interventions[loaded.sorted_keys[1]]


def test_bad_saves_are_rejected_clearly(flax_gpt2, flax_llama, tmp_path):
    model = _setup(flax_gpt2, [jv.LowRankRotatedSpaceIntervention] * 3)
    model.save(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        jv.IntervenableModel.load(str(tmp_path / "nope"), flax_gpt2)
    weights = tmp_path / "interventions.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    weights.write_bytes(data)
    config = tmp_path / "jaxvene_config.json"
    text = config.read_text()
    config.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a jaxvene intervenable config"):
        jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    config.write_text(text[:40])
    with pytest.raises(ValueError, match="not valid JSON"):
        jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    config.write_text(text)
    import transformers

    wider = transformers.FlaxGPT2LMHeadModel(  # the same family, width 32: the widths are what differ
        transformers.GPT2Config(n_embd=32, n_layer=4, n_head=4, vocab_size=50, n_positions=32), seed=0
    )
    with pytest.raises(ValueError, match="32 wide in this model but the save was made for width 24"):
        jv.IntervenableModel.load(str(tmp_path), wider)
    with pytest.raises(ValueError, match="made on a gpt2 model .* loaded onto a llama model"):
        jv.IntervenableModel.load(str(tmp_path), flax_llama)
    saved = json.loads(text)
    saved["intervention_types"][0] = "os.system"
    config.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="unknown intervention type 'os.system'"):
        jv.IntervenableModel.load(str(tmp_path), flax_gpt2)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_functions_cannot_be_saved(flax_gpt2, tmp_path):
    model = jv.IntervenableModel(
        jv.IntervenableConfig([jv.RepresentationConfig(1, "block_output", intervention=lambda b, s: b)]), flax_gpt2
    )
    with pytest.raises(ValueError, match="functions cannot be saved"):
        model.save(str(tmp_path))


def test_pyvene_saved_low_rank_weights_load(tmp_path):
    torch = pytest.importorskip("torch")
    pv = pytest.importorskip("pyvene")
    torch.manual_seed(0)
    theirs = pv.LowRankRotatedSpaceIntervention(embed_dim=24, low_rank_dimension=3)
    path = tmp_path / "intkey_layer_1.bin"
    torch.save(theirs.state_dict(), path)
    ours = jv.load_pyvene_intervention(str(path), jv.LowRankRotatedSpaceIntervention(24, low_rank_dimension=3))
    np.testing.assert_allclose(ours.weight, theirs.rotate_layer.weight.detach().numpy(), atol=1e-5)
    b = np.random.default_rng(0).normal(size=(2, 24)).astype(np.float32)
    s = np.random.default_rng(1).normal(size=(2, 24)).astype(np.float32)
    with torch.no_grad():
        ref = theirs(torch.tensor(b), torch.tensor(s)).numpy()
    np.testing.assert_allclose(ours(b, s), ref, atol=1e-5)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable PyTorch state dict"):
        jv.load_pyvene_intervention(str(path), jv.LowRankRotatedSpaceIntervention(24, low_rank_dimension=3))


def test_the_facade_refuses_a_save_of_another_family_of_the_same_width(tmp_path):
    """LLaMA and Mistral share tap names and widths: only the recorded family tells them apart,
    so `IntervenableModel.save`/`load` must hand the adapter to the saving code."""
    raw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    llama = jv.NativeDecoder.random({"model_type": "llama", "vocab_size": 50, **raw}, scale=0.3)
    mistral = jv.NativeDecoder.random({"model_type": "mistral", "vocab_size": 50, **raw}, scale=0.3)
    config = jv.IntervenableConfig(
        [{"layer": 1, "component": "block_output"}], intervention_types=jv.RotatedSpaceIntervention
    )
    jv.IntervenableModel(config, llama).save(str(tmp_path))
    jv.IntervenableModel.load(str(tmp_path), llama)
    with pytest.raises(ValueError, match="made on a llama model .* loaded onto a mistral model"):
        jv.IntervenableModel.load(str(tmp_path), mistral)
