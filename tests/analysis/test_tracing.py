"""Causal tracing on a tiny model: the restorations that must give back clean or corrupted."""

import jax
import numpy as np
import pytest

import jaxvene as jv

IDS = np.array([[3, 14, 15, 9, 26, 5]])


def test_causal_trace_limits(flax_gpt2, tmp_path):
    clean_logits = flax_gpt2(IDS).logits[0, -1]
    target = int(clean_logits.argmax())
    trace = jv.causal_trace(
        flax_gpt2,
        {"input_ids": IDS},
        subject=[1, 2],
        target=target,
        key=jax.random.key(0),
        samples=4,
        windows={"mlp_output": 2},
        progress=False,
    )
    L = flax_gpt2.config.n_layer
    np.testing.assert_allclose(trace.clean, float(jax.nn.softmax(clean_logits)[target]), rtol=1e-5)
    assert abs(trace.corrupted - trace.clean) > 1e-4  # the noise changed the prediction
    for component in ("block_output", "mlp_output", "attention_output"):
        assert trace.scores[component].shape == (L, 6)
    stream = trace.scores["block_output"]
    # restoring the last position at the last layer gives back the clean prediction
    np.testing.assert_allclose(stream[L - 1, 5], trace.clean, rtol=1e-5)
    # restoring a position before the subject restores nothing: it was never corrupted
    np.testing.assert_allclose(stream[:, 0], trace.corrupted, rtol=1e-5)
    assert trace.top_sites(1)[0][3] >= stream.max() - 1e-6
    paths = trace.save_heatmaps(str(tmp_path), tokens=[str(t) for t in IDS[0]])
    assert len(paths) == 3 and all(p.endswith(".png") for p in paths)


def test_causal_trace_is_reproducible_and_checks_input(flax_gpt2):
    kw = dict(subject=[1], target=3, samples=2, components=("block_output",), progress=False)
    a = jv.causal_trace(flax_gpt2, {"input_ids": IDS}, key=jax.random.key(1), **kw)
    b = jv.causal_trace(flax_gpt2, {"input_ids": IDS}, key=jax.random.key(1), **kw)
    np.testing.assert_array_equal(a.scores["block_output"], b.scores["block_output"])
    with pytest.raises(IndexError, match="subject positions"):
        jv.causal_trace(flax_gpt2, {"input_ids": IDS}, key=jax.random.key(1), **{**kw, "subject": [6]})
