"""The worked examples and the demo run and reproduce their findings.

Each example runs its default argument path (what `python examples/<name>.py` runs), with the
default sizes too where they cost little: a size-dependent bug (8 pairs of prompts of two
lengths) once hid behind a reduced run. Only the DAS training runs reduced (fewer examples and
epochs), and output folders are temporary."""

import importlib.util
import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_das_on_hierarchical_equality_finds_the_variables():
    """From scratch: the MLP is trained too."""
    example = _load("das_hierarchical_equality")
    result = example.run(
        n_train=200_000, mlp_epochs=3, das_train=20_000, das_epochs=8, progress=False, from_scratch=True
    )
    assert result["task_accuracy"] > 0.95
    assert result["trainable_parameters"] == 256  # one 16 x 16 rotation shared by both sites
    assert result["iia"] > 0.85, result  # chance is 0.5


def test_das_on_the_shipped_mlp():
    """The default path (the shipped MLP), on a sixth of the training data."""
    example = _load("das_hierarchical_equality")
    result = example.run(das_train=20_000, das_epochs=8, progress=False)
    assert result["task_accuracy"] > 0.99
    assert result["iia"] > 0.85, result


def test_causal_tracing_example(tmp_path):
    mean = _load("causal_tracing").main(out=str(tmp_path))  # 24 facts: 2- and 3-token subjects, 4 relations
    assert mean["last subject token"][0] > 0.7, mean
    assert np.abs(mean["first word after subject"]).max() < 0.1, mean
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "causal_trace_attention_output.png",
        "causal_trace_block_output.png",
        "causal_trace_mlp_output.png",
    ]


def test_activation_patching_example():
    example = _load("activation_patching")
    result = example.main()  # 8 pairs (the default) crashed when some prompts were longer
    assert len(result["pairs"]) == 8
    mean, (clean, corrupted) = result["mean"], result["pairs"][0]
    last = clean["subject_token_positions"][-1]
    assert mean[0, last] > 0.6 and abs(mean[0, last + 1]) < 0.1, mean
    assert mean[-1, -1] > 0.99  # the last layer's last token carries the whole answer
    # one cell through pyvene's interface equals the compiled sweep's cell
    model, tokenizer = example.load_facts_model()
    diff, top = example.one_cell_with_pyvene_interface(model, tokenizer, clean, corrupted, 0, last)
    table = example.normalised_table(model, tokenizer, clean, corrupted)
    ids_c, ids_x = (example.encode_prompt(f["prompt"], tokenizer) for f in (clean, corrupted))
    good, bad = (tokenizer.convert_tokens_to_ids(f["answer"]) for f in (clean, corrupted))
    lc, lx = (np.asarray(model(i).logits)[0, -1] for i in (ids_c, ids_x))
    clean_ld, corrupted_ld = lc[good] - lc[bad], lx[good] - lx[bad]
    np.testing.assert_allclose((diff - corrupted_ld) / (clean_ld - corrupted_ld), table[0, last], atol=1e-4)


def test_steering_example():
    rate = _load("steering_generation").main()
    assert rate >= 0.9, rate


def test_compiled_sweep_example():
    example = _load("compiled_sweep")
    result = example.main()
    clean, corrupted, good, bad = result["inputs"]
    assert len(clean) == 16
    model, _ = example.load_facts_model()
    # a cell of the sweep equals the same patch through pyvene's interface
    import jaxvene as jv

    patcher = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "head_attention_value_output", "unit": "h.pos"}]), model
    )
    _, out = patcher(
        {"input_ids": corrupted}, [{"input_ids": clean}], {"sources->base": example.cell_locations(3, 8, len(clean))}
    )
    logits = np.asarray(out.logits)[:, -1]
    rows = np.arange(len(clean))
    expected = np.mean(logits[rows, good] - logits[rows, bad])
    np.testing.assert_allclose(result["table"][1, 3, 8], expected, atol=1e-4)


def test_demo(tmp_path):
    from jaxvene.apps.demo import run_demo

    mean = run_demo(str(tmp_path), n_facts=4)
    assert mean["last subject token"][0] > 0.7
    assert len(list(tmp_path.glob("causal_trace_*.png"))) == 3
