"""The worked examples run (reduced) and reproduce their findings."""

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_das_on_hierarchical_equality_finds_the_variables():
    example = _load("das_hierarchical_equality")
    result = example.run(n_train=200_000, mlp_epochs=3, das_train=20_000, das_epochs=8, progress=False)
    assert result["task_accuracy"] > 0.95
    assert result["trainable_parameters"] == 256  # one 16 x 16 rotation shared by both sites
    assert result["iia"] > 0.85, result  # chance is 0.5
