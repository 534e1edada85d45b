"""Greedy generation of jaxvene's native decoders against torch's `generate(do_sample=False)`.

One case per family (and Qwen2 with its sliding window): jaxvene's decode loop, driven through
`jv.IntervenableModel(...).generate` with a zero AdditionIntervention on block_output (so the
loop runs with the intervention machinery in place but changes nothing), must produce the same
token ids as HF's `generate` on the same checkpoint, with row 0 left-padded. The prompts (8
tokens) are longer than every sliding window (3 or 4), so the windowed layers mask inside the
prompt and at every decode step. The configs have no EOS token, so neither side stops early.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402
from _cases import BASE, FAMILY_CASES, native, torch_model  # noqa: E402

import jaxvene as jv  # noqa: E402

N_NEW = 6
GENERATE = [*FAMILY_CASES, "qwen2_sliding", "gpt_neox"]


def _mask():
    mask = np.ones_like(BASE)
    mask[0, :2] = 0
    return mask


@pytest.mark.parametrize("name", GENERATE)
def test_greedy_matches_torch_with_left_padding(name):
    model, tm = native(name), torch_model(name)
    mask = _mask()
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.AdditionIntervention),
        model,
    )
    _, ours = jm.generate(
        {"input_ids": BASE, "attention_mask": mask},
        source_representations=jnp.zeros(model.config.hidden_size),
        max_new_tokens=N_NEW,
    )
    with torch.no_grad():
        ref = tm.generate(
            torch.tensor(BASE, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=N_NEW,
            do_sample=False,
            pad_token_id=0,
        ).numpy()
    assert ref.shape == (2, BASE.shape[1] + N_NEW)
    np.testing.assert_array_equal(np.asarray(ours), ref, err_msg=name)
