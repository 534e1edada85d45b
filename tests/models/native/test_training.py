"""Training interventions on a native decoder, as on any model: the Gate of
tests/training/test_train.py at the last layer's last position learns to let the source
through (the labels are the source's own predictions, so IIA must reach 1), and the train
step's loss equals the facade's loss computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxvene as jv

RAW = dict(
    model_type="gemma2",
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=50,
    sliding_window=3,
    query_pre_attn_scalar=8,
)


class Gate(jv.TrainableIntervention):
    """base + sigmoid(w) * (source - base)."""

    w: jax.Array

    def __init__(self, embed_dim=None, **kwargs):
        super().__init__(embed_dim, **kwargs)
        self.w = jnp.full((embed_dim,), -2.0)

    def __call__(self, base, source, subspaces=None, *, key=None):
        return base + jax.nn.sigmoid(self.w) * (source - base)


def test_gate_training_on_a_native_decoder():
    model = jv.NativeDecoder.random(RAW, seed=0, scale=0.3)
    rng = np.random.default_rng(0)
    base, src = rng.integers(0, 50, (8, 5)), rng.integers(0, 50, (8, 5))
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=Gate), model
    )
    labels = np.asarray(model(src).logits[:, -1].argmax(-1))
    batch = jv.training.make_batch(jm, {"input_ids": base}, [{"input_ids": src}], {"sources->base": 4}, labels=labels)
    init, step, _ = jv.training.make_train_step(jm, optax.sgd(0.0))
    _, loss = step(init(), batch, jm.adapter.params)
    _, out = jm({"input_ids": base}, [{"input_ids": src}], {"sources->base": 4})
    ref = -jnp.mean(jax.nn.log_softmax(out.logits[:, -1])[jnp.arange(8), labels])
    np.testing.assert_allclose(loss, ref, rtol=1e-5)

    before = jv.training.evaluate_iia(jm, [batch])
    losses = jv.training.train_interventions(jm, [batch], optax.adam(0.5), epochs=20, progress=False)
    assert losses[-1] < losses[0] * 0.2
    assert jv.training.evaluate_iia(jm, [batch]) == 1.0 and before < 1.0
