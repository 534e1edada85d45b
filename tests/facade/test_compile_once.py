"""Compiled programs are shared by structure (issue #13): a new `IntervenableModel` whose model
structure, plan and input shapes equal an earlier one's traces nothing, whatever its weights;
a model of another structure never reuses a program; the numbers equal a fresh, unshared run.
Also `params=` (sharded params stay sharded) and the persistent compilation cache option."""

import gc
import weakref

import jax
import numpy as np
import pytest
import transformers
from jax.sharding import Mesh, NamedSharding

import jaxvene as jv
from jaxvene.core import _programs
from jaxvene.core._run import run

IDS = np.random.default_rng(0).integers(0, 50, (2, 6))
SRC = np.random.default_rng(1).integers(0, 50, (2, 6))
LOCS = {"sources->base": ([[[1], [4]]], [[[3], [2]]])}


def _gpt2(seed=0, **changes):
    config = dict(n_embd=24, n_layer=3, n_head=4, vocab_size=50, n_positions=32, initializer_range=0.3)
    config.update(changes)
    return transformers.FlaxGPT2LMHeadModel(transformers.GPT2Config(**config), seed=seed)


def _config(layer=1, component="block_output"):
    return jv.IntervenableConfig([{"layer": layer, "component": component}], intervention_types=jv.VanillaIntervention)


def _patched(model, config=None, **kwargs):
    im = jv.IntervenableModel(config or _config(), model)
    return np.asarray(im({"input_ids": IDS}, [{"input_ids": SRC}], LOCS, **kwargs)[1].logits)


def _fresh(model, config=None):
    """The same call through the pure core, jitted on its own (no shared program)."""
    im = jv.IntervenableModel(config or _config(), model)
    args = im.prepare({"input_ids": IDS}, [{"input_ids": SRC}], LOCS)
    f = jax.jit(lambda params, ivs, *a: run(im.adapter, im.plan(), params, ivs, *a)[0]["logits"])
    return np.asarray(f(model.params, im.intervention_params(), *args))


def test_an_equal_config_on_new_instances_traces_nothing():
    model = _gpt2(seed=11, n_layer=2)
    first = _patched(model)
    before = _programs.traces()
    again = [_patched(model) for _ in range(3)]
    assert _programs.traces() == before
    for out in again:
        np.testing.assert_array_equal(out, first)
    np.testing.assert_allclose(first, _fresh(model), atol=1e-6)


def test_same_structure_other_weights_share_and_keep_their_own_numbers():
    a, b = _gpt2(seed=21, n_layer=2, n_embd=16), _gpt2(seed=22, n_layer=2, n_embd=16)
    out_a = _patched(a)
    before = _programs.traces()
    out_b = _patched(b)
    assert _programs.traces() == before  # b ran a's program
    assert np.abs(out_a - out_b).max() > 1e-2  # ... with its own weights
    np.testing.assert_allclose(out_b, _fresh(b), atol=1e-6)
    np.testing.assert_allclose(out_a, _fresh(a), atol=1e-6)


@pytest.mark.parametrize("change", [dict(activation_function="relu"), dict(layer_norm_epsilon=0.5)])
def test_another_structure_never_reuses_a_program(change):
    # the params have the same shapes: only the structure key tells the programs apart
    plain, changed = _gpt2(seed=31, n_embd=20, n_head=2), _gpt2(seed=31, n_embd=20, n_head=2, **change)
    out_plain = _patched(plain)
    before = _programs.traces()
    out_changed = _patched(changed)
    assert _programs.traces() == before + 1
    np.testing.assert_allclose(out_changed, _fresh(changed), atol=1e-6)
    assert np.abs(out_changed - out_plain).max() > 1e-3


def test_another_plan_or_input_shape_compiles_its_own():
    model = _gpt2(seed=41, n_layer=2, n_embd=12, n_head=2)
    _patched(model)
    before = _programs.traces()
    out = _patched(model, _config(layer=0))
    assert _programs.traces() == before + 1
    np.testing.assert_allclose(out, _fresh(model, _config(layer=0)), atol=1e-6)
    im = jv.IntervenableModel(_config(), model)
    im({"input_ids": IDS[:1]}, [{"input_ids": SRC[:1]}], {"sources->base": 2})
    assert _programs.traces() == before + 2
    assert im.trace_count == 1


def test_trace_count_counts_the_programs_an_instance_needs():
    model = _gpt2(seed=51, n_layer=2, n_embd=8, n_head=2)
    _patched(model)  # compiles the program
    im = jv.IntervenableModel(_config(), model)
    for p in range(3):
        im({"input_ids": IDS}, [{"input_ids": SRC}], {"sources->base": p})
    assert im.trace_count == 1  # found compiled, counted once; new locations need none


def test_the_shared_cache_does_not_keep_models_alive():
    model = _gpt2(seed=61, n_layer=2, n_embd=8, n_head=2)
    _patched(model)
    ref, params_ref = weakref.ref(model), weakref.ref(jax.tree_util.tree_leaves(model.params)[0])
    del model
    gc.collect()
    assert ref() is None
    assert params_ref() is None


def test_groups_fed_by_one_input_share_a_source_run():
    """pyvene's tutorials pass `[None] + [base] * n`: the same object feeds every group."""
    model = _gpt2(seed=71)
    config = jv.IntervenableConfig(
        [{"layer": 0, "component": "block_output"}, {"layer": 2, "component": "mlp_output"}],
        intervention_types=jv.VanillaIntervention,
    )
    im = jv.IntervenableModel(config, model)
    src = {"input_ids": SRC}
    locs = {"sources->base": ([[[1], [4]], [[0], [5]]], [[[3], [2]], [[1], [1]]])}
    shared = np.asarray(im({"input_ids": IDS}, [src, src], locs)[1].logits)
    separate = np.asarray(im({"input_ids": IDS}, [src, {"input_ids": SRC.copy()}], locs)[1].logits)
    np.testing.assert_allclose(shared, separate, atol=1e-6)
    args = im.prepare({"input_ids": IDS}, [src, src], locs)
    reference = run(im.adapter, im.plan(), model.params, im.intervention_params(), *args)[0]["logits"]
    np.testing.assert_allclose(shared, np.asarray(reference), atol=1e-6)


def test_one_trace_finds_every_layers_taps():
    model = _gpt2(seed=81)
    jv.IntervenableModel(_config(layer=0), model)
    adapter = jv.adapters.adapt(model)
    taps = [adapter.site("block_output", layer).tap for layer in range(3)]
    assert all(t in adapter._shapes for t in taps)  # later layers' configs need no new trace


def test_generation_programs_are_shared():
    model = _gpt2(seed=91, n_layer=2)
    config = jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.ZeroIntervention)

    def generate():
        im = jv.IntervenableModel(config, model)
        return np.asarray(im.generate({"input_ids": IDS}, max_new_tokens=3)[1])

    first = generate()
    before = _programs.traces()
    np.testing.assert_array_equal(generate(), first)
    assert _programs.traces() == before


def test_params_argument_replaces_the_models_params():
    a, b = _gpt2(seed=101, n_layer=2), _gpt2(seed=102, n_layer=2)
    im = jv.IntervenableModel(_config(), a, params=b.params)
    np.testing.assert_allclose(np.asarray(im({"input_ids": IDS}, [{"input_ids": SRC}], LOCS)[1].logits), _patched(b))
    per_call = im({"input_ids": IDS}, [{"input_ids": SRC}], LOCS, params=a.params)[1].logits
    np.testing.assert_allclose(np.asarray(per_call), _patched(a))


RAW = dict(
    model_type="qwen3",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=8,
    vocab_size=64,
)


def test_sharded_params_give_the_unsharded_result_and_stay_sharded(tmp_path):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py sets XLA_FLAGS)")
    from jaxvene.models.decoder import sharding_rules

    plain = jv.NativeDecoder.random(RAW, seed=3, scale=0.3)
    plain.save_pretrained(str(tmp_path))
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
    sharded = jv.from_pretrained(str(tmp_path), mesh=mesh, sharding=sharding_rules("data", "model")).params
    q = sharded["layers"]["self_attn"]["q_proj"]["kernel"]
    assert tuple(q.sharding.spec) == (None, "data", "model")
    ids, src = np.random.default_rng(0).integers(0, 64, (4, 7)), np.random.default_rng(1).integers(0, 64, (4, 7))
    config = jv.IntervenableConfig([{"layer": 1, "component": "block_output"}])
    locs = {"sources->base": 3}
    unsharded = jv.IntervenableModel(config, plain)({"input_ids": ids}, [{"input_ids": src}], locs)[1].logits
    im = jv.IntervenableModel(config, plain, params=sharded)
    out = im({"input_ids": ids}, [{"input_ids": src}], locs)[1].logits
    np.testing.assert_allclose(np.asarray(out), np.asarray(unsharded), atol=1e-4)
    assert im.params is sharded  # the call took them as they are
    assert tuple(q.sharding.spec) == (None, "data", "model")
    assert all(isinstance(x.sharding, NamedSharding) for x in jax.tree_util.tree_leaves(sharded))
    per_call = jv.IntervenableModel(config, plain)({"input_ids": ids}, [{"input_ids": src}], locs, params=sharded)
    np.testing.assert_allclose(np.asarray(per_call[1].logits), np.asarray(unsharded), atol=1e-4)


def test_enable_compilation_cache_writes_programs(tmp_path):
    before = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
        jax.config.jax_persistent_cache_min_entry_size_bytes,
    )
    try:
        path = jv.enable_compilation_cache(tmp_path / "xla", min_compile_time_secs=0.0)
        assert path == tmp_path / "xla" and jax.config.jax_compilation_cache_dir == str(path)
        _patched(_gpt2(seed=111, n_layer=2, n_embd=28, n_head=2))  # a program nothing compiled before
        assert any(path.iterdir())
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", before[2])
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
