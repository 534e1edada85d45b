"""transformers 4.x's Flax LLaMA, Mistral and Gemma ignore some config fields that their PyTorch
twins implement (rope_scaling, rope_theta, mlp_bias, ...): the adapter refuses such models,
naming the field, instead of returning wrong logits. Configs the Flax classes do handle are
accepted, and give PyTorch's logits (the cases at the edge of a refusal are checked here; the
plain configs in tests/families/test_decoders.py and tests/adapters/test_stack.py)."""

import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "FlaxLlamaForCausalLM"):  # transformers 5 has no Flax classes
    pytest.skip("needs transformers 4.x's Flax classes", allow_module_level=True)

import jaxvene as jv  # noqa: E402
from jaxvene.adapters import adapt  # noqa: E402

T = transformers
TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=50,
    max_position_embeddings=64,
)
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
FLAX = {"llama": T.FlaxLlamaForCausalLM, "mistral": T.FlaxMistralForCausalLM, "gemma": T.FlaxGemmaForCausalLM}
CONFIG = {"llama": T.LlamaConfig, "mistral": T.MistralConfig, "gemma": T.GemmaConfig}


def _flax(family, **kw):
    extra = dict(head_dim=8) if family == "gemma" else {}
    return FLAX[family](CONFIG[family](**{**TINY, **extra, **kw}), seed=0)


@pytest.mark.parametrize(
    "family, kw, named",
    [
        ("llama", dict(rope_scaling=LLAMA3), "rope_scaling={'rope_type': 'llama3'"),
        ("llama", dict(rope_scaling={"rope_type": "linear", "factor": 4.0}), "rope_scaling="),
        ("llama", dict(rope_scaling={"type": "dynamic", "factor": 4.0}), "rope_scaling="),
        ("llama", dict(rope_theta=500000.0), "rope_theta=500000.0"),
        ("llama", dict(mlp_bias=True), "mlp_bias=True"),
        ("llama", dict(head_dim=16), "head_dim=16"),
        ("llama", dict(tie_word_embeddings=True), "tie_word_embeddings=True"),  # a random, separate lm_head
        ("mistral", dict(sliding_window=None), "sliding_window=None"),
        ("mistral", dict(sliding_window=8), "sliding_window=8"),
        ("mistral", dict(sliding_window=64, rope_theta=1e6), "rope_theta=1000000.0"),
        ("gemma", dict(hidden_act="gelu"), "hidden_act='gelu'"),
        ("gemma", dict(hidden_activation="gelu"), "hidden_activation='gelu'"),
        ("gemma", dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling="),
    ],
)
def test_fields_the_flax_class_ignores_are_refused(family, kw, named):
    model = _flax(family, **kw)
    with pytest.raises(NotImplementedError, match="jaxvene.from_pretrained") as err:
        adapt(model)
    assert named in str(err.value) and type(model).__name__ in str(err.value)
    with pytest.raises(NotImplementedError, match=named.split("=")[0]):  # the facade goes through it too
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "block_output"}]), model)


def test_every_ignored_field_is_named_at_once():
    with pytest.raises(NotImplementedError) as err:
        adapt(_flax("llama", rope_scaling=LLAMA3, rope_theta=500000.0, mlp_bias=True))
    assert all(f in str(err.value) for f in ("rope_scaling", "rope_theta", "mlp_bias"))


def test_a_family_check_runs_for_transformers_classes_only():
    """The check is about transformers' Flax classes: a model of jaxvene's own (or anyone's)
    serving the same table is not refused for math it may well do."""

    class OwnLlama:
        def __init__(self, model):
            self.module, self.params, self.config = model.module, model.params, model.config

    flax_model = _flax("llama")
    flax_model.config.rope_scaling = LLAMA3  # after init: the module is the same
    with pytest.raises(NotImplementedError, match="rope_scaling"):
        adapt(flax_model)
    assert adapt(OwnLlama(flax_model)).family.name == "llama"


def _torch_pair(family, **kw):
    """A tiny random PyTorch model (biases random too: PyTorch starts them at zero) and its Flax
    twin loaded from the saved checkpoint."""
    torch.manual_seed(0)
    extra = dict(head_dim=8) if family == "gemma" else {}
    config = CONFIG[family](**{**TINY, **extra, **kw}, initializer_range=0.3, attn_implementation="eager")
    torch_cls = {"llama": T.LlamaForCausalLM, "mistral": T.MistralForCausalLM, "gemma": T.GemmaForCausalLM}[family]
    torch_model = torch_cls(config).eval()
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0.0, 0.3)
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        flax_model = FLAX[family].from_pretrained(d, from_pt=True)
    return torch_model, flax_model


IDS = np.random.default_rng(0).integers(0, 50, (2, 20))


def _torch_logits(torch_model):
    with torch.no_grad():
        return torch_model(torch.tensor(IDS)).logits.numpy()


@pytest.mark.parametrize(
    "family, kw",
    [
        # a window as long as the model's longest input: the Flax mask's extra token never exists
        ("mistral", dict(sliding_window=64)),
        ("llama", dict(rope_scaling={"rope_type": "default"}, rope_theta=10000)),
        ("gemma", dict(hidden_act="gelu", hidden_activation="gelu")),
        ("llama", dict(attention_bias=True)),  # the Flax attention does have biases
    ],
)
def test_configs_the_flax_class_handles_are_accepted_and_match_torch(family, kw):
    torch_model, flax_model = _torch_pair(family, **kw)
    logits = adapt(flax_model).apply(flax_model.params, {"input_ids": IDS})["logits"]
    np.testing.assert_allclose(np.asarray(logits), _torch_logits(torch_model), atol=1e-4, rtol=1e-4)


def test_a_tied_llama_is_accepted_once_its_head_is_the_embedding():
    """A tied PyTorch checkpoint omits the head: the Flax LLaMA gets a random one (refused);
    setting it to the transposed embedding gives PyTorch's logits (accepted)."""
    torch_model, flax_model = _torch_pair("llama", tie_word_embeddings=True)
    with pytest.raises(NotImplementedError, match="tie_word_embeddings"):
        adapt(flax_model)
    params = flax_model.params
    params["lm_head"]["kernel"] = params["model"]["embed_tokens"]["embedding"].T
    flax_model.params = params
    logits = adapt(flax_model).apply(flax_model.params, {"input_ids": IDS})["logits"]
    np.testing.assert_allclose(np.asarray(logits), _torch_logits(torch_model), atol=1e-4, rtol=1e-4)
