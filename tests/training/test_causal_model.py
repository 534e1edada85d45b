"""CausalModel against hand computations: pyvene's A, B -> C model (C = A and B) and the
hierarchical-equality model of pyvene's DAS tutorial (O = (W == X) == (Y == Z))."""

import itertools

import numpy as np
import pytest

from jaxvene.training._causal_model import CausalModel, stack_dataset


def and_model(seed=0):
    """pyvene's unit-test model: inputs A, B default to True; C = A and B."""
    return CausalModel(
        ["A", "B", "C"],
        {v: [False, True] for v in "ABC"},
        {"A": [], "B": [], "C": ["A", "B"]},
        {"A": lambda: True, "B": lambda: True, "C": lambda a, b: a and b},
        seed=seed,
    )


ENTITIES = [0, 1, 2, 3]


def equality_model(seed=0):
    return CausalModel(
        ["W", "X", "Y", "Z", "WX", "YZ", "O"],
        {
            "W": ENTITIES,
            "X": ENTITIES,
            "Y": ENTITIES,
            "Z": ENTITIES,
            "WX": [False, True],
            "YZ": [False, True],
            "O": [False, True],
        },
        {"W": [], "X": [], "Y": [], "Z": [], "WX": ["W", "X"], "YZ": ["Y", "Z"], "O": ["WX", "YZ"]},
        {
            "W": lambda: 0,
            "X": lambda: 0,
            "Y": lambda: 0,
            "Z": lambda: 0,
            "WX": lambda w, x: w == x,
            "YZ": lambda y, z: y == z,
            "O": lambda a, b: a == b,
        },
        seed=seed,
    )


# ---------------------------------------------------------------- structure and forward runs
def test_structure_of_and_model():
    m = and_model()
    assert m.inputs == ["A", "B"] and m.outputs == ["C"]
    assert m.children == {"A": ["C"], "B": ["C"], "C": []}
    assert m.timesteps == {"A": 0, "B": 0, "C": 1}
    assert m.equiv_classes == {
        "C": {
            False: [{"A": False, "B": False}, {"A": False, "B": True}, {"A": True, "B": False}],
            True: [{"A": True, "B": True}],
        }
    }
    assert m.generate_equiv_classes() is m.equiv_classes


def test_order_is_by_name_then_timestep_and_user_lists_are_untouched():
    names = ["C", "B", "A"]
    m = CausalModel(
        names,
        {v: [0, 1] for v in names},
        {"A": [], "B": [], "C": ["B", "A"]},
        {"A": lambda: 0, "B": lambda: 1, "C": lambda b, a: 10 * b + a},
        equiv_classes={"C": {}},
    )
    assert names == ["C", "B", "A"]
    assert m.variables == ["A", "B", "C"] and m.inputs == ["A", "B"]
    np.testing.assert_array_equal(m.input_to_tensor({"A": 3, "B": 4}), [3.0, 4.0])
    assert m.run_forward()["C"] == 10  # arguments follow parents["C"] = ["B", "A"]


def test_timesteps_longest_path_and_outputs_last():
    # A -> M1 -> M2 -> O1 and A -> O2: O2 is moved to the last step, as in pyvene
    m = CausalModel(
        ["A", "M1", "M2", "O1", "O2"],
        {v: [0, 1] for v in ["A", "M1", "M2", "O1", "O2"]},
        {"A": [], "M1": ["A"], "M2": ["M1", "A"], "O1": ["M2"], "O2": ["A"]},
        {"A": lambda: 0, "M1": lambda a: a, "M2": lambda m, a: m, "O1": lambda m: m, "O2": lambda a: a},
    )
    assert m.timesteps == {"A": 0, "M1": 1, "M2": 2, "O1": 3, "O2": 3}
    assert m.outputs == ["O1", "O2"] and m.intermediates == ["M1", "M2"]


def test_run_forward_all_inputs_defaults_and_clamping():
    m = and_model()
    assert m.run_forward() == {"A": True, "B": True, "C": True}
    for a, b in itertools.product([False, True], repeat=2):
        assert m.run_forward({"A": a, "B": b}) == {"A": a, "B": b, "C": a and b}
    assert m.run_forward({"A": False, "B": False, "C": True}) == {"A": False, "B": False, "C": True}
    assert m.run_forward({"A": False})["C"] is False  # B keeps its default True
    with pytest.raises(ValueError, match="unknown variable 'D'"):
        m.run_forward({"D": True})


def test_run_interchange_labels():
    m = and_model()
    base, source = {"A": True, "B": False}, {"A": False, "B": True}
    assert m.run_forward(base)["C"] is False and m.run_forward(source)["C"] is False
    assert m.run_interchange(base, {"B": source})["C"] is True  # B from source: True and True
    assert m.run_interchange(base, {"A": source})["C"] is False  # A from source: False and False
    base, source = {"A": False, "B": False}, {"A": True, "B": True}
    assert m.run_interchange(base, {"B": source})["C"] is False
    assert m.run_interchange(base, {"C": source})["C"] is True  # the output itself interchanged
    assert m.run_interchange(base, {"A": source, "B": source})["C"] is True


def test_hierarchical_equality_interchange_by_hand():
    m = equality_model()
    assert m.inputs == ["W", "X", "Y", "Z"] and m.outputs == ["O"] and m.intermediates == ["WX", "YZ"]
    assert m.timesteps == {"W": 0, "X": 0, "Y": 0, "Z": 0, "WX": 1, "YZ": 1, "O": 2}
    wx_true, wx_false = {"W": 3, "X": 3, "Y": 0, "Z": 1}, {"W": 2, "X": 0, "Y": 1, "Z": 1}
    yz_true = {"W": 0, "X": 1, "Y": 2, "Z": 2}
    # (base, sources, expected O), each worked out by hand
    cases = [
        ({"W": 1, "X": 1, "Y": 2, "Z": 0}, {}, False),  # WX=T, YZ=F
        ({"W": 1, "X": 1, "Y": 2, "Z": 0}, {"WX": wx_false}, True),  # F == F
        ({"W": 1, "X": 1, "Y": 2, "Z": 0}, {"WX": wx_true}, False),  # T != F
        ({"W": 0, "X": 1, "Y": 2, "Z": 2}, {"WX": wx_true}, True),  # T == T
        ({"W": 0, "X": 1, "Y": 2, "Z": 2}, {"WX": wx_false}, False),  # F != T
        ({"W": 1, "X": 1, "Y": 1, "Z": 1}, {"WX": wx_false}, False),  # F != T
        ({"W": 0, "X": 1, "Y": 0, "Z": 2}, {"WX": wx_false}, True),  # F == F
        ({"W": 0, "X": 1, "Y": 0, "Z": 2}, {"WX": yz_true}, True),  # source's WX is F (0 != 1)
        ({"W": 0, "X": 1, "Y": 0, "Z": 2}, {"YZ": yz_true}, False),  # F != T
        ({"W": 0, "X": 1, "Y": 0, "Z": 2}, {"WX": wx_true, "YZ": yz_true}, True),
        ({"W": 3, "X": 3, "Y": 3, "Z": 3}, {"WX": wx_false, "YZ": wx_false}, False),  # F != T (YZ of wx_false)
    ]
    for base, sources, expected in cases:
        out = m.run_interchange(base, sources)
        assert out["O"] is expected, (base, sources)
        if "WX" in sources:
            assert out["WX"] == (sources["WX"]["W"] == sources["WX"]["X"])
        assert out["W"] == base["W"] and out["Z"] == base["Z"]  # inputs stay the base's


# ---------------------------------------------------------------- sampling
def test_tree_balanced_sampling_is_balanced_and_hits_requested_values():
    m = and_model(seed=1)
    tree = [m.run_forward(m.sample_input_tree_balanced())["C"] for _ in range(2000)]
    uniform = [m.run_forward(m.sample_input())["C"] for _ in range(2000)]
    assert 0.45 < np.mean(tree) < 0.55  # uniform over C's two values
    assert 0.20 < np.mean(uniform) < 0.30  # uniform inputs: C is True 1/4 of the time
    e = equality_model(seed=2)
    outs = [e.run_forward(e.sample_input_tree_balanced())["O"] for _ in range(2000)]
    assert 0.45 < np.mean(outs) < 0.55  # uniform inputs would give 10/16
    for value in (False, True):
        for _ in range(50):
            src = e.sample_input_tree_balanced(output_var="WX", output_var_value=value)
            assert set(src) == {"W", "X", "Y", "Z"} and (src["W"] == src["X"]) is value
    with pytest.raises(ValueError, match="never takes the value 7"):
        e.sample_input_tree_balanced(output_var="WX", output_var_value=7)


def test_tree_balanced_on_a_diamond_still_hits_the_value():
    # A feeds both M and N; O = M xor N, so O is always False: only False can be requested
    m = CausalModel(
        ["A", "B", "M", "N", "O"],
        {v: [False, True] for v in "ABMNO"},
        {"A": [], "B": [], "M": ["A", "B"], "N": ["A"], "O": ["M", "N"]},
        {"A": lambda: False, "B": lambda: False, "M": lambda a, b: a or b, "N": lambda a: a, "O": lambda x, y: x != y},
        seed=0,
    )
    for _ in range(50):
        s = m.sample_input_tree_balanced(output_var_value=True)
        assert m.run_forward(s)["O"] is True


def test_sample_intervention():
    e = equality_model(seed=3)
    seen = set()
    for _ in range(300):
        iv = e.sample_intervention()
        assert iv and set(iv) <= {"WX", "YZ"} and all(isinstance(v, bool) for v in iv.values())
        seen.add(tuple(sorted(iv)))
    assert seen == {("WX",), ("YZ",), ("WX", "YZ")}
    only_both = e.sample_intervention(mandatory=lambda iv: len(iv) == 2)
    assert set(only_both) == {"WX", "YZ"}
    with pytest.raises(ValueError, match="no intermediate variables"):
        and_model().sample_intervention()


def test_sample_input_mandatory():
    m = and_model()
    for _ in range(20):
        assert m.run_forward(m.sample_input(mandatory=lambda s: s["C"]))["C"] is True
    with pytest.raises(RuntimeError, match="mandatory"):
        m.sample_input(mandatory=lambda s: False)


# ---------------------------------------------------------------- datasets
def test_factual_dataset_fields_and_shapes():
    m = and_model()
    data = m.generate_factual_dataset(4, sampler=lambda: {"A": False, "B": False}, return_tensors=False)
    assert len(data) == 4 and data[0]["input_ids"] == {"A": False, "B": False}
    assert data[0]["labels"]["C"] is False
    data = m.generate_factual_dataset(4, sampler=lambda: {"A": True, "B": True})
    batch = stack_dataset(data)
    assert batch["input_ids"].shape == (4, 2) and batch["labels"].shape == (4, 1)
    assert batch["input_ids"].dtype == np.float32
    np.testing.assert_array_equal(batch["input_ids"][0], [1.0, 1.0])
    np.testing.assert_array_equal(batch["labels"][:, 0], [1.0] * 4)
    # default sampler, labels by hand; filter sees the input
    data = m.generate_factual_dataset(50, filter=lambda inp: inp["A"], seed=0)
    batch = stack_dataset(data)
    assert (batch["input_ids"][:, 0] == 1).all()
    np.testing.assert_array_equal(batch["labels"][:, 0], batch["input_ids"][:, 0] * batch["input_ids"][:, 1])


def test_counterfactual_dataset_fixed_samplers():
    m = and_model()

    def sampler(output_var=None, output_var_value=None):
        return {"A": True, "B": True} if output_var else {"A": True, "B": False}

    data = m.generate_counterfactual_dataset(
        4, lambda iv: 0, 1, sampler=sampler, intervention_sampler=lambda: {"B": True}, return_tensors=False
    )
    assert len(data) == 4
    ex = data[0]
    assert ex["input_ids"] == {"A": True, "B": False} and ex["source_input_ids"][0]["B"] is True
    assert ex["intervention_id"] == [0] and ex["intervention"] == {"B": True}
    assert ex["base_labels"]["C"] is False and ex["labels"]["C"] is True
    batch = stack_dataset(
        m.generate_counterfactual_dataset(4, lambda iv: 5, 2, sampler=sampler, intervention_sampler=lambda: {"B": True})
    )
    np.testing.assert_array_equal(batch["input_ids"], [[1, 0]] * 4)
    np.testing.assert_array_equal(batch["source_input_ids"], [[[1, 1]]] * 4)  # one source, no padding
    np.testing.assert_array_equal(batch["base_labels"], [[0]] * 4)
    np.testing.assert_array_equal(batch["labels"], [[1]] * 4)
    np.testing.assert_array_equal(batch["intervention_id"], [[5]] * 4)


def _expected_o(base, intervention):
    wx = intervention.get("WX", base["W"] == base["X"])
    yz = intervention.get("YZ", base["Y"] == base["Z"])
    return wx == yz


def test_counterfactual_dataset_hierarchical_equality():
    ids = {("WX",): 0, ("YZ",): 1, ("WX", "YZ"): 2}

    def intervention_id(iv):
        return ids[tuple(sorted(iv))]

    m = equality_model()
    dicts = m.generate_counterfactual_dataset(30, intervention_id, 4, return_tensors=False, seed=11)
    assert len(dicts) == 32  # rounded up to a multiple of batch_size, as pyvene
    for start in range(0, 32, 4):  # each batch shares one intervention
        assert all(d["intervention"] == dicts[start]["intervention"] for d in dicts[start : start + 4])
    for d in dicts:
        iv, base = d["intervention"], d["input_ids"]
        intervened = [v for v in ("WX", "YZ") if v in iv]
        assert len(d["source_input_ids"]) == 2
        for var, source in zip(intervened, d["source_input_ids"]):  # sources packed in variable order
            pair = ("W", "X") if var == "WX" else ("Y", "Z")
            assert (source[pair[0]] == source[pair[1]]) is iv[var]  # the source carries the sampled value
        assert d["source_input_ids"][len(intervened) :] == [{}] * (2 - len(intervened))
        assert d["labels"]["O"] is _expected_o(base, iv)
        assert d["base_labels"]["O"] is ((base["W"] == base["X"]) == (base["Y"] == base["Z"]))
        assert d["intervention_id"] == [intervention_id(iv)]
    # the tensor form draws the same examples from the same seed
    batch = stack_dataset(m.generate_counterfactual_dataset(30, intervention_id, 4, seed=11))
    assert batch["input_ids"].shape == (32, 4) and batch["source_input_ids"].shape == (32, 2, 4)
    assert batch["labels"].shape == batch["base_labels"].shape == batch["intervention_id"].shape == (32, 1)
    for i, d in enumerate(dicts):
        np.testing.assert_array_equal(batch["input_ids"][i], [d["input_ids"][v] for v in "WXYZ"])
        for j in range(2):
            src = d["source_input_ids"][j]
            np.testing.assert_array_equal(batch["source_input_ids"][i, j], [src[v] for v in "WXYZ"] if src else 0)
        assert batch["labels"][i, 0] == float(d["labels"]["O"])
        assert batch["intervention_id"][i, 0] == d["intervention_id"][0]
    assert set(batch["intervention_id"][:, 0]) == {0, 1, 2}


def test_counterfactual_dataset_custom_functions_and_filter():
    m = equality_model(seed=4)
    data = m.generate_counterfactual_dataset(
        6,
        lambda iv: 0,
        3,
        filter=lambda iv: list(iv) == ["WX"],
        input_function=lambda s: np.array([s["W"], s["X"]], np.float32),
        output_function=lambda s: np.array([s["O"], s["WX"]], np.float32),
    )
    batch = stack_dataset(data)
    assert batch["input_ids"].shape == (6, 2) and batch["source_input_ids"].shape == (6, 2, 2)
    assert (batch["source_input_ids"][:, 1] == 0).all()  # only WX intervened: one zero row
    np.testing.assert_array_equal(
        batch["labels"][:, 1],  # WX of the counterfactual is the source's
        batch["source_input_ids"][:, 0, 0] == batch["source_input_ids"][:, 0, 1],
    )


def test_reproducibility():
    def datasets(model, **kw):
        return (
            stack_dataset(model.generate_factual_dataset(16, **kw)),
            stack_dataset(model.generate_counterfactual_dataset(16, lambda iv: len(iv), 4, **kw)),
        )

    a, b, c = datasets(equality_model(seed=5)), datasets(equality_model(seed=5)), datasets(equality_model(seed=6))
    for x, y, z in zip(a, b, c):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
        assert not np.array_equal(x["input_ids"], z["input_ids"])
    # seed= is independent of the model's own generator state
    m1, m2 = equality_model(seed=0), equality_model(seed=99)
    m2.sample_input()
    d1, d2 = datasets(m1, seed=7), datasets(m2, seed=7)
    for x, y in zip(d1, d2):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(d1[1]["source_input_ids"], datasets(m1, seed=8)[1]["source_input_ids"])
    # rng= and seed= agree; the model's own sampler methods passed in follow the dataset's seed
    g = equality_model(seed=0)
    r1 = g.generate_counterfactual_dataset(8, lambda iv: 0, 2, rng=np.random.default_rng(3))
    r2 = g.generate_counterfactual_dataset(
        8, lambda iv: 0, 2, seed=3, sampler=g.sample_input_tree_balanced, intervention_sampler=g.sample_intervention
    )
    for k in r1[0]:
        np.testing.assert_array_equal(stack_dataset(r1)[k], stack_dataset(r2)[k])
    assert and_model(seed=3).sample_input_tree_balanced(seed=1) == and_model(seed=4).sample_input_tree_balanced(seed=1)
    with pytest.raises(ValueError, match="not both"):
        g.sample_input(seed=1, rng=np.random.default_rng(1))


def test_stack_dataset_errors():
    m = and_model()
    with pytest.raises(TypeError, match="return_tensors=True"):
        stack_dataset(m.generate_factual_dataset(2, return_tensors=False))
    with pytest.raises(ValueError, match="no examples"):
        stack_dataset([])


# ---------------------------------------------------------------- live paths
def test_find_live_paths_by_hand():
    m = and_model()
    assert m.find_live_paths({"A": True, "B": True}) == {2: [["A", "C"], ["B", "C"]], 3: []}
    assert m.find_live_paths({"A": True, "B": False}) == {2: [["B", "C"]], 3: []}  # only B can change C
    assert m.find_live_paths({"A": False, "B": False}) == {2: []}
    assert m.get_specific_path_filter("B", "C")({"A": True, "B": False, "C": False})
    assert not m.get_specific_path_filter("A", "C")({"A": True, "B": False, "C": False})
    assert m.get_path_maxlen_filter([2])({"A": True, "B": True})
    assert not m.get_path_maxlen_filter([2])({"A": False, "B": False})
    assert m.get_partial_filter({"A": True})({"A": True, "B": False}) is True


# ---------------------------------------------------------------- validation and drawing
def _two(**overrides):
    spec = {
        "variables": ["A", "B"],
        "values": {"A": [0, 1], "B": [0, 1]},
        "parents": {"A": [], "B": ["A"]},
        "functions": {"A": lambda: 0, "B": lambda a: a},
    }
    spec.update(overrides)
    return CausalModel(**spec)


def test_graph_validation_names_the_variable():
    assert _two().outputs == ["B"]
    with pytest.raises(ValueError, match="'B' has an unknown parent 'Q'"):
        _two(parents={"A": [], "B": ["Q"]})
    with pytest.raises(ValueError, match="cycle through variable"):
        _two(parents={"A": ["B"], "B": ["A"]}, functions={"A": lambda b: b, "B": lambda a: a})
    with pytest.raises(ValueError, match="cycle through variable 'A'"):
        _two(parents={"A": ["A"], "B": ["A"]}, functions={"A": lambda a: a, "B": lambda a: a})
    with pytest.raises(ValueError, match="'B' has no values"):
        _two(values={"A": [0, 1]})
    with pytest.raises(ValueError, match="'B' has no values"):
        _two(values={"A": [0, 1], "B": []})
    with pytest.raises(ValueError, match="'B' has no function"):
        _two(functions={"A": lambda: 0})
    with pytest.raises(ValueError, match="'A' has no entry in `parents`"):
        _two(parents={"B": ["A"]})
    with pytest.raises(ValueError, match="'A' is listed twice"):
        _two(variables=["A", "B", "A"])
    with pytest.raises(ValueError, match="'B' has timestep 0 but its parent 'A' has 0"):
        _two(timesteps={"A": 0, "B": 0})
    with pytest.raises(ValueError, match="'B' has no timestep"):
        _two(timesteps={"A": 0})
    assert _two(timesteps={"A": 0, "B": 5}).timesteps == {"A": 0, "B": 5}
    bad = _two(values={"A": [0, 1], "B": [0]})  # B = A can be 1, which is not a declared value
    with pytest.raises(ValueError, match="'B' computes 1"):
        bad.generate_equiv_classes()


def test_print_structure_draws_without_networkx():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = equality_model()
    assert m.pos["W"] == (0, 0) and m.pos["Z"] == (3, 0) and m.pos["O"] == (0, 2)
    fig = m.print_structure(show=False)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"W", "WX", "O"} <= texts
    fig2 = m.print_setting(m.run_forward({"W": 1, "X": 1, "Y": 0, "Z": 2}), show=False)
    assert "O: False" in {t.get_text() for t in fig2.axes[0].texts}
    plt.close(fig)
    plt.close(fig2)
