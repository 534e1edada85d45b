"""A temperature that `on_step` sets is the one the next step trains with (it used to sit in the
half of the interventions fixed when training started, and was dropped)."""

import numpy as np
import optax

import jaxvene as jv


def test_on_step_temperature_reaches_the_next_step(flax_gpt2):
    jm = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": 2, "component": "block_output"}], intervention_types=jv.BoundlessRotatedSpaceIntervention
        ),
        flax_gpt2,
    )
    rng = np.random.default_rng(0)
    base, src = rng.integers(0, 50, (4, 5)), rng.integers(0, 50, (4, 5))
    batch = jv.training.make_batch(
        jm, {"input_ids": base}, [{"input_ids": src}], {"sources->base": 3}, labels=[1, 2, 3, 4]
    )
    seen = []

    def anneal(step, interventions):
        seen.append(float(interventions[0].temperature))
        return tuple(iv.set_temperature(0.1) for iv in interventions)

    jv.training.train_interventions(jm, [batch], optax.adam(0.01), epochs=3, on_step=anneal, progress=False)
    np.testing.assert_allclose(seen, [50.0, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(float(jm.intervention_params()[0].temperature), 0.1, rtol=1e-6)
