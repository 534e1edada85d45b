"""What a pass reads leaves it as a value, so remat-wrapped layers work like plain ones.

A Flax BERT built with `gradient_checkpointing=True` runs every layer under `nn.remat`
(`jax.checkpoint`); a source activation read inside it used to be stored from inside that trace
and leaked (`UnexpectedTracerError`). The reference for each case is the same model without
checkpointing (whose sites are checked against PyTorch in tests/families/test_encoders.py).
"""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

transformers = pytest.importorskip("transformers")

BASE = np.random.default_rng(0).integers(0, 50, (2, 6))
SRC = np.random.default_rng(1).integers(0, 50, (2, 6))


@pytest.fixture(scope="module")
def berts():
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        initializer_range=0.2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    plain = transformers.FlaxBertForMaskedLM(config, seed=0)
    remat = transformers.FlaxBertForMaskedLM(config, seed=0, gradient_checkpointing=True)
    remat.params = plain.params
    return plain, remat


def _rotation(width, seed):
    iv = jv.RotatedSpaceIntervention(embed_dim=width, seed=seed, interchange_dim=8)  # a part: R matters
    arrays, static = eqx.partition(iv, eqx.is_inexact_array)
    arrays = jax.tree_util.tree_map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(seed + 1), x.shape), arrays)
    return eqx.combine(arrays, static)


CASES = {
    "vanilla block_output": ([{"layer": 1, "component": "block_output"}], jv.VanillaIntervention, {"sources->base": 2}),
    "vanilla mlp_output": ([{"layer": 0, "component": "mlp_output"}], jv.VanillaIntervention, {"sources->base": 4}),
    "heads at positions": (
        [{"layer": 1, "component": "head_attention_value_output", "unit": "h.pos"}],
        jv.VanillaIntervention,
        {"sources->base": ([[[[1]] * 2, [[3]] * 2]], [[[[1]] * 2, [[3]] * 2]])},
    ),
    "rotation": (
        [{"layer": 0, "component": "block_output", "intervention": _rotation(32, 3)}],
        None,
        {"sources->base": 1},
    ),
    "zero": ([{"layer": 1, "component": "mlp_output"}], jv.ZeroIntervention, {"sources->base": 2}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_checkpointed_bert_equals_plain(berts, case):
    reps, cls, locations = CASES[case]
    outs = []
    for model in berts:
        config = jv.IntervenableConfig(reps, intervention_types=cls) if cls else jv.IntervenableConfig(reps)
        im = jv.IntervenableModel(config, model)
        sources = None if cls is jv.ZeroIntervention else [{"input_ids": SRC}]
        outs.append(im({"input_ids": BASE}, sources, locations)[1].logits)
    plain_model_logits = berts[0](BASE).logits
    assert not np.allclose(outs[0], plain_model_logits, atol=1e-3), "the intervention must change something"
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)


def test_collect_and_gradients_under_remat(berts):
    """Collected activations come out of the checkpointed layer, and a rotation's gradient
    through it equals the plain model's."""
    results = []
    for model in berts:
        collect = jv.IntervenableModel(
            jv.IntervenableConfig([{"layer": 1, "component": "mlp_output"}], intervention_types=jv.CollectIntervention),
            model,
        )
        (_, collected), _ = collect({"input_ids": BASE}, unit_locations={"sources->base": 3})
        rot = jv.IntervenableModel(
            jv.IntervenableConfig([{"layer": 1, "component": "block_output", "intervention": _rotation(32, 5)}]), model
        )
        base, sources, locs, subs, consts = rot.prepare({"input_ids": BASE}, [{"input_ids": SRC}], {"sources->base": 2})

        def loss(ivs):
            out, _ = jv.core.run(rot.adapter, rot.plan(), model.params, ivs, base, sources, locs, subs, consts)  # noqa: B023
            return jnp.mean(out["logits"][:, 2] ** 2)

        grads = jax.jit(jax.grad(loss))(rot.intervention_params())
        results.append((np.asarray(collected[0]), jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))))
    (c0, g0), (c1, g1) = results
    assert c0.shape == (2, 1, 32)
    np.testing.assert_allclose(c1, c0, atol=1e-5)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert max(float(np.abs(a).max()) for a in g0) > 1e-4


# ------------------------------------------------------------------------ scanned layers
class _Block(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return h + jnp.tanh(nn.Dense(8, name="mlp")(h)), None


class _ScannedStack(nn.Module):
    @nn.compact
    def __call__(self, x):
        layers = nn.scan(_Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
        h, _ = layers(name="layers")(x, None)
        return h


class _RematStack(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(3):
            x, _ = nn.remat(_Block)(name=f"layers_{i}")(x, None)
        return x


def test_scan_layers_stack_equals_unrolled_stack():
    """The same three Flax layers unrolled (each under nn.remat) and run by `jaxvene.scan_layers`
    with stacked params: a source read and a patch at layer 1 give the same outputs."""
    x = jax.random.normal(jax.random.key(0), (2, 4, 8))
    src = jax.random.normal(jax.random.key(1), (2, 4, 8))
    unrolled = _RematStack()
    params = unrolled.init(jax.random.key(2), x)["params"]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[params[f"layers_{i}"] for i in range(3)])
    block = _Block()

    def scanned(p, inputs):
        def body(h, layer_params):
            return block.apply({"params": layer_params}, h, None)

        return jv.scan_layers(body, inputs, p)[0]

    plain = jv.FlaxModuleAdapter(unrolled, {"params": params}, x)
    scan = jv.FunctionAdapter(scanned, stacked, x)
    outs = []
    for adapter, component in ((plain, "layers_1.mlp.output"), (scan, "mlp.output")):
        im = jv.IntervenableModel(
            jv.IntervenableConfig(
                [jv.RepresentationConfig(1, component, "pos")], intervention_types=jv.VanillaIntervention
            ),
            adapter,
        )
        outs.append(np.asarray(im(x, [src], {"sources->base": 2})[1]))
    assert not np.allclose(outs[0], unrolled.apply({"params": params}, x), atol=1e-4)
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)


def test_reading_inside_nn_scan_names_the_fix():
    """nn.scan hides jaxvene's variable collection unless told to carry it: a read inside it is
    refused with what to do, instead of a leaked tracer."""
    x = jnp.ones((2, 4, 8))
    model = _ScannedStack()
    variables = model.init(jax.random.key(0), x)
    adapter = jv.FlaxModuleAdapter(model, variables, x)
    im = jv.IntervenableModel(
        jv.IntervenableConfig(
            [jv.RepresentationConfig(0, "layers.mlp.output", "pos")], intervention_types=jv.VanillaIntervention
        ),
        adapter,
    )
    with pytest.raises(NotImplementedError, match="scan_layers"):
        im(x, [x + 1], {"sources->base": 1})


def test_serial_mode_returns_what_an_earlier_group_collects():
    """In serial mode group 0's interventions act on source 1's run: a Collect there returns
    source 1's activation (checked against a Collect run on source 1 as the base)."""
    config = transformers.GPT2Config(n_layer=3, n_embd=16, n_head=2, vocab_size=50)
    gpt2 = transformers.FlaxGPT2LMHeadModel(config, seed=0)
    reps = [
        {"layer": 1, "component": "block_output", "group_key": 0},
        {"layer": 2, "component": "block_output", "group_key": 1},
    ]
    serial = jv.IntervenableModel(
        jv.IntervenableConfig(reps, intervention_types=[jv.CollectIntervention, jv.VanillaIntervention], mode="serial"),
        gpt2,
    )
    locations = {"source_0->source_1": 3, "source_1->base": 2}
    (_, collected), _ = serial({"input_ids": BASE}, [{"input_ids": SRC}, {"input_ids": BASE[::-1].copy()}], locations)
    alone = jv.IntervenableModel(jv.IntervenableConfig([reps[0]], intervention_types=jv.CollectIntervention), gpt2)
    (_, expected), _ = alone({"input_ids": BASE[::-1].copy()}, unit_locations={"base": 3})
    assert len(collected) == 1
    np.testing.assert_allclose(collected[0], expected[0], atol=1e-6)
