"""`jv.sweep` and `jv.causal_trace` on a native decoder (Gemma 2: embedding scale, sandwich
norms, softcaps, a sliding-window layer).

The sweep (block_output, both layers x all 8 positions, one compiled program) equals a loop of
`jv.IntervenableModel` calls, one Vanilla patch per cell, under the same metric. Causal tracing
is checked on properties that hold exactly: its clean probability is the model's softmax at the
last position; restoring the last layer's block_output at the last position gives the clean
probability back; restoring at a position before the subject (which the noise cannot reach in
a causal model) gives the corrupted one; zero noise makes every cell the clean probability.
"""

import jax
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from _cases import BASE, SRC, assert_close, native  # noqa: E402

import jaxvene as jv  # noqa: E402

NAME = "gemma2"
METRIC = lambda logits: logits[:, -1, :5]  # noqa: E731


def test_sweep_equals_one_patch_per_cell():
    model = native(NAME)
    src = SRC[:, : BASE.shape[1]]
    T = BASE.shape[1]
    grid = jv.sweep(
        model, {"input_ids": BASE}, {"input_ids": src}, metric=METRIC, component="block_output", progress=False
    )
    assert grid.shape == (2, T, 2, 5)
    for layer in range(2):
        jm = jv.IntervenableModel(jv.IntervenableConfig([{"layer": layer, "component": "block_output"}]), model)
        for p in range(T):
            at = [[[p]] * 2]
            _, out = jm({"input_ids": BASE}, [{"input_ids": src}], {"sources->base": (at, at)})
            assert_close(grid[layer, p], METRIC(out.logits), atol=1e-5, what=f"cell ({layer}, {p})")
    assert np.abs(grid[1, -1] - grid[0, 0]).max() > 1e-3  # cells differ


def test_causal_trace_exact_properties():
    model = native(NAME)
    ids = BASE[:1]
    target = int(np.argmax(np.asarray(model(ids).logits)[0, -1]))
    subject = [2, 3]
    trace = jv.causal_trace(
        model,
        {"input_ids": ids},
        subject=subject,
        target=target,
        key=jax.random.key(0),
        samples=4,
        components=("block_output",),
        progress=False,
    )
    probs = np.asarray(jax.nn.softmax(model(ids).logits[0, -1]))
    np.testing.assert_allclose(trace.clean, probs[target], rtol=1e-5)
    assert abs(trace.clean - trace.corrupted) > 1e-3  # the noise bites
    stream = trace.scores["block_output"]
    assert stream.shape == (2, ids.shape[1])
    np.testing.assert_allclose(stream[-1, -1], trace.clean, rtol=1e-4)
    np.testing.assert_allclose(stream[:, : subject[0]], trace.corrupted, rtol=1e-4)
    quiet = jv.causal_trace(
        model,
        {"input_ids": ids},
        subject=subject,
        target=target,
        key=jax.random.key(0),
        samples=4,
        noise_scale=0.0,
        components=("block_output",),
        progress=False,
    )
    np.testing.assert_allclose(quiet.corrupted, trace.clean, rtol=1e-5)
    np.testing.assert_allclose(quiet.scores["block_output"], trace.clean, rtol=1e-4)
