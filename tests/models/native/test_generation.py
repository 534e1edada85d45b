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
from _cases import BASE, CASES, FAMILY_CASES, build_torch, native, tokens, torch_logits, torch_model  # noqa: E402

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


def _generate(name, ids, mask, n):
    model = native(name)
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block_output"}], intervention_types=jv.AdditionIntervention),
        model,
    )
    _, ours = jm.generate(
        {"input_ids": ids, "attention_mask": mask},
        source_representations=jnp.zeros(model.config.hidden_size),
        max_new_tokens=n,
    )
    return np.asarray(ours)


@pytest.mark.parametrize(
    "name,prompt,n",
    [("llama_llama3", 20, 6), ("llama_yarn", 20, 6), ("llama_dynamic", 12, 8), ("phi3_longrope", 20, 6)],
)
def test_scaled_rope_generation_matches_torch(name, prompt, n):
    """Scaled ropes at long positions in the decode loop: llama3 and yarn past their original
    window of 16, dynamic NTK growing past max_position_embeddings 16 during generation
    (torch rescales the new tokens' rotary frequencies each step and keeps the cached keys as
    they were), Phi-3 LongRoPE with the prompt already past the window."""
    ids = tokens((2, prompt), 7)
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    tm = build_torch(CASES[name])  # fresh: dynamic NTK keeps state between calls
    with torch.no_grad():
        ref = tm.generate(
            torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        ).numpy()
    np.testing.assert_array_equal(_generate(name, ids, mask, n), ref, err_msg=name)


def test_longrope_generation_crossing_the_window():
    """Phi-3 LongRoPE, a 12-token prompt generating 8 tokens past original_max_position_embeddings
    16: either refused (NotImplementedError naming the field) or equal to greedy decoding by full
    torch forwards (each step re-reads the whole sequence, as HF's generate does from the switch
    on in transformers 5; 4.57's generate drops the cache but then feeds only the last token, so
    it disagrees with its own forward and is no reference). Keeping the keys cached with the
    short factors, as a plain decode loop would, fails at the 8th token."""
    name, n = "phi3_longrope", 8
    ids = tokens((2, 12), 7)
    seq = ids
    tm = torch_model(name)
    for _ in range(n):
        mask = np.ones_like(seq)
        mask[0, :2] = 0
        logits = torch_logits(tm, seq, mask, np.maximum(np.cumsum(mask, -1) - 1, 0))
        seq = np.concatenate([seq, logits[:, -1].argmax(-1)[:, None].astype(seq.dtype)], axis=1)
    mask = np.ones_like(ids)
    mask[0, :2] = 0
    try:
        ours = _generate(name, ids, mask, n)
    except NotImplementedError as err:  # refusing is allowed; silently keeping short-factor keys is not
        assert "original_max_position_embeddings" in str(err), err
        return
    np.testing.assert_array_equal(ours, seq)
