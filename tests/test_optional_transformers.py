"""jaxvene's core needs no transformers: it imports and intervenes with none installed, and
next to transformers 5 (which removed the Flax classes); what does need transformers 4.x's
Flax classes (the shipped facts GPT-2, the demo) says to `pip install 'jaxvene[hf]'`.

"No transformers" is a fresh Python in which importing `transformers` fails (a `sys.meta_path`
finder set up before `import jaxvene`). `make test-tf5` runs this file in an environment with
transformers 5 as well, where the test against the installed transformers 5 runs too.
"""

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import textwrap
import types

import pytest

from jaxvene import _transformers

ROOT = pathlib.Path(__file__).resolve().parents[1]

BLOCK_TRANSFORMERS = """
import importlib.abc, sys

class NoTransformers(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "transformers" or name.startswith("transformers."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, NoTransformers())
"""

# Runs in the fresh Python; prints OK at the end. TRANSFORMERS_FOUND: what the error should say.
CHECKS = """
import sys
import numpy as np
import jax.numpy as jnp
import jaxvene as jv
import jaxvene.pretrained

# A function with a tap: h = x * [1, 2], out = h0 + h1. Swapping in the source's h at position 1
# gives, by hand: base h = [[1, 2], [2, 4], [3, 6]] -> out [3, 6, 9]; the source's h at
# position 1 is [20, 40] -> out [3, 60, 9].
def fn(params, inputs):
    h = jv.tap("h", inputs["x"] @ params["w1"])
    return {"out": h @ params["w2"]}

params = {"w1": jnp.array([[1.0, 0.0], [0.0, 2.0]]), "w2": jnp.array([[1.0], [1.0]])}
base = {"x": jnp.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]])}
source = {"x": jnp.array([[[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]])}
model = jv.IntervenableModel(
    jv.IntervenableConfig([{"component": "h"}], intervention_types=jv.VanillaIntervention),
    jv.FunctionAdapter(fn, params, base),
)
_, out = model(base, [source], {"sources->base": 1})
np.testing.assert_array_equal(np.asarray(out["out"]), [[[3.0], [60.0], [9.0]]])

# pyvene's MLP (a native model): swapping the whole last block output in gives the source's logits
mlp = jv.MLPForClassification(jv.MLPConfig(h_dim=4, n_layer=2, num_classes=3, activation_function="relu"))
xb = np.random.default_rng(0).normal(size=(2, 1, 4)).astype(np.float32)
xs = np.random.default_rng(1).normal(size=(2, 1, 4)).astype(np.float32)
swap = jv.IntervenableModel(
    jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.VanillaIntervention),
    mlp,
)
_, out = swap({"inputs_embeds": xb}, [{"inputs_embeds": xs}], {"sources->base": 0})
np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(mlp({"inputs_embeds": xs})["logits"]), atol=1e-6)
assert not np.allclose(np.asarray(mlp({"inputs_embeds": xb})["logits"]), np.asarray(out["logits"]))

# what needs transformers 4.x's Flax classes says so
for call in (jaxvene.pretrained.load_facts_model, jaxvene.pretrained.load_facts_tokenizer):
    try:
        call()
    except ImportError as exc:
        message = str(exc)
        assert "jaxvene[hf]" in message and "transformers 5 removed them" in message, message
        assert TRANSFORMERS_FOUND in message, message
    else:
        raise AssertionError(f"{call.__name__} ran without transformers 4.x")

from jaxvene.__main__ import main
assert main(["demo", "--out", "unused"]) == 1  # the message on stderr, no traceback

if BLOCKED:
    assert not [m for m in sys.modules if m.split(".")[0] == "transformers"]
print("OK")
"""


def _run(prelude: str, found: str, blocked: bool) -> subprocess.CompletedProcess:
    code = prelude + f"\nTRANSFORMERS_FOUND = {found!r}\nBLOCKED = {blocked}\n" + textwrap.dedent(CHECKS)
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False
    )


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr
    assert "jaxvene demo: " in result.stderr and "jaxvene[hf]" in result.stderr  # main()'s message


def test_core_works_without_transformers():
    _check(_run(BLOCK_TRANSFORMERS, "importing transformers failed", blocked=True))


def _installed_major() -> int | None:
    try:
        return int(importlib.metadata.version("transformers").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.skipif((_installed_major() or 0) < 5, reason="needs transformers 5 installed (make test-tf5)")
def test_core_works_next_to_transformers_5():
    version = importlib.metadata.version("transformers")
    _check(_run("", f"transformers {version} is installed", blocked=False))


def test_a_transformers_5_is_refused_with_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(__version__="5.0.0"))
    with pytest.raises(_transformers.FlaxTransformersMissing) as err:
        _transformers.require_flax_transformers("the facts model")
    assert str(err.value).startswith("the facts model needs transformers 4.x's Flax classes")
    assert "pip install 'jaxvene[hf]'" in str(err.value) and "transformers 5.0.0 is installed" in str(err.value)
    assert isinstance(err.value, ImportError)


@pytest.mark.skipif(not _transformers.flax_transformers_installed(), reason="needs transformers 4.x")
def test_transformers_4_is_returned():
    import transformers

    assert _transformers.require_flax_transformers("x") is transformers
    outputs = _transformers.import_flax_module("transformers.modeling_flax_outputs", "x")
    assert hasattr(outputs, "FlaxCausalLMOutput")
