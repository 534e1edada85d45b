"""`jv.from_pretrained`'s reading of HF checkpoint folders: sharded files, errors, device placement.

* A checkpoint saved in several safetensors shards (`model.safetensors.index.json`) loads the
  same params, leaf for leaf, as the single-file one (LLaMA; Phi-3, whose fused projections
  are split on load).
* Errors: a missing folder or one without config.json (FileNotFoundError), a truncated
  safetensors file (ValueError naming the file), an unknown model_type (NotImplementedError
  listing the supported ones), a tensor of the wrong shape (ValueError naming it), a missing
  tensor (naming it), and a config value that changes the math and is not implemented (rope
  type "foo": NotImplementedError naming the field).
* With a 2x4 ("data", "model") mesh of the 8 CPU devices and rules putting the MLP kernels'
  hidden axis on "model" (as regular expressions, and as a function), each param arrives with
  exactly the requested `NamedSharding` (unmatched ones replicated), each device holds its
  slice, and the logits equal the unsharded model's.
"""

import glob
import os
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import jax  # noqa: E402
from _cases import (  # noqa: E402
    BASE,
    CASES,
    assert_close,
    build_torch,
    checkpoint,
    copy_checkpoint,
    native,
    torch_logits,
    torch_model,
)
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxvene as jv  # noqa: E402


def _leaves(model):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(model.params)}


@pytest.mark.parametrize("name", ["llama", "phi3"])
def test_sharded_checkpoint_loads_the_same_params(name, tmp_path):
    torch_model(name).save_pretrained(tmp_path, max_shard_size="20KB", safe_serialization=True)
    shards = glob.glob(str(tmp_path / "*.safetensors"))
    assert len(shards) >= 3 and (tmp_path / "model.safetensors.index.json").is_file(), shards
    assert not (tmp_path / "model.safetensors").exists()
    ours, single = _leaves(jv.from_pretrained(tmp_path)), _leaves(native(name))
    assert ours.keys() == single.keys()
    for k in ours:
        np.testing.assert_array_equal(ours[k], single[k], err_msg=k)


# ------------------------------------------------------------------------------ errors
def test_missing_folder_or_config(tmp_path):
    with pytest.raises(FileNotFoundError):
        jv.from_pretrained(tmp_path / "nowhere")
    copy_checkpoint("llama", tmp_path / "c")
    os.remove(tmp_path / "c" / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        jv.from_pretrained(tmp_path / "c")


def test_truncated_safetensors(tmp_path):
    folder = copy_checkpoint("llama", tmp_path / "c")
    path = os.path.join(folder, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ValueError, match="model.safetensors"):
        jv.from_pretrained(folder)


def test_unknown_model_type(tmp_path):
    folder = copy_checkpoint("llama", tmp_path / "c", lambda raw: raw.update(model_type="mamba9"))
    with pytest.raises(NotImplementedError, match="mamba9") as err:
        jv.from_pretrained(folder)
    for supported in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2"):
        assert supported in str(err.value), supported


def _rewrite_tensors(folder, edit):
    from safetensors.numpy import load_file, save_file

    path = os.path.join(folder, "model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_tensor_of_the_wrong_shape(tmp_path):
    name = "model.layers.1.mlp.up_proj.weight"
    folder = copy_checkpoint("llama", tmp_path / "c")
    _rewrite_tensors(folder, lambda t: t.update({name: t[name][:-1]}))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        jv.from_pretrained(folder)


def test_missing_tensor(tmp_path):
    name = "model.layers.0.self_attn.k_proj.weight"
    folder = copy_checkpoint("llama", tmp_path / "c")
    _rewrite_tensors(folder, lambda t: t.pop(name))
    with pytest.raises((KeyError, ValueError), match=name.replace(".", r"\.")):
        jv.from_pretrained(folder)


def _unknown_rope(raw):
    # transformers 4.57 writes rope_scaling, 5.x rope_parameters (with rope_theta inside)
    if isinstance(raw.get("rope_parameters"), dict):
        raw["rope_parameters"].update(rope_type="foo", factor=2.0)
    raw["rope_scaling"] = {"rope_type": "foo", "factor": 2.0}


def test_unimplemented_config_value(tmp_path):
    folder = copy_checkpoint("llama", tmp_path / "c", _unknown_rope)
    with pytest.raises(NotImplementedError, match="rope_(scaling|parameters)") as err:
        jv.from_pretrained(folder)
    assert "foo" in str(err.value)


@pytest.mark.parametrize(
    "name,edit",
    [
        ("gemma3_text", {"use_bidirectional_attention": True}),
    ],
)
def test_implemented_or_refused(name, edit, tmp_path):
    """A config value that changes the math either loads and matches torch, or is refused with
    NotImplementedError naming the field."""
    tm = build_torch(CASES[name], **edit)
    tm.save_pretrained(tmp_path)
    try:
        model = jv.from_pretrained(tmp_path)
    except NotImplementedError as err:
        assert any(k in str(err) for k in edit), err
        return
    assert_close(model(BASE).logits, torch_logits(tm, BASE), what=f"{name} {edit}")


# ------------------------------------------------------------------------------ sharding
RULES = {
    r"layers\.mlp\.(gate|up)_proj\.kernel": P(None, None, "model"),  # (L, D, F): F on "model"
    r"layers\.mlp\.down_proj\.kernel": P(None, "model", None),  # (L, F, D)
    r"embed_tokens\.embedding": P("data", None),  # (V, D): the vocabulary on "data"
}


def _mesh():
    assert len(jax.devices()) == 8, "tests/conftest.py gives the session 8 CPU devices"
    return Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))


def _expected_spec(path):
    for pattern, spec in RULES.items():
        if re.fullmatch(pattern, path):
            return spec
    return P()


def _check_placement(model, mesh, expected_spec):
    seen = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(model.params):
        dotted = ".".join(str(getattr(k, "key", k)) for k in path)
        spec = expected_spec(dotted)
        seen.add(spec != P())
        assert isinstance(leaf.sharding, NamedSharding), dotted
        assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, spec), leaf.ndim), (dotted, leaf.sharding.spec)
        shard_shapes = {s.data.shape for s in leaf.addressable_shards}
        want = tuple(n // (mesh.shape[a] if a else 1) for n, a in zip(leaf.shape, tuple(spec) + (None,) * leaf.ndim))
        assert shard_shapes == {want}, (dotted, shard_shapes, want)
    assert seen == {True, False}  # some params sharded, some replicated


def test_mesh_and_regex_rules():
    mesh = _mesh()
    model = jv.from_pretrained(checkpoint("qwen2"), mesh=mesh, sharding=RULES)
    _check_placement(model, mesh, _expected_spec)
    assert model.params["layers"]["mlp"]["up_proj"]["kernel"].addressable_shards[0].data.shape == (2, 32, 16)
    assert_close(model(BASE).logits, native("qwen2")(BASE).logits, atol=1e-5, what="sharded qwen2")


def test_mesh_and_callable_rules():
    """A function `(path, shape) -> PartitionSpec`; Phi-3's split projections are sharded
    after the split (q/k/v output axis on "model")."""
    mesh = _mesh()
    calls = []

    def rule(path, shape):
        calls.append((path, tuple(shape)))
        if path.startswith("layers.self_attn.") and path.endswith(("q_proj.kernel", "k_proj.kernel", "v_proj.kernel")):
            return P(None, None, "model")
        return _expected_spec(path)

    def expected(path):
        if path.startswith("layers.self_attn.") and path.endswith(("q_proj.kernel", "k_proj.kernel", "v_proj.kernel")):
            return P(None, None, "model")
        return _expected_spec(path)

    model = jv.from_pretrained(checkpoint("phi3"), mesh=mesh, sharding=rule)
    _check_placement(model, mesh, expected)
    assert ("layers.self_attn.k_proj.kernel", (2, 32, 16)) in calls
    assert_close(model(BASE).logits, native("phi3")(BASE).logits, atol=1e-5, what="sharded phi3")
