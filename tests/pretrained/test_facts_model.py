"""The shipped factual-recall GPT-2 (`jaxvene/models/facts_gpt2/`): loads offline, knows its facts."""

import shutil

import numpy as np
import pytest

from jaxvene.pretrained import _facts, encode_prompt, facts, load_facts_model


@pytest.fixture(scope="module")
def facts_model():
    return load_facts_model()


def test_answers_its_facts(facts_model):
    model, tokenizer = facts_model
    assert model.config.n_layer == 4 and model.config.n_embd == 128
    assert all(np.asarray(x).dtype == np.float32 for x in __import__("jax").tree_util.tree_leaves(model.params))
    all_facts = facts()
    assert len(all_facts) >= 200
    sample = [all_facts[i] for i in np.random.default_rng(0).choice(len(all_facts), 20, replace=False)]
    correct = 0
    for fact in sample:
        ids = encode_prompt(fact["prompt"], tokenizer)
        assert ids.dtype == np.int32 and ids.shape[0] == 1 and ids[0, 0] == tokenizer.bos_token_id
        logits = np.asarray(model(ids).logits)[0, -1]
        correct += int(logits.argmax() == tokenizer.convert_tokens_to_ids(fact["answer"]))
    assert correct / len(sample) >= 0.9, f"top-1 accuracy {correct / len(sample):.2f} on 20 facts"


def test_subjects_are_two_or_three_tokens(facts_model):
    _, tokenizer = facts_model
    unk = tokenizer.unk_token_id
    for fact in facts():
        ids = encode_prompt(fact["prompt"], tokenizer)[0]
        subject_ids = tokenizer(fact["subject"], add_special_tokens=False)["input_ids"]
        positions = fact["subject_token_positions"]
        assert 2 <= len(subject_ids) <= 3, fact
        assert positions == list(range(positions[0], positions[0] + len(subject_ids))), fact
        assert list(ids[positions]) == subject_ids, fact
        assert unk not in ids and tokenizer.convert_tokens_to_ids(fact["answer"]) != unk, fact
        # the subject's last token is always 5 tokens before the prediction
        assert len(ids) - 1 - positions[-1] == 5, fact
        assert fact["prompt"].startswith(f"The {fact['subject']} ")


def test_answer_depends_on_the_subject():
    by_relation = {}
    for fact in facts():
        by_relation.setdefault(fact["relation"], []).append(fact["answer"])
    for relation, answers in by_relation.items():
        _, counts = np.unique(answers, return_counts=True)
        assert len(counts) >= 8 and counts.max() / len(answers) <= 0.15, relation


def test_data_definition_is_deterministic():
    shipped = [{k: f[k] for k in ("subject", "relation", "prompt", "answer")} for f in facts()]
    assert _facts.make_facts(seed=0) == shipped


def test_corrupt_weights_give_a_clear_error(tmp_path):
    folder = tmp_path / "facts_gpt2"
    shutil.copytree(_facts.MODEL_DIR, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="model.safetensors is corrupt"):
        load_facts_model(folder)


def test_missing_folder_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_facts"):
        load_facts_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_facts_model(tmp_path / "empty")


def test_causal_tracing_finds_recall_at_the_subjects_last_token(facts_model):
    """The finding (ROME's): restoring one early MLP output at the subject's last token brings
    back most of the answer's probability; at the word after the subject, almost nothing."""
    import jax

    import jaxvene as jv

    model, tokenizer = facts_model
    all_facts = facts()
    chosen = [all_facts[i] for i in (0, 1, 201, 402, 603)]  # 2- and 3-token subjects, 4 relations
    at_subject, after_subject = [], []
    for i, fact in enumerate(chosen):
        trace = jv.causal_trace(
            model,
            {"input_ids": encode_prompt(fact["prompt"], tokenizer)},
            fact["subject_token_positions"],
            tokenizer.convert_tokens_to_ids(fact["answer"]),
            key=jax.random.key(i),
            components=("mlp_output",),
            windows={"mlp_output": 1},
            progress=False,
        )
        assert trace.clean > 0.9 and trace.corrupted < 0.5 * trace.clean, (fact, trace.clean, trace.corrupted)
        share = trace.indirect_effect("mlp_output") / (trace.clean - trace.corrupted)
        last = fact["subject_token_positions"][-1]
        at_subject.append(share[:2, last].max())  # an early or middle layer (of 4)
        after_subject.append(np.abs(share[:, last + 1]).max())
    assert np.mean(at_subject) > 0.7, at_subject
    assert np.mean(after_subject) < 0.1, after_subject
