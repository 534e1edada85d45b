"""Site tables of BERT, RoBERTa, ViT and T5 against PyTorch on the same converted weights.

pyvene has no mapping for these families, so the reference for an interchange patch is a hand
computation with torch forward hooks: record the module's output (or input) on the source run,
write it at the same position (and head) in the base run, compare the outputs.
"""

import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jaxvene as jv  # noqa: E402

ATOL = 1e-4
SMALL = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    attn_implementation="eager",
)


def _load(torch_model, flax_cls):
    torch_model.eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        return flax_cls.from_pretrained(d, from_pt=True)


def _pair(torch_cls, flax_cls, config):
    torch.manual_seed(0)
    torch_model = torch_cls(config)
    return torch_model, _load(torch_model, flax_cls)


@pytest.fixture(scope="module")
def bert():
    # a larger init than BERT's 0.02, so that one position visibly moves the others
    config = transformers.BertConfig(vocab_size=50, max_position_embeddings=32, initializer_range=0.2, **SMALL)
    return _pair(transformers.BertForMaskedLM, transformers.FlaxBertForMaskedLM, config)


@pytest.fixture(scope="module")
def roberta():
    config = transformers.RobertaConfig(vocab_size=50, max_position_embeddings=34, pad_token_id=1, **SMALL)
    return _pair(transformers.RobertaForMaskedLM, transformers.FlaxRobertaForMaskedLM, config)


@pytest.fixture(scope="module")
def vit():
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=3, num_labels=5, **SMALL)
    return _pair(transformers.ViTForImageClassification, transformers.FlaxViTForImageClassification, config)


@pytest.fixture(scope="module")
def t5():
    # more decoder than encoder layers: each stack is counted on its own
    config = transformers.T5Config(
        vocab_size=50,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=3,
        num_heads=4,
        dropout_rate=0.0,
        attn_implementation="eager",
    )
    return _pair(transformers.T5ForConditionalGeneration, transformers.FlaxT5ForConditionalGeneration, config)


RNG = np.random.default_rng(0)
IDS = {"base": RNG.integers(2, 50, (2, 6)), "source": RNG.integers(2, 50, (2, 6))}
PIXELS = {
    "base": RNG.normal(size=(2, 3, 16, 16)).astype(np.float32),
    "source": RNG.normal(size=(2, 3, 16, 16)).astype(np.float32),
}
T5_IDS = {
    "base": {"input_ids": RNG.integers(2, 50, (2, 7)), "decoder_input_ids": RNG.integers(2, 50, (2, 5))},
    "source": {"input_ids": RNG.integers(2, 50, (2, 7)), "decoder_input_ids": RNG.integers(2, 50, (2, 5))},
}


def _field(out):
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def _close(ours, theirs):
    np.testing.assert_allclose(np.asarray(_field(ours)), _field(theirs).detach().numpy(), atol=ATOL, rtol=ATOL)


def _torch_inputs(inputs):
    return {k: torch.tensor(np.asarray(v)) for k, v in inputs.items()}


def _unpatched(flax_model, inputs, original=False):
    """The model through jaxvene with an intervention that is skipped (it has no source), and
    with `original` also the original output: both are the plain forward pass."""
    component = "encoder_block_output" if flax_model.config.model_type == "t5" else "block_output"
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": component}]), flax_model)
    outputs = model(inputs, output_original_output=original)
    return outputs if original else outputs[1]


# ---------------------------------------------------------------------------- 1. plain outputs
def test_bert_models_match_torch_with_padding(bert):
    ids = RNG.integers(2, 50, (3, 6))
    mask = np.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])
    types = np.repeat((np.arange(6) >= 3)[None], 3, axis=0).astype(np.int64)
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    config = transformers.BertConfig(vocab_size=50, max_position_embeddings=32, num_labels=3, **SMALL)
    for torch_model, flax_model in [
        bert,
        _pair(transformers.BertModel, transformers.FlaxBertModel, config),
        _pair(transformers.BertForSequenceClassification, transformers.FlaxBertForSequenceClassification, config),
    ]:
        with torch.no_grad():
            theirs = torch_model(**_torch_inputs(inputs))
        if flax_model is bert[1]:
            original, ours = _unpatched(flax_model, inputs, original=True)
            _close(original, theirs)
        else:
            ours = _unpatched(flax_model, inputs)
        _close(ours, theirs)
        if isinstance(torch_model, transformers.BertModel):  # pooler_output survives the round trip
            np.testing.assert_allclose(np.asarray(ours.pooler_output), theirs.pooler_output.numpy(), atol=ATOL)


def test_roberta_matches_torch_with_padding(roberta):
    torch_model, flax_model = roberta
    ids = RNG.integers(2, 50, (2, 6))
    ids[1, 4:] = 1  # right padding with pad_token_id: positions count only real tokens
    inputs = {"input_ids": ids, "attention_mask": (ids != 1).astype(np.int32)}
    with torch.no_grad():
        theirs = torch_model(**_torch_inputs(inputs))
    _close(_unpatched(flax_model, inputs), theirs)


def test_vit_models_match_torch(vit):
    torch_model, flax_model = vit
    with torch.no_grad():
        theirs = torch_model(pixel_values=torch.tensor(PIXELS["base"]))
    _close(_unpatched(flax_model, {"pixel_values": PIXELS["base"]}), theirs)
    torch.manual_seed(0)
    bare_torch, bare_flax = _pair(transformers.ViTModel, transformers.FlaxViTModel, torch_model.config)
    with torch.no_grad():
        theirs = bare_torch(pixel_values=torch.tensor(PIXELS["base"]))
    ours = _unpatched(bare_flax, {"pixel_values": PIXELS["base"]})
    _close(ours, theirs)
    np.testing.assert_allclose(np.asarray(ours.pooler_output), theirs.pooler_output.numpy(), atol=ATOL)


def test_t5_matches_torch(t5):
    torch_model, flax_model = t5
    inputs = dict(T5_IDS["base"], attention_mask=np.array([[1] * 7, [1] * 5 + [0] * 2]))
    with torch.no_grad():
        theirs = torch_model(**_torch_inputs(inputs))
    ours = _unpatched(flax_model, inputs)
    _close(ours, theirs)
    np.testing.assert_allclose(
        np.asarray(ours.encoder_last_hidden_state), theirs.encoder_last_hidden_state.numpy(), atol=ATOL
    )


# ---------------------------------------------------------------------------- 2. patches vs torch hooks
def _first(x):
    return x[0] if isinstance(x, tuple) else x


def torch_patch(model, module, io, base, source, pos, head=None, heads=4):
    """`model(**base)` with `module`'s output (or first input) at `pos` (and `head`) taken from
    `model(**source)`."""
    mod = model.get_submodule(module)
    seen = {}

    def record(value):
        seen["v"] = value.clone()  # returns None: the run goes on unchanged

    if io == "output":
        handle = mod.register_forward_hook(lambda m, a, o: record(_first(o)))
    else:
        handle = mod.register_forward_pre_hook(lambda m, a: record(a[0]))
    with torch.no_grad():
        model(**_torch_inputs(source))
    handle.remove()

    def swap(value):
        value = value.clone()
        width = value.shape[-1] // heads
        cols = slice(None) if head is None else slice(head * width, (head + 1) * width)
        value[:, pos, cols] = seen["v"][:, pos, cols]
        return value

    if io == "output":
        handle = mod.register_forward_hook(
            lambda m, a, o: (swap(o[0]),) + tuple(o[1:]) if isinstance(o, tuple) else swap(o)
        )
    else:
        handle = mod.register_forward_pre_hook(lambda m, a: (swap(a[0]),) + tuple(a[1:]))
    try:
        with torch.no_grad():
            return model(**_torch_inputs(base))
    finally:
        handle.remove()


def jaxvene_patch(flax_model, component, layer, base, source, pos, head=None):
    unit = "pos" if head is None else "h.pos"
    rep = {"layer": layer, "component": component, "unit": unit}
    model = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), flax_model)
    batch = len(next(iter(base.values())))
    if head is None:
        locations = {"sources->base": pos}
    else:
        side = [[[[head]] * batch, [[pos]] * batch]]
        locations = {"sources->base": (side, side)}
    return model(base, [source], locations)[1]


BERT_SITES = [  # component, layer, torch module, io, position, head
    ("block_output", 0, "bert.encoder.layer.0", "output", 2, None),
    ("mlp_output", 1, "bert.encoder.layer.1.output.dense", "output", 4, None),
    ("attention_output", 0, "bert.encoder.layer.0.attention.output.dense", "output", 1, None),
    ("head_attention_value_output", 1, "bert.encoder.layer.1.attention.output.dense", "input", 3, 2),
]


@pytest.mark.parametrize("component,layer,module,io,pos,head", BERT_SITES)
def test_bert_patch_matches_torch_hooks(bert, component, layer, module, io, pos, head):
    torch_model, flax_model = bert
    base, source = {"input_ids": IDS["base"]}, {"input_ids": IDS["source"]}
    theirs = torch_patch(torch_model, module, io, base, source, pos, head)
    _close(jaxvene_patch(flax_model, component, layer, base, source, pos, head), theirs)


def test_roberta_patch_matches_torch_hooks(roberta):
    torch_model, flax_model = roberta
    base, source = {"input_ids": IDS["base"]}, {"input_ids": IDS["source"]}
    theirs = torch_patch(torch_model, "roberta.encoder.layer.1.attention.output.dense", "output", base, source, 3)
    _close(jaxvene_patch(flax_model, "attention_output", 1, base, source, 3), theirs)


VIT_SITES = [  # positions: 0 is the class token, 1.. the 16 patches (row-major)
    ("block_output", 0, "vit.encoder.layer.0", "output", 6, None),
    ("attention_output", 1, "vit.encoder.layer.1.attention", "output", 0, None),  # the class token
    ("head_value_output", 0, "vit.encoder.layer.0.attention.attention.value", "output", 16, 1),  # last patch
]


@pytest.mark.parametrize("component,layer,module,io,pos,head", VIT_SITES)
def test_vit_patch_matches_torch_hooks(vit, component, layer, module, io, pos, head):
    torch_model, flax_model = vit
    base, source = {"pixel_values": PIXELS["base"]}, {"pixel_values": PIXELS["source"]}
    theirs = torch_patch(torch_model, module, io, base, source, pos, head)
    _close(jaxvene_patch(flax_model, component, layer, base, source, pos, head), theirs)


T5_SITES = [  # encoder sites index input_ids (length 7), decoder sites decoder_input_ids (length 5)
    ("encoder_block_output", 1, "encoder.block.1", "output", 6, None),
    ("mlp_output", 2, "decoder.block.2.layer.2.DenseReluDense", "output", 4, None),
    ("cross_attention_output", 1, "decoder.block.1.layer.1.EncDecAttention", "output", 3, None),
    ("head_attention_value_output", 1, "decoder.block.1.layer.0.SelfAttention.o", "input", 2, 3),
]


@pytest.mark.parametrize("component,layer,module,io,pos,head", T5_SITES)
def test_t5_patch_matches_torch_hooks(t5, component, layer, module, io, pos, head):
    torch_model, flax_model = t5
    theirs = torch_patch(torch_model, module, io, T5_IDS["base"], T5_IDS["source"], pos, head)
    _close(jaxvene_patch(flax_model, component, layer, T5_IDS["base"], T5_IDS["source"], pos, head), theirs)


def test_t5_encoder_model_takes_encoder_sites(t5):
    _, flax_model = t5
    encoder = transformers.FlaxT5EncoderModel(flax_model.config, seed=0)
    encoder.params = {k: flax_model.params[k] for k in ("shared", "encoder")}
    base, source = {"input_ids": T5_IDS["base"]["input_ids"]}, {"input_ids": T5_IDS["source"]["input_ids"]}
    ours = jaxvene_patch(encoder, "encoder_block_output", 1, base, source, 6)
    full = jaxvene_patch(flax_model, "encoder_block_output", 1, T5_IDS["base"], T5_IDS["source"], 6)
    expected = np.asarray(full.encoder_last_hidden_state)
    np.testing.assert_allclose(np.asarray(ours.last_hidden_state), expected, atol=1e-5)
    with pytest.raises(ValueError, match="decoder stack, which this FlaxT5EncoderModel does not have"):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "mlp_output"}]), encoder)


# ---------------------------------------------------------------------------- 3. no causal mask
def test_bert_patch_reaches_earlier_positions(bert):
    torch_model, flax_model = bert
    base, source = {"input_ids": IDS["base"]}, {"input_ids": IDS["source"]}
    plain = np.asarray(_unpatched(flax_model, base).logits)
    patched = jaxvene_patch(flax_model, "block_output", 0, base, source, 5)
    _close(patched, torch_patch(torch_model, "bert.encoder.layer.0", "output", base, source, 5))
    moved = np.abs(np.asarray(patched.logits) - plain).max(axis=-1)  # (batch, position)
    assert (moved[:, :5] > 1e-2).all()  # every earlier position sees the last one


# ---------------------------------------------------------------------------- 4. bad input
def test_unknown_component_lists_valid_ones(bert, t5):
    with pytest.raises(ValueError, match=r"unknown component 'mlp_gate'.*Valid components: block_input, "):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "mlp_gate"}]), bert[1])
    with pytest.raises(ValueError, match=r"Valid components: .*cross_attention_output.*encoder_block_output"):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "encoder_mlp"}]), t5[1])


def test_t5_stacks_have_their_own_layer_counts(t5):
    jv.IntervenableModel(jv.IntervenableConfig([{"layer": 2, "component": "block_output"}]), t5[1])
    with pytest.raises(IndexError, match="2 layers"):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 2, "component": "encoder_block_output"}]), t5[1])


def test_t5_needs_decoder_inputs(t5):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "encoder_block_output"}]), t5[1])
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model({"input_ids": T5_IDS["base"]["input_ids"]})


def test_vit_input_errors(vit):
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "block_output"}]), vit[1])
    source = [{"pixel_values": PIXELS["source"]}]
    with pytest.raises(ValueError, match="model inputs need 'pixel_values'"):
        model({}, source, {"sources->base": 0})
    with pytest.raises(ValueError, match=r"unsupported model inputs \['input_ids'\]; this model takes pixel_values"):
        model({"input_ids": IDS["base"]}, source, {"sources->base": 0})
    with pytest.raises(ValueError, match="channels first"):
        model({"pixel_values": PIXELS["base"].transpose(0, 2, 3, 1)}, source, {"sources->base": 0})
