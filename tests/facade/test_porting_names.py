"""The pyvene names that tutorials call, as jaxvene has them: the vocabulary helpers against
pyvene on the same weights, the facade's pyvene methods (set_temperature, set_device, the
gradient switches, train_alignment / eval_alignment), write-back through `model.interventions`,
and pyvene's MLP helpers."""

import copy
import dataclasses
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxvene as jv

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

BASE = np.array([[1, 2, 3, 4, 5]])
SOURCE = np.array([[6, 7, 8, 9, 10]])


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def gpt2_pair():
    """A tiny random PyTorch GPT-2 (LM head) and the same weights in Flax, bare and with head."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=16, n_layer=2, n_head=2, vocab_size=40, n_positions=16, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    torch_lm = transformers.GPT2LMHeadModel(config).eval()
    folder = tempfile.mkdtemp()
    torch_lm.save_pretrained(folder)  # sets config.architectures, which pyvene's helper reads
    bare = transformers.FlaxGPT2Model.from_pretrained(folder, from_pt=True)
    lm = transformers.FlaxGPT2LMHeadModel.from_pretrained(folder, from_pt=True)
    return torch_lm, bare, lm


@pytest.fixture(scope="module")
def tokenizer_pair():
    """A word-level tokenizer of 40 tokens (some with spaces, one newline): bare and HF."""
    words = ["[UNK]", "\n", " Madrid", " Rome", "the capital", " of", " Spain"] + [f"w{i}" for i in range(33)]
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    return raw, transformers.PreTrainedTokenizerFast(tokenizer_object=raw)


def _model(gpt2, intervention_type, **rep):
    config = jv.IntervenableConfig(
        [{"layer": 1, "component": "block_output", **rep}], intervention_types=intervention_type
    )
    return jv.IntervenableModel(config, gpt2)


def _patched(model):
    return model({"input_ids": BASE}, [{"input_ids": SOURCE}], {"sources->base": 3})[1].logits


# ---------------------------------------------------------------------------- vocabulary helpers
def test_embed_to_distrib_equals_pyvene(gpt2_pair):
    torch_lm, bare, _ = gpt2_pair
    with torch.no_grad():
        hidden = torch_lm.transformer(torch.tensor(BASE)).last_hidden_state
        for kwargs in ({}, {"log": True}, {"logits": True}):
            theirs = pv.embed_to_distrib(torch_lm.transformer, hidden, **kwargs).numpy()
            ours_hidden = bare(BASE).last_hidden_state  # the same weights in Flax
            ours = jv.embed_to_distrib(bare, ours_hidden, **kwargs)
            np.testing.assert_allclose(np.asarray(ours), theirs, atol=2e-5, err_msg=str(kwargs))
            # a torch tensor is accepted as it is
            np.testing.assert_allclose(np.asarray(jv.embed_to_distrib(bare, hidden, **kwargs)), theirs, atol=2e-5)


def test_embed_to_distrib_is_the_models_own_head(gpt2_pair, flax_llama):
    _, _, lm = gpt2_pair
    out = lm(BASE, output_hidden_states=True)
    np.testing.assert_allclose(jv.embed_to_distrib(lm, out.hidden_states[-1], logits=True), out.logits, atol=1e-5)
    np.testing.assert_allclose(
        jv.embed_to_distrib(lm, out.hidden_states[-1]), jax.nn.softmax(out.logits, axis=-1), atol=1e-6
    )
    # LLaMA has an untied lm_head: its own, not the input embeddings
    out = flax_llama(BASE, output_hidden_states=True)
    np.testing.assert_allclose(
        jv.embed_to_distrib(flax_llama, out.hidden_states[-1], logits=True), out.logits, atol=1e-5
    )
    bare = transformers.FlaxLlamaModel(flax_llama.config, seed=0)
    with pytest.raises(ValueError, match="without its LM head"):
        jv.embed_to_distrib(bare, out.hidden_states[-1])


@pytest.mark.parametrize("tied", [True, False])
def test_embed_to_distrib_native_decoder(tied):
    config = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, vocab_size=40)
    config.update(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    native = jv.NativeDecoder.random(config)
    assert ("lm_head" in native.params) is not tied
    out = native(BASE, output_hidden_states=True)
    np.testing.assert_allclose(jv.embed_to_distrib(native, out.hidden_states[-1], logits=True), out.logits, atol=1e-5)
    log = jv.embed_to_distrib(native, np.asarray(out.hidden_states[-1]), log=True)  # a NumPy array
    np.testing.assert_allclose(log, jax.nn.log_softmax(out.logits, axis=-1), atol=1e-5)


def test_embed_to_distrib_refuses_models_without_an_lm_head():
    mlp = jv.MLPForClassification(jv.MLPConfig(h_dim=4, n_layer=1))
    with pytest.raises(TypeError, match="unembedding matrix"):
        jv.embed_to_distrib(mlp, np.zeros((1, 4)))


def test_top_vals_and_format_token_equal_pyvene(gpt2_pair, tokenizer_pair, capsys):
    torch_lm, bare, _ = gpt2_pair
    raw, hf = tokenizer_pair
    with torch.no_grad():
        theirs_distrib = pv.embed_to_distrib(torch_lm.transformer, torch_lm.transformer(torch.tensor(BASE))[0])
    ours_distrib = jv.embed_to_distrib(bare, bare(BASE).last_hidden_state)
    theirs = pv.top_vals(hf, theirs_distrib[0][-1], n=10, return_results=True)
    for tokenizer in (hf, raw):
        ours = jv.top_vals(tokenizer, ours_distrib[0][-1], n=10, return_results=True)
        assert [t for t, _ in ours] == [t for t, _ in theirs]
        np.testing.assert_allclose([v for _, v in ours], [v for _, v in theirs], atol=1e-6)
    # the printed form: one "token value" line per entry, as pyvene prints it
    pv.top_vals(hf, torch.tensor(np.asarray(ours_distrib[0][-1])), n=5)
    printed_theirs = capsys.readouterr().out
    assert jv.top_vals(hf, ours_distrib[0][-1], n=5) is None
    assert capsys.readouterr().out == printed_theirs
    for tok in (2, 1, np.int64(3), jnp.array(4), torch.tensor(5), [2, 5]):
        assert jv.format_token(hf, tok) == jv.format_token(raw, tok) == pv.format_token(hf, tok)
    assert jv.format_token(hf, 2) == "_Madrid" and jv.format_token(raw, 1) == "\\n"
    assert jv.format_token(raw, 0) == "[UNK]"  # special tokens are kept, as transformers keeps them


def test_top_vals_errors(tokenizer_pair):
    _, hf = tokenizer_pair
    with pytest.raises(ValueError, match=r"index it first"):
        jv.top_vals(hf, np.ones((2, 40)))
    with pytest.raises(ValueError, match="n=41 is out of range"):
        jv.top_vals(hf, np.ones(40), n=41)


def test_set_seed_seeds_python_numpy_and_torch():
    import random

    jv.set_seed(3)
    first = (random.random(), np.random.rand(), float(torch.rand(())))
    jv.set_seed(3)
    assert (random.random(), np.random.rand(), float(torch.rand(()))) == first


# ---------------------------------------------------------------------------- model.interventions
def test_ported_temperature_loop_writes_back(flax_gpt2):
    model = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
    before = _patched(model)
    for v in model.interventions.values():  # pyvene's Boundless DAS code
        assert isinstance(v, jv.BoundlessRotatedSpaceIntervention)
        v.set_temperature(0.1)
    assert float(model.intervention_params()[0].temperature) == pytest.approx(0.1)
    after = _patched(model)
    assert model.trace_count == 1  # a temperature is data: nothing recompiled
    # reference: the same intervention built with temperature 0.1 from the start
    fresh = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
    fresh.set_intervention_params([fresh.intervention_params()[0].set_temperature(0.1)])
    np.testing.assert_allclose(after, _patched(fresh), atol=1e-6)
    assert float(jnp.abs(after - before).max()) > 1e-3  # the temperature matters here


def test_the_next_training_uses_the_written_back_temperature(flax_gpt2):
    labels = np.array([7])
    losses = []
    for ported in (True, False):
        model = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
        if ported:
            for v in model.interventions.values():
                v.set_temperature(0.1)
        else:
            model.set_intervention_params([model.intervention_params()[0].set_temperature(0.1)])
        batch = jv.training.make_batch(
            model, {"input_ids": BASE}, [{"input_ids": SOURCE}], {"sources->base": 3}, labels=labels
        )
        trainer = jv.training.make_train_step(model, optax.adam(0.01))
        _, loss = trainer.step(trainer.init(), batch, model.adapter.params)
        losses.append(float(loss))
    default = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
    batch = jv.training.make_batch(
        default, {"input_ids": BASE}, [{"input_ids": SOURCE}], {"sources->base": 3}, labels=labels
    )
    trainer = jv.training.make_train_step(default, optax.adam(0.01))
    untouched = float(trainer.step(trainer.init(), batch, default.adapter.params)[1])
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert abs(losses[0] - untouched) > 1e-4  # at 50.0 the loss differs


def test_handles_read_live_and_share_links(flax_gpt2):
    reps = [{"layer": 1, "component": "block_output", "intervention_link_key": 0}] * 2
    model = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.RotatedSpaceIntervention), flax_gpt2)
    a, b = (model.interventions[k] for k in model.sorted_keys)
    assert a is b and a is model.interventions[model.sorted_keys[0]]
    assert list(model.interventions) == model.sorted_keys and len(model.interventions) == 2
    assert a[0] is a  # pyvene before 0.1.8 stored (intervention, hook) pairs
    with pytest.raises(TypeError, match="no hooks"):
        a[1]
    np.testing.assert_array_equal(a.rotation, model.intervention_params()[0].rotation)
    new = jv.RotatedSpaceIntervention.from_matrix(np.eye(24, dtype=np.float32))
    model.interventions[model.sorted_keys[1]] = new  # replaces the one both keys share
    assert model.intervention_params() == (new,) and b.module is new
    np.testing.assert_allclose(a.rotation, np.eye(24), atol=1e-6)
    base = jnp.ones((1, 24))
    np.testing.assert_allclose(a(base, 2 * base), new(base, 2 * base))
    assert jax.tree_util.tree_leaves(a) == jax.tree_util.tree_leaves(new)
    with pytest.raises(AttributeError, match="immutable"):
        a.embed_dim = 3
    with pytest.raises(KeyError, match="the keys are"):
        model.interventions["nope"]
    with pytest.raises(TypeError, match="jaxvene Intervention"):
        model.interventions[model.sorted_keys[0]] = "not an intervention"
    twin = copy.deepcopy(model)  # a copy's handles belong to the copy
    flip = jv.RotatedSpaceIntervention.from_matrix(-np.eye(24, dtype=np.float32))
    twin.interventions[model.sorted_keys[0]] = flip
    assert twin.intervention_params() == (flip,) and model.intervention_params() == (new,)
    assert twin.interventions[model.sorted_keys[1]] is not b and twin.interventions[model.sorted_keys[1]].module is flip
    with tempfile.TemporaryDirectory() as folder:  # saving reads the modules, not the handles
        model.save(folder)
        loaded = jv.IntervenableModel.load(folder, flax_gpt2)
    np.testing.assert_allclose(loaded.intervention_params()[0].rotation, np.eye(24), atol=1e-6)


# ---------------------------------------------------------------------------- facade methods
def test_set_temperature_on_every_tempered_intervention(flax_gpt2):
    types = [
        jv.BoundlessRotatedSpaceIntervention,
        jv.SigmoidMaskIntervention,
        jv.SigmoidMaskRotatedSpaceIntervention,
        jv.VanillaIntervention,
    ]
    reps = [{"layer": i % 4, "component": "block_output"} for i in range(len(types))]
    model = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=types), flax_gpt2)
    vanilla = model.intervention_params()[3]
    assert model.set_temperature(torch.tensor(0.25, dtype=torch.bfloat16)) is None  # pyvene's schedule dtype
    temps = [float(iv.temperature) for iv in model.intervention_params()[:3]]
    assert temps == [0.25] * 3
    assert model.intervention_params()[3] is vanilla
    with pytest.raises(ValueError, match="one number"):
        model.set_temperature([0.1, 0.2])


def test_set_device_and_get_device(flax_gpt2):
    devices = jax.devices("cpu")
    assert len(devices) > 1  # tests/conftest.py gives the session several CPU devices
    lm = transformers.FlaxGPT2LMHeadModel(flax_gpt2.config, seed=1)
    model = _model(lm, jv.RotatedSpaceIntervention)
    before = _patched(model)
    model.set_device(devices[1])
    assert model.get_device() == devices[1]
    leaves = jax.tree_util.tree_leaves(model.intervention_params()) + jax.tree_util.tree_leaves(lm.params)
    assert all(x.devices() == {devices[1]} for x in leaves)
    after = _patched(model)
    assert after.devices() == {devices[1]}
    np.testing.assert_allclose(after, before, atol=1e-6)
    model.set_device(torch.device("cpu"))  # pyvene's spellings
    assert model.get_device() == devices[0]
    model.set_device("cpu:2", set_model=False)
    assert model.get_device() == devices[0]
    assert model.intervention_params()[0].raw.devices() == {devices[2]}
    model.set_device("cpu")
    if not any(d.platform == "gpu" for d in jax.devices()):
        with pytest.raises(ValueError, match="can simply go"):
            model.set_device("cuda")
        with pytest.raises(ValueError, match="can simply go"):
            model.set_device(0)  # torch reads an int as a GPU index
    with pytest.raises(ValueError, match="cpu devices"):
        model.set_device(f"cpu:{len(devices)}")


def test_set_device_refuses_a_model_whose_adapter_holds_its_params():
    mlp = jv.MLPForClassification(jv.MLPConfig(h_dim=4, n_layer=1))
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "block_output"}]), mlp)
    params = mlp.params
    with pytest.raises(TypeError, match="its adapter holds its own"):
        model.set_device("cpu:1")
    assert mlp.params is params  # left as it was
    model.set_device("cpu:1", set_model=False)


def test_gradient_switches_and_modes(flax_gpt2):
    model = _model(flax_gpt2, jv.RotatedSpaceIntervention)
    params = flax_gpt2.params
    assert model.disable_model_gradients() is None
    assert flax_gpt2.params is params
    assert model.eval() is None and model.train(False) is None
    with pytest.raises(NotImplementedError, match="with respect to params"):
        model.enable_model_gradients()
    with pytest.raises(NotImplementedError, match="delete the call"):
        model.train()


# ---------------------------------------------------------------------------- train_alignment
def _alignment_batches(n_batches, size, seed=0):
    """pyvene-style batches: token ids, counterfactual labels, one location per example."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        pos = rng.integers(0, 5, size=(size, 1))
        batches.append(
            {
                "input_ids": torch.tensor(rng.integers(0, 50, size=(size, 5))),
                "source_input_ids": torch.tensor(rng.integers(0, 50, size=(size, 5))),
                "labels": torch.tensor(rng.integers(0, 50, size=(size,))),
                "source_0->base.0.pos": torch.tensor(pos),
                "source_0->base.1.pos": torch.tensor(pos),
            }
        )
    return batches


def _last_token_loss(logits, labels):
    return jv.training.iit_loss(logits, labels)


def _reference_training(model, batches, optimizer, epochs, accumulate=1, anneal=True):
    """The loop written out: make_batch, value_and_grad of jv.core.run, optax, temperatures
    50 -> 0.1 after each update."""
    adapter, plan, params = model.adapter, model.plan(), model.adapter.params
    ivs = model.intervention_params()
    mask = jv.training.trainable_filter(ivs)
    updates = len(batches) * epochs // accumulate
    temps = np.linspace(50.0, 0.1, updates, dtype=np.float32)
    state = optimizer.init(eqx.partition(ivs, mask)[0])
    pending, done = [], 0

    def loss(trainable, static, batch):
        out, _ = jv.core.run(
            adapter, plan, params, eqx.combine(trainable, static), batch["base"], batch["sources"], batch["locations"]
        )
        return _last_token_loss(out["logits"], batch["labels"])

    for _ in range(epochs):
        for b in batches:
            batch = jv.training.make_batch(
                model,
                {"input_ids": b["input_ids"].numpy()},
                [{"input_ids": b["source_input_ids"].numpy()}],
                {"sources->base": ([b["source_0->base.0.pos"].tolist()], [b["source_0->base.1.pos"].tolist()])},
                labels=b["labels"].numpy(),
                logit_position=None,
            )
            trainable, static = eqx.partition(ivs, mask)
            pending.append(jax.grad(loss)(trainable, static, batch))
            if len(pending) < accumulate:
                continue
            grads = jax.tree_util.tree_map(lambda *g: sum(g) / len(g), *pending)
            pending = []
            change, state = optimizer.update(grads, state, trainable)
            ivs = eqx.combine(optax.apply_updates(trainable, change), static)
            if anneal:
                ivs = tuple(iv.set_temperature(temps[done]) if hasattr(iv, "temperature") else iv for iv in ivs)
            done += 1
    return ivs


def _hf_linear_schedule(lr, warm, total):
    """transformers' get_linear_schedule_with_warmup, written as optax pieces."""
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warm), optax.linear_schedule(lr, 0.0, total - warm)], [warm]
    )


def _assert_same(got, expected, atol=2e-5):
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(x, y, atol=atol)


def test_train_alignment_defaults_equal_the_loop_written_out(flax_gpt2):
    """Adam with transformers' linear warmup (a tenth of the updates) and decay."""
    batches = _alignment_batches(5, 3)
    model = _model(flax_gpt2, jv.LowRankRotatedSpaceIntervention, low_rank_dimension=2)
    losses = model.train_alignment(batches, _last_token_loss, None, None, lr=0.05, epochs=2, progress=False)
    assert len(losses) == 10 and all(np.isfinite(losses))
    reference = _model(flax_gpt2, jv.LowRankRotatedSpaceIntervention, low_rank_dimension=2)
    expected = _reference_training(reference, batches, optax.adam(_hf_linear_schedule(0.05, 1, 10)), epochs=2)
    _assert_same(model.intervention_params()[0], expected[0], atol=1e-4)


def test_the_default_schedule_is_transformers_linear_warmup():
    from jaxvene._facade._pyvene_utils import _linear_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=20)
    theirs = []
    for _ in range(22):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [float(_linear_warmup(0.3, 3.0, 20)(c)) for c in range(22)]
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


def test_train_alignment_anneals_the_temperature(flax_gpt2):
    """After each update the temperature steps along linspace(50, 0.1, updates), as in pyvene;
    plain SGD, so the comparison is not at the mercy of Adam's normalisation of tiny gradients."""
    batches = _alignment_batches(5, 3)
    model = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
    model.train_alignment(batches, _last_token_loss, None, None, epochs=2, optimizer=optax.sgd(2.0), progress=False)
    got = model.intervention_params()[0]
    assert float(got.temperature) == pytest.approx(0.1)
    fresh = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
    _assert_same(got, _reference_training(fresh, batches, optax.sgd(2.0), 2)[0])
    frozen = _reference_training(
        _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention), batches, optax.sgd(2.0), 2, anneal=False
    )
    assert float(jnp.abs(got.intervention_boundaries - frozen[0].intervention_boundaries).max()) > 1e-6


def test_train_alignment_accumulates_gradients(flax_gpt2):
    batches = _alignment_batches(4, 2, seed=1)
    model = _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention)
    model.train_alignment(
        batches,
        _last_token_loss,
        None,
        None,
        epochs=1,
        gradient_accumulation_steps=2,
        optimizer=optax.sgd(0.5),
        progress=False,
    )
    expected = _reference_training(
        _model(flax_gpt2, jv.BoundlessRotatedSpaceIntervention), batches, optax.sgd(0.5), 1, 2
    )
    got = model.intervention_params()[0]
    _assert_same(got, expected[0])
    assert float(got.temperature) == pytest.approx(0.1)  # 2 updates: 50, then 0.1


def test_train_alignment_options_and_errors(flax_gpt2):
    model = _model(flax_gpt2, jv.RotatedSpaceIntervention)
    batches = _alignment_batches(1, 2)
    with pytest.raises(TypeError, match="unknown options"):
        model.train_alignment(batches, _last_token_loss, None, None, learning_rate=1e-3)
    with pytest.raises(TypeError, match="optax optimizer"):
        model.train_alignment(batches, _last_token_loss, None, None, optimizer=torch.optim.SGD([torch.zeros(1)], lr=1))
    with pytest.raises(TypeError, match="not both"):
        model.train_alignment(batches, _last_token_loss, None, None, optimizer=optax.sgd(1), scheduler=lambda c: 1.0)
    with pytest.raises(TypeError, match="sized"):
        model.train_alignment(iter(batches), _last_token_loss, None, None)
    bad = [{k: v for k, v in batches[0].items() if k != "source_0->base.1.pos"}]
    with pytest.raises(KeyError, match=r"source_0->base\.1\.pos"):
        model.train_alignment(bad, _last_token_loss, None, None, progress=False)
    serial = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], mode="serial"), flax_gpt2
    )
    with pytest.raises(NotImplementedError, match="make_batch"):
        serial.train_alignment(batches, _last_token_loss, None, None, progress=False)


def test_batch_locations_equal_pyvenes(gpt2_pair):
    """pyvene's `_batch_process_unit_location` and ours read the same keys into the same form."""
    torch_lm, bare, _ = gpt2_pair
    reps = [
        {"layer": 0, "component": "block_output", "unit": "pos"},
        {"layer": 1, "component": "head_attention_value_output", "unit": "h.pos"},
    ]
    theirs_model = pv.IntervenableModel(pv.IntervenableConfig(reps), torch_lm)
    ours_model = jv.IntervenableModel(jv.IntervenableConfig(reps), bare)
    inputs = {
        "source_0->base.0.pos": torch.tensor([[1], [2]]),
        "source_0->base.1.pos": torch.tensor([[3], [4]]),
        "source_1->base.0.h": torch.tensor([[0], [1]]),
        "source_1->base.0.pos": torch.tensor([[2], [0]]),
        "source_1->base.1.h": torch.tensor([[1], [1]]),
        "source_1->base.1.pos": torch.tensor([[4], [3]]),
    }
    from jaxvene._facade._pyvene_utils import _batch_locations

    def plain(x):
        if hasattr(x, "tolist"):
            return x.tolist()
        return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x

    theirs = theirs_model._batch_process_unit_location({**inputs, "input_ids": None})["sources->base"]
    ours = _batch_locations(ours_model, inputs)["sources->base"]
    assert [plain(side) for side in ours] == [plain(side) for side in theirs]


def test_eval_alignment_weighs_batches_and_matches_evaluate_iia(flax_gpt2):
    model = _model(flax_gpt2, jv.RotatedSpaceIntervention)
    batches = _alignment_batches(2, 3) + _alignment_batches(1, 5, seed=2)

    def accuracy(logits, labels):
        return {"accuracy": float((logits[0][:, -1].argmax(-1) == labels[0]).mean())}

    result = model.eval_alignment(batches, accuracy)
    iia_batches = [
        jv.training.make_batch(
            model,
            {"input_ids": b["input_ids"].numpy()},
            [{"input_ids": b["source_input_ids"].numpy()}],
            {"sources->base": ([b["source_0->base.0.pos"].tolist()], [b["source_0->base.1.pos"].tolist()])},
            labels=b["labels"].numpy(),
        )
        for b in batches
    ]
    assert result["accuracy"] == pytest.approx(jv.training.evaluate_iia(model, iia_batches))
    plain = model.eval_alignment(batches, lambda logits, labels: accuracy(logits, labels)["accuracy"])
    assert plain == pytest.approx(result["accuracy"])
    collated = model.eval_alignment([{"wrapped": b} for b in batches], accuracy, lambda x: x["wrapped"])
    assert collated == result


# ---------------------------------------------------------------------------- pyvene's MLP
def test_mlp_config_has_pyvenes_pdrop():
    assert jv.MLPConfig().pdrop == pv.models.mlp.modelings_mlp.MLPConfig().pdrop == 0.3
    torch_config = pv.models.mlp.modelings_mlp.MLPConfig(h_dim=4, n_layer=2, pdrop=0.15)
    torch_model = pv.models.mlp.modelings_mlp.MLPForClassification(torch_config)
    ours = jv.MLPForClassification.from_torch(torch_model)
    assert ours.config.pdrop == 0.15
    with tempfile.TemporaryDirectory() as folder:
        ours.save_pretrained(folder)
        assert jv.MLPForClassification.from_pretrained(folder).config.pdrop == 0.15


def test_mlp_dropout_only_with_a_key():
    config = jv.MLPConfig(h_dim=64, n_layer=2, pdrop=0.5, activation_function="relu")
    mlp = jv.MLPForClassification(config)
    x = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    plain = mlp({"inputs_embeds": x})["logits"]
    p = mlp.params
    # written out: dropout of the input, then of each block's output, kept entries scaled by 2
    out, state = mlp.module.apply(
        {"params": p}, x, False, rngs={"dropout": jax.random.key(1)}, capture_intermediates=True
    )
    inter = state["intermediates"]["mlp"]["h"]
    dropped_in = inter["drop"]["__call__"][0]
    assert set(np.unique(np.isclose(dropped_in, 0) | np.isclose(dropped_in, 2 * x))) == {True}
    h = dropped_in
    for i in range(2):
        dense = p["mlp"]["h"][str(i)]["ff1"]
        active = np.maximum(h @ dense["kernel"] + dense["bias"], 0)
        block = inter[str(i)]["__call__"][0]
        assert set(np.unique(np.isclose(block, 0) | np.isclose(block, 2 * active, atol=1e-5))) == {True}
        alive = ~np.isclose(active, 0)
        assert 0.3 < float(np.mean(np.isclose(block, 0)[alive])) < 0.7  # about half of them dropped
        h = block
    np.testing.assert_allclose(out["logits"], h @ p["score"]["kernel"] + p["score"]["bias"], atol=1e-5)
    keyed = mlp({"inputs_embeds": x}, dropout_key=jax.random.key(1))["logits"]
    np.testing.assert_allclose(keyed, out["logits"], atol=1e-6)
    assert float(jnp.abs(keyed - plain).max()) > 1e-3
    # interventions run without dropout: an intervened call with no change equals the plain one
    model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": 0, "component": "block_output"}]), mlp)
    _, same = model({"inputs_embeds": x}, [{"inputs_embeds": x}])
    np.testing.assert_allclose(same["logits"], plain, atol=1e-6)
    zero = jv.MLPForClassification(dataclasses.replace(config, pdrop=0.0), params=p)
    np.testing.assert_allclose(zero({"inputs_embeds": x}, dropout_key=jax.random.key(1))["logits"], plain, atol=1e-6)


def test_create_mlp_classifier(tokenizer_pair):
    raw, _ = tokenizer_pair
    config = jv.MLPConfig(h_dim=8, n_layer=3, num_classes=2, activation_function="relu", pdrop=0.0)
    got_config, tokenizer, mlp = jv.create_mlp_classifier(config)
    assert got_config is config and tokenizer is None
    assert isinstance(mlp, jv.MLPForClassification) and mlp.config is config
    assert mlp({"inputs_embeds": np.zeros((2, 8), np.float32)})["logits"].shape == (2, 2)
    other = jv.create_mlp_classifier(config, seed=1)[2]
    assert not np.allclose(other.params["score"]["kernel"], mlp.params["score"]["kernel"])
    with tempfile.TemporaryDirectory() as folder:
        raw.save(f"{folder}/tokenizer.json")
        _, tokenizer, _ = jv.create_mlp_classifier(config, folder)
        assert jv.format_token(tokenizer, 2) == "_Madrid"
    with pytest.raises(TypeError, match="HF_HUB_CACHE"):
        jv.create_mlp_classifier(config, cache_dir="/tmp")
