"""CausalModel against hand computations (pyvene's A, B -> C test and hierarchical equality)."""

import numpy as np
import pytest

import jaxvene as jv
from jaxvene._causal import stack_dataset


def and_model(seed=0):
    return jv.CausalModel(["A", "B", "C"], {"A": [0, 1], "B": [0, 1], "C": [0, 1]},
                          {"A": [], "B": [], "C": ["A", "B"]},
                          {"A": lambda: 0, "B": lambda: 0, "C": lambda a, b: int(a and b)}, seed=seed)


def test_structure_and_forward():
    m = and_model()
    assert m.inputs == ["A", "B"] and m.outputs == ["C"]
    assert m.timesteps == {"A": 0, "B": 0, "C": 1}
    assert m.equiv_classes["C"][1] == [{"A": 1, "B": 1}]
    assert len(m.equiv_classes["C"][0]) == 3
    for a in (0, 1):
        for b in (0, 1):
            assert m.run_forward({"A": a, "B": b})["C"] == (a and b)
    assert m.run_forward({"A": 0, "B": 0, "C": 1})["C"] == 1  # clamping a non-input
    assert m.run_interchange({"A": 1, "B": 0}, {"B": {"A": 0, "B": 1}})["C"] == 1


def hierarchical_equality(seed=0):
    values = list(range(4))
    return jv.CausalModel(
        ["W", "X", "Y", "Z", "WX", "YZ", "O"],
        {"W": values, "X": values, "Y": values, "Z": values, "WX": [0, 1], "YZ": [0, 1], "O": [0, 1]},
        {"W": [], "X": [], "Y": [], "Z": [], "WX": ["W", "X"], "YZ": ["Y", "Z"], "O": ["WX", "YZ"]},
        {"W": lambda: 0, "X": lambda: 0, "Y": lambda: 0, "Z": lambda: 0,
         "WX": lambda w, x: int(w == x), "YZ": lambda y, z: int(y == z), "O": lambda a, b: int(a == b)},
        seed=seed)


def test_hierarchical_equality_interchanges_by_hand():
    m = hierarchical_equality()
    base = {"W": 1, "X": 1, "Y": 2, "Z": 3}  # WX = 1, YZ = 0 -> O = 0
    same = {"W": 0, "X": 0, "Y": 0, "Z": 0}   # WX = 1
    diff = {"W": 0, "X": 1, "Y": 0, "Z": 0}   # WX = 0
    assert m.run_forward(base)["O"] == 0
    assert m.run_interchange(base, {"WX": same})["O"] == 0
    assert m.run_interchange(base, {"WX": diff})["O"] == 1
    assert m.run_interchange(base, {"YZ": same})["O"] == 1
    assert m.run_interchange(base, {"WX": diff, "YZ": same})["O"] == 0


def test_sampling_is_balanced_and_reproducible():
    m = hierarchical_equality(seed=3)
    outs = [m.run_forward(m.sample_input_tree_balanced())["O"] for _ in range(400)]
    assert 0.4 < np.mean(outs) < 0.6
    a = hierarchical_equality(seed=7).generate_counterfactual_dataset(8, lambda iv: 0, 4)
    b = hierarchical_equality(seed=7).generate_counterfactual_dataset(8, lambda iv: 0, 4)
    c = hierarchical_equality(seed=8).generate_counterfactual_dataset(8, lambda iv: 0, 4)
    sa, sb, sc = stack_dataset(a), stack_dataset(b), stack_dataset(c)
    assert sa["input_ids"].shape == (8, 4) and sa["source_input_ids"].shape == (8, 2, 4)
    np.testing.assert_array_equal(sa["source_input_ids"], sb["source_input_ids"])
    assert not np.array_equal(sa["input_ids"], sc["input_ids"])


def test_counterfactual_labels_match_run_interchange():
    m = hierarchical_equality(seed=1)
    data = m.generate_counterfactual_dataset(20, lambda iv: len(iv), 5, return_tensors=False)
    assert len(data) == 20
    for ex in data:
        expected = m.run_interchange(ex["base"], ex["sources"])["O"]
        assert ex["labels"][0] == expected
        for var, source in ex["sources"].items():  # the source carries the sampled value
            assert var in ("WX", "YZ")


def test_graph_errors():
    with pytest.raises(ValueError, match="unknown parent 'Q'"):
        jv.CausalModel(["A"], {"A": [0]}, {"A": ["Q"]}, {"A": lambda q: q})
    with pytest.raises(ValueError, match="cycle"):
        jv.CausalModel(["A", "B"], {"A": [0], "B": [0]}, {"A": ["B"], "B": ["A"]},
                       {"A": lambda b: b, "B": lambda a: a})
    with pytest.raises(ValueError, match="no intermediate variables"):
        and_model().sample_intervention()
