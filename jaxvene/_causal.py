"""`CausalModel`: a high-level causal model for interchange intervention training (IIT) and DAS.

A DAG of discrete variables with parents and functions (pyvene's names and meaning). It
computes outputs under interventions and generates factual and counterfactual datasets: for an
interchange of variable V, the label is what the causal model outputs on the base input when
V takes the value it has on the source input.

Differences from pyvene: sampling is seeded and reproducible (the model holds a
`numpy.random.Generator`; every sampler takes `rng=`), arrays are NumPy (no torch, no device),
the counterfactual sampler defaults to :meth:`sample_input_tree_balanced` (pyvene's default
crashes), a model with no intermediate variable raises instead of looping forever, and the
graph is checked when the model is built.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

__all__ = ["CausalModel", "stack_dataset"]


class CausalModel:
    """Variables, their possible values, parents and functions (inputs have no parents).

    >>> m = CausalModel(["A", "B", "C"], {"A": [0, 1], "B": [0, 1], "C": [0, 1]},
    ...                 {"A": [], "B": [], "C": ["A", "B"]},
    ...                 {"A": lambda: 0, "B": lambda: 0, "C": lambda a, b: a and b})
    >>> m.run_forward({"A": 1, "B": 1})["C"]
    1
    """

    def __init__(self, variables: Sequence[str], values: Mapping, parents: Mapping, functions: Mapping,
                 timesteps: Optional[Mapping] = None, equiv_classes: Optional[Mapping] = None,
                 pos: Optional[Mapping] = None, seed: int = 0):
        self.variables = list(variables)
        self.values, self.parents, self.functions = dict(values), dict(parents), dict(functions)
        for v in self.variables:
            for what, table in (("values", self.values), ("parents", self.parents), ("a function", self.functions)):
                if v not in table:
                    raise ValueError(f"variable {v!r} has no {what}")
            for p in self.parents[v]:
                if p not in self.variables:
                    raise ValueError(f"variable {v!r} has an unknown parent {p!r}")
        self.children = {v: [c for c in self.variables if v in self.parents[c]] for v in self.variables}
        self.inputs = [v for v in self.variables if not self.parents[v]]
        self.outputs = [v for v in self.variables if not self.children[v]]
        self.timesteps = dict(timesteps) if timesteps is not None else self._depths()
        self.order = sorted(self.variables, key=lambda v: self.timesteps[v])
        self.pos = dict(pos or {})
        self.rng = np.random.default_rng(seed)
        self.equiv_classes = dict(equiv_classes) if equiv_classes is not None else self.generate_equiv_classes()

    def _depths(self) -> dict:
        depth, visiting = {}, set()

        def visit(v):
            if v in depth:
                return depth[v]
            if v in visiting:
                raise ValueError(f"the graph has a cycle through {v!r}")
            visiting.add(v)
            depth[v] = 0 if not self.parents[v] else 1 + max(visit(p) for p in self.parents[v])
            visiting.discard(v)
            return depth[v]

        for v in self.variables:
            visit(v)
        last = max(depth.values())
        for v in self.variables:  # outputs are computed last, as in pyvene
            if not self.children[v] and self.parents[v]:
                depth[v] = last
        return depth

    # ---------------------------------------------------------------- computing
    def run_forward(self, intervention: Optional[Mapping] = None) -> dict:
        """Every variable's value; variables in `intervention` (inputs included) are clamped."""
        intervention = dict(intervention or {})
        total = defaultdict(lambda: None)
        for v in self.order:
            if v in intervention:
                total[v] = intervention[v]
            else:
                total[v] = self.functions[v](*[total[p] for p in self.parents[v]])
        return total

    def run_interchange(self, input: Mapping, source_interventions: Mapping) -> dict:
        """The counterfactual: each variable in `source_interventions` takes its value under
        its own source input, on top of `input`."""
        clamp = dict(input)
        for var, source in source_interventions.items():
            clamp[var] = self.run_forward(source)[var]
        return self.run_forward(clamp)

    def generate_equiv_classes(self) -> dict:
        """For each non-input variable: value -> the parent assignments that produce it."""
        classes = {}
        for v in self.variables:
            if not self.parents[v]:
                continue
            table = defaultdict(list)
            for combo in _product([self.values[p] for p in self.parents[v]]):
                table[self.functions[v](*combo)].append(dict(zip(self.parents[v], combo)))
            classes[v] = dict(table)
        return classes

    # ---------------------------------------------------------------- sampling
    def _rng(self, rng):
        return self.rng if rng is None else rng

    def sample_input(self, mandatory: Optional[Callable] = None, rng=None) -> dict:
        """Uniform inputs; with `mandatory(setting) -> bool`, rejection-sampled."""
        rng = self._rng(rng)
        for _ in range(100_000):
            inputs = {v: self.values[v][rng.integers(len(self.values[v]))] for v in self.inputs}
            if mandatory is None or mandatory(self.run_forward(inputs)):
                return inputs
        raise RuntimeError("no input satisfying `mandatory` found in 100000 draws")

    def sample_input_tree_balanced(self, output_var: Optional[str] = None, output_var_value=None, rng=None) -> dict:
        """Inputs with a uniformly drawn value of `output_var` (the output by default), drawn
        down the equivalence classes so labels are balanced."""
        rng = self._rng(rng)
        output_var = output_var or self.outputs[0]
        if output_var_value is None:
            options = list(self.equiv_classes[output_var]) if output_var in self.equiv_classes else self.values[output_var]
            output_var_value = options[rng.integers(len(options))]
        inputs: dict = {}

        def fill(var, value):
            if not self.parents[var]:
                inputs[var] = value
                return
            choices = self.equiv_classes[var][value]
            for parent, parent_value in choices[rng.integers(len(choices))].items():
                fill(parent, parent_value)

        fill(output_var, output_var_value)
        for v in self.inputs:  # inputs not below output_var
            if v not in inputs:
                inputs[v] = self.values[v][rng.integers(len(self.values[v]))]
        return inputs

    def sample_intervention(self, mandatory: Optional[Callable] = None, rng=None) -> dict:
        """A random non-empty set of intermediate variables with random values."""
        rng = self._rng(rng)
        middle = [v for v in self.variables if v not in self.inputs and v not in self.outputs]
        if not middle:
            raise ValueError("this causal model has no intermediate variables to intervene on")
        for _ in range(100_000):
            chosen = [v for v in middle if rng.random() < 0.5]
            if not chosen:
                continue
            intervention = {v: self.values[v][rng.integers(len(self.values[v]))] for v in chosen}
            if mandatory is None or mandatory(intervention):
                return intervention
        raise RuntimeError("no intervention satisfying `mandatory` found")

    # ---------------------------------------------------------------- datasets
    def input_to_tensor(self, setting: Mapping) -> np.ndarray:
        return np.concatenate([np.atleast_1d(np.asarray(setting[v], np.float32)).ravel() for v in self.inputs])

    def output_to_tensor(self, setting: Mapping) -> np.ndarray:
        return np.concatenate([np.atleast_1d(np.asarray(setting[v], np.float32)).ravel() for v in self.outputs])

    def generate_factual_dataset(self, size: int, sampler: Optional[Callable] = None, filter: Optional[Callable] = None,
                                 input_function: Optional[Callable] = None, output_function: Optional[Callable] = None,
                                 return_tensors: bool = True, rng=None) -> list[dict]:
        rng = self._rng(rng)
        sampler = sampler or (lambda: self.sample_input(rng=rng))
        to_in = input_function or self.input_to_tensor
        to_out = output_function or self.output_to_tensor
        data = []
        while len(data) < size:
            inputs = sampler()
            if filter is not None and not filter(inputs):
                continue
            setting = self.run_forward(inputs)
            data.append({"input_ids": to_in(setting), "labels": to_out(setting)} if return_tensors
                        else {"input_ids": inputs, "labels": {v: setting[v] for v in self.outputs}})
        return data

    def generate_counterfactual_dataset(self, size: int, intervention_id: Callable, batch_size: int,
                                        sampler: Optional[Callable] = None,
                                        intervention_sampler: Optional[Callable] = None,
                                        filter: Optional[Callable] = None, input_function: Optional[Callable] = None,
                                        output_function: Optional[Callable] = None, return_tensors: bool = True,
                                        rng=None) -> list[dict]:
        """Batches of `batch_size` examples sharing one sampled intervention (variable ->
        value). Each example: `input_ids` (base), `source_input_ids` `(n_intermediate, d)` (one
        source per intervened variable, zero rows for the others), `base_labels`, `labels` (the
        counterfactual), `intervention_id`. `size` is rounded up to a multiple of `batch_size`."""
        rng = self._rng(rng)
        sampler = sampler or (lambda **kw: self.sample_input_tree_balanced(rng=rng, **kw))
        intervention_sampler = intervention_sampler or (lambda: self.sample_intervention(rng=rng))
        to_in = input_function or self.input_to_tensor
        to_out = output_function or self.output_to_tensor
        middle = [v for v in self.variables if v not in self.inputs and v not in self.outputs]
        data = []
        while len(data) < size:
            intervention = intervention_sampler()
            batch = []
            while len(batch) < batch_size:
                base = sampler()
                if filter is not None and not filter(base):
                    continue
                sources = {v: sampler(output_var=v, output_var_value=value) for v, value in intervention.items()}
                counterfactual = self.run_interchange(base, sources)
                width = to_in(self.run_forward(base)).shape[0]
                source_rows = [to_in(self.run_forward(sources[v])) if v in sources else np.zeros(width, np.float32)
                               for v in middle]
                example = {
                    "input_ids": to_in(self.run_forward(base)),
                    "source_input_ids": np.stack(source_rows),
                    "base_labels": to_out(self.run_forward(base)),
                    "labels": to_out(counterfactual),
                    "intervention_id": np.asarray([intervention_id(intervention)]),
                }
                if not return_tensors:
                    example.update(base=base, sources=sources, counterfactual=counterfactual)
                batch.append(example)
            data.extend(batch)
        return data


def stack_dataset(examples: Sequence[Mapping]) -> dict:
    """A list of dataset examples as one dict of stacked arrays."""
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]
            if isinstance(examples[0][k], np.ndarray)}


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for tail in _product(lists[1:]):
            yield (head,) + tail
