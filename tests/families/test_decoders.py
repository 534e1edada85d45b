"""Site tables for GPT-Neo, GPT-J, OPT and BLOOM against HF's PyTorch models on the same weights.

Tiny random PyTorch models are saved and loaded in Flax with `from_pretrained(dir, from_pt=True)`.
Logits must agree (also for left-padded batches), and interchange patches must give the logits
of the same patch done in PyTorch: by pyvene for GPT-Neo (pyvene 0.1.8 knows only that family;
its q/k/v paths do not resolve there, so those go through a raw module path), and by forward
hooks elsewhere (run the source and keep the module's value, then run the base with the value
swapped at one position, in some features).
"""

import functools
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")
transformers = pytest.importorskip("transformers")

import jaxvene as jv  # noqa: E402
from jaxvene.adapters import adapt  # noqa: E402

T = transformers
H, DH, V = 4, 8, 50  # heads, head width, vocabulary (width 32, 2 layers everywhere)

# family -> (config kwargs, torch class, flax class, layer stack path in torch)
SPECS = {
    "gpt_neo": (
        lambda **kw: T.GPTNeoConfig(
            **{
                **dict(
                    hidden_size=32,
                    num_layers=2,
                    num_heads=H,
                    vocab_size=V,
                    intermediate_size=64,
                    max_position_embeddings=64,
                    window_size=4,
                    attention_types=[[["global", "local"], 1]],
                ),
                **kw,
            }
        ),
        T.GPTNeoForCausalLM,
        T.FlaxGPTNeoForCausalLM,
        "transformer.h",
    ),
    "gptj": (
        lambda **kw: T.GPTJConfig(
            **{**dict(n_embd=32, n_layer=2, n_head=H, vocab_size=V, n_inner=64, n_positions=64, rotary_dim=4), **kw}
        ),
        T.GPTJForCausalLM,
        T.FlaxGPTJForCausalLM,
        "transformer.h",
    ),
    "opt": (
        lambda **kw: T.OPTConfig(
            **{
                **dict(
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=H,
                    vocab_size=V,
                    ffn_dim=64,
                    max_position_embeddings=64,
                    word_embed_proj_dim=16,
                ),
                **kw,
            }
        ),  # with project_in/out
        T.OPTForCausalLM,
        T.FlaxOPTForCausalLM,
        "model.decoder.layers",
    ),
    "bloom": (
        lambda **kw: T.BloomConfig(**{**dict(hidden_size=32, n_layer=2, n_head=H, vocab_size=V), **kw}),
        T.BloomForCausalLM,
        T.FlaxBloomForCausalLM,
        "transformer.h",
    ),
}


def _build(family, **kw):
    make_config, torch_cls, flax_cls, _ = SPECS[family]
    torch.manual_seed(0)
    config = make_config(initializer_range=0.3, attn_implementation="eager", **kw)
    if family == "opt":  # OPT's config calls it init_std
        config.init_std = 0.3
    torch_model = torch_cls(config).eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        flax_model = flax_cls.from_pretrained(d, from_pt=True)
    return torch_model, flax_model


@functools.cache
def _pair(family):
    """The family's default model pair, built once."""
    return _build(family)


BASE = np.random.default_rng(0).integers(0, V, (2, 6))
SRC = np.random.default_rng(1).integers(0, V, (2, 7))
MASK = np.ones_like(BASE)
MASK[0, :2] = 0  # example 0 is left-padded by two tokens


def _close(ours, theirs, atol=1e-4):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=atol, rtol=1e-4)


def _torch_logits(torch_model, ids, mask=None):
    kwargs = {}
    if mask is not None:
        kwargs["attention_mask"] = torch.tensor(mask)
        if not isinstance(torch_model, T.BloomForCausalLM):  # BLOOM: ALiBi, no positions
            kwargs["position_ids"] = torch.tensor(np.maximum(np.cumsum(mask, -1) - 1, 0))
    with torch.no_grad():
        return torch_model(torch.tensor(ids), **kwargs).logits.numpy()


# ------------------------------------------------------------------------------ logits
@pytest.mark.parametrize(
    "family, kw",
    [
        ("gpt_neo", {}),
        ("gptj", {}),
        ("opt", {}),
        ("bloom", {}),
        # post-LN OPT (OPT-350m's layout) with an untied head; untied BLOOM and GPT-Neo heads
        ("opt", dict(do_layer_norm_before=False, tie_word_embeddings=False, word_embed_proj_dim=32)),
        ("bloom", dict(tie_word_embeddings=False)),
        ("gpt_neo", dict(tie_word_embeddings=False)),
    ],
)
def test_logits_and_logit_positions_match_torch(family, kw):
    torch_model, flax_model = _pair(family) if not kw else _build(family, **kw)
    adapter = adapt(flax_model)
    assert adapter.family.name == family and adapter.num_layers == 2
    assert adapter.family.unembed is not None
    params = flax_model.params

    full = adapter.apply(params, {"input_ids": BASE})["logits"]
    _close(full, _torch_logits(torch_model, BASE))

    # left padding: the adapter derives the positions from the mask; pads' logits are meaningless
    padded = adapter.apply(params, {"input_ids": BASE, "attention_mask": MASK})["logits"]
    theirs = _torch_logits(torch_model, BASE, MASK)
    _close(np.asarray(padded)[0, 2:], theirs[0, 2:])
    _close(np.asarray(padded)[1], theirs[1])

    # logits at a few positions only: the family's unembedding of the final hidden states
    positions = np.array([[5, 2], [0, 3]])
    part = adapter.apply(params, {"input_ids": BASE}, logit_positions=positions)["logits"]
    _close(part, np.take_along_axis(np.asarray(full), positions[..., None], axis=1), atol=1e-5)


# ------------------------------------------------------------------------------ patches
def _jv_patch(flax_model, component, layer, unit, src_pos, base_pos, head=None):
    reps = [{"layer": layer, "component": component, "unit": unit, "max_number_of_units": 1}]
    model = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention), flax_model)
    if head is None:
        locations = {"sources->base": (src_pos, base_pos)}
    else:
        b = len(BASE)
        locations = {"sources->base": ([[[[head]] * b, [[src_pos]] * b]], [[[[head]] * b, [[base_pos]] * b]])}
    _, out = model({"input_ids": BASE}, [{"input_ids": SRC}], locations)
    return np.asarray(out.logits)


def _torch_patch(torch_model, module, io, src_pos, base_pos, features=None):
    """Base logits with `module`'s input/output at `base_pos` (in `features` of the last axis)
    replaced by its value on the source at `src_pos`."""
    target = torch_model.get_submodule(module)
    cols = slice(None) if features is None else torch.as_tensor(features)
    kept = {}

    def swap(value):
        flat = value.dim() == 2  # OPT runs its MLP on (batch * seq, width)
        if flat:
            value = value.reshape(len(BASE), -1, value.shape[-1])
        if "source" not in kept:
            kept["source"] = value.detach().clone()
        else:
            value = value.clone()
            value[:, base_pos, cols] = kept["source"][:, src_pos, cols]
        return value.reshape(-1, value.shape[-1]) if flat else value

    if io == "input":

        def hook(mod, args, kwargs):
            if args:
                return (swap(args[0]),) + tuple(args[1:]), kwargs
            first = next(iter(kwargs))
            return args, {**kwargs, first: swap(kwargs[first])}

        handle = target.register_forward_pre_hook(hook, with_kwargs=True)
    else:

        def hook(mod, args, out):
            return (swap(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else swap(out)

        handle = target.register_forward_hook(hook)
    try:
        _torch_logits(torch_model, SRC)  # keeps the source value
        return _torch_logits(torch_model, BASE)  # swaps it in
    finally:
        handle.remove()


def _heads(*heads, part=None):
    """Feature indices of `heads` in a head-major projection; with `part` (0 q, 1 k, 2 v), in
    BLOOM's fused projection, interleaved per head as [q_h k_h v_h]."""
    if part is None:
        return np.concatenate([np.arange(h * DH, (h + 1) * DH) for h in heads])
    return np.concatenate([np.arange(h * 3 * DH + part * DH, h * 3 * DH + (part + 1) * DH) for h in heads])


ALL = range(H)
# family -> [(component, layer, torch module relative to the layer, io, head, torch features)]
CASES = {
    "gptj": [
        ("mlp_activation", 1, "mlp.fc_out", "input", None, None),
        ("attention_output", 1, "attn", "output", None, None),
        ("head_value_output", 0, "attn.v_proj", "output", 2, _heads(2)),
    ],
    "opt": [
        ("block_output", 0, "", "output", None, None),
        ("attention_output", 1, "self_attn", "output", None, None),
        ("head_key_output", 1, "self_attn.k_proj", "output", 3, _heads(3)),
        # the layer override's taps, against the flattened (batch * seq, width) values in torch
        ("mlp_input", 0, "fc1", "input", None, None),
        ("mlp_activation", 1, "fc2", "input", None, None),
        ("mlp_output", 0, "fc2", "output", None, None),
    ],
    "bloom": [
        ("mlp_activation", 0, "mlp.gelu_impl", "output", None, None),
        ("mlp_output", 1, "mlp.dense_4h_to_h", "output", None, None),  # without the residual
        ("attention_output", 0, "self_attention.dense", "output", None, None),  # idem
        # q/k/v: de-interleaved from the fused projection
        ("query_output", 0, "self_attention.query_key_value", "output", None, _heads(*ALL, part=0)),
        ("head_key_output", 1, "self_attention.query_key_value", "output", 2, _heads(2, part=1)),
    ],
    # pyvene has no usable path for the heads in GPT-Neo (they are under attn.attention)
    "gpt_neo": [("head_attention_value_output", 0, "attn.attention.out_proj", "input", 3, _heads(3))],
}


@functools.cache
def _opt_post_ln():
    """OPT-350m's layout: post-LN, no project_in/out (fc1 reads the residual stream)."""
    return _build("opt", do_layer_norm_before=False, word_embed_proj_dim=32)


@pytest.mark.parametrize(
    "family, case",
    [(f, c) for f, cases in CASES.items() for c in cases]
    + [
        ("opt_post_ln", ("mlp_input", 1, "fc1", "input", None, None)),
        ("opt_post_ln", ("mlp_output", 0, "fc2", "output", None, None)),
    ],
    ids=lambda x: x if isinstance(x, str) else x[0],
)
def test_patch_matches_torch_hooks(family, case):
    component, layer, module, io, head, features = case
    torch_model, flax_model = _opt_post_ln() if family == "opt_post_ln" else _pair(family)
    family = "opt" if family == "opt_post_ln" else family
    stack = SPECS[family][3]
    src_pos, base_pos = 4, 2
    ours = _jv_patch(flax_model, component, layer, "pos" if head is None else "h.pos", src_pos, base_pos, head)
    theirs = _torch_patch(
        torch_model, ".".join(p for p in (f"{stack}.{layer}", module) if p), io, src_pos, base_pos, features
    )
    _close(ours, theirs)
    assert not np.allclose(ours, _torch_logits(torch_model, BASE), atol=1e-3)  # the patch did something


@pytest.mark.parametrize(
    "component, pyvene_component",
    [
        ("block_output", None),
        ("mlp_activation", None),
        ("attention_output", None),
        ("query_output", "transformer.h[1].attn.attention.q_proj.output"),  # pyvene's path: attn.q_proj
    ],
)
def test_gpt_neo_matches_pyvene(component, pyvene_component):
    torch_model, flax_model = _pair("gpt_neo")
    locations = {"sources->base": ([[[5], [1]]], [[[3], [4]]])}  # per example positions
    reps = [{"layer": 1, "component": component, "unit": "pos", "max_number_of_units": 1}]
    pv_reps = [{**reps[0], "component": pyvene_component or component}]
    pm = pv.IntervenableModel(pv.IntervenableConfig(pv_reps, intervention_types=pv.VanillaIntervention), torch_model)
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.VanillaIntervention), flax_model)
    with torch.no_grad():
        _, theirs = pm({"input_ids": torch.tensor(BASE)}, [{"input_ids": torch.tensor(SRC)}], locations)
    _, ours = jm({"input_ids": BASE}, [{"input_ids": SRC}], locations)
    _close(ours.logits, theirs.logits.numpy())


# ------------------------------------------------------------------------------ tables
@pytest.mark.parametrize("family", list(SPECS))
def test_every_component_has_a_site_of_the_right_shape(family):
    adapter = adapt(_pair(family)[1])
    sites = {c: adapter.site(c, 1) for c in adapter.components}
    shapes = adapter.tap_shapes({s.tap for s in sites.values()})
    for component, site in sites.items():
        assert site.tap in shapes, f"{family} {component}: {site.tap} is never reported"
        view = site.view_shape(shapes[site.tap])
        expected = (1, H, 4, DH) if component.startswith("head_") else (1, 4)
        assert view[: len(expected)] == expected, (component, view)


def test_unknown_component_lists_valid_ones():
    adapter = adapt(_pair("opt")[1])
    with pytest.raises(ValueError, match="Valid components: block_input, block_output, mlp_input"):
        adapter.site("mlp", 0)
    with pytest.raises(ValueError, match="unknown component 'nope'"):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "nope"}]), _pair("bloom")[1])
