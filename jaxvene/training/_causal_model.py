"""`CausalModel`: the high-level causal model of interchange intervention training (IIT) and DAS.

A causal model is a directed acyclic graph of discrete variables. Variables without parents are
the *inputs*, variables without children the *outputs*; every other variable is
*intermediate*. Each variable has a list of possible values and a function of its parents'
values (an input's function takes no argument and gives its default value). The model computes
every variable under interventions, and it generates the datasets used to align a neural
network with it: for an interchange of variable ``V``, the counterfactual label is what the
model outputs on a *base* input when ``V`` is clamped to the value it takes on a *source* input.

The names and meaning follow pyvene's ``pyvene.CausalModel``. Where this one differs:

* **Seeded, reproducible sampling.** The model owns a ``numpy.random.Generator`` (constructor
  argument ``seed=0``); Python's global ``random`` module is never used. Every sampling method
  and dataset generator also takes ``seed=`` (a fresh generator for that call) or ``rng=`` (a
  generator of yours). The same seed gives identical samples and datasets.
* Arrays are NumPy (``float32`` for inputs and labels), not torch; there is no ``device``.
* ``generate_counterfactual_dataset`` samples with :meth:`CausalModel.sample_input_tree_balanced`
  by default (pyvene's default, ``sample_input``, does not accept the ``output_var=`` it is
  called with and crashes); it honours ``input_function`` / ``output_function`` (pyvene ignores
  them there).
* :meth:`CausalModel.sample_intervention` raises a clear error for a model without intermediate
  variables (pyvene loops forever) and honours ``mandatory``; rejection loops are bounded.
* The graph is checked when the model is built; errors name the offending variable.
* Intervention values and tree-balanced output values are drawn among the values a variable
  can actually take (pyvene draws among all declared values and crashes on an unreachable one).

:func:`stack_dataset` turns a list of examples into a dict of stacked arrays for batching.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CausalModel", "stack_dataset"]

_MAX_TRIES = 10_000  # bound on every rejection-sampling loop


def _with_context(error: BaseException, note: str) -> BaseException:
    if hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(note)
    return error


class CausalModel:
    """A causal model over discrete variables, with pyvene's constructor and method names.

    Args:
        variables: the variable names (strings).
        values: ``values[v]`` is the list of values ``v`` can take.
        parents: ``parents[v]`` is the list of ``v``'s parents (``[]`` for an input).
        functions: ``functions[v](*parent_values)`` computes ``v`` from its parents' values, in
            the order of ``parents[v]``; an input's function takes no argument and gives its
            default value (used by ``run_forward()`` without an intervention).
        timesteps: optional ``{v: int}``; each parent must come strictly before its children.
            By default an input is at step 0, any other variable one step after its latest
            parent, and all outputs are moved to the last step (as in pyvene).
        equiv_classes: optional precomputed equivalence classes (see
            :meth:`generate_equiv_classes`); missing ones are computed on first use.
        pos: optional ``{v: (x, y)}`` drawing positions for :meth:`print_structure`.
        seed: seed of the model's own ``numpy.random.Generator`` (``self.rng``), used by the
            samplers when they are given neither ``seed=`` nor ``rng=``. ``None`` draws fresh
            entropy (not reproducible).

    Attributes (pyvene's): ``variables`` (sorted by name, then stably by timestep),
    ``values``, ``parents``, ``children``, ``functions``, ``inputs`` and ``outputs`` (sorted
    by name, which fixes the column order of :meth:`input_to_tensor` and
    :meth:`output_to_tensor`), ``timesteps``, ``pos``, ``equiv_classes``; plus ``rng``.

    Raises:
        ValueError: a duplicate variable, a variable without values, parents entry or
            callable function, an unknown parent, a cycle, or timesteps that do not order
            parents before children. The message names the variable.

    >>> m = CausalModel(["A", "B", "C"], {v: [False, True] for v in "ABC"},
    ...                 {"A": [], "B": [], "C": ["A", "B"]},
    ...                 {"A": lambda: True, "B": lambda: True, "C": lambda a, b: a and b})
    >>> m.inputs, m.outputs, m.timesteps
    (['A', 'B'], ['C'], {'A': 0, 'B': 0, 'C': 1})
    >>> m.run_interchange({"A": True, "B": False}, {"B": {"A": False, "B": True}})["C"]
    True
    """

    def __init__(
        self,
        variables: Sequence[Hashable],
        values: Mapping,
        parents: Mapping,
        functions: Mapping,
        timesteps: Mapping | None = None,
        equiv_classes: Mapping | None = None,
        pos: Mapping | None = None,
        seed: int | None = 0,
    ):
        names: list[Any] = list(variables)
        seen = set()
        for v in names:
            if v in seen:
                raise ValueError(f"variable {v!r} is listed twice in `variables`")
            seen.add(v)
        for v in names:
            if v not in values or len(list(values[v])) == 0:
                raise ValueError(f"variable {v!r} has no values (give a non-empty list in `values[{v!r}]`)")
            if v not in parents:
                raise ValueError(f"variable {v!r} has no entry in `parents` (use [] for an input)")
            if v not in functions or not callable(functions[v]):
                raise ValueError(f"variable {v!r} has no function (give a callable in `functions[{v!r}]`)")
            for p in parents[v]:
                if p not in seen:
                    raise ValueError(f"variable {v!r} has an unknown parent {p!r}")
            if len(set(parents[v])) != len(list(parents[v])):
                raise ValueError(f"variable {v!r} lists a parent twice: {list(parents[v])!r}")
        try:
            names.sort()  # pyvene sorts by name first; this fixes input and output order
        except TypeError:
            pass
        self.values = {v: list(values[v]) for v in names}
        self.parents = {v: list(parents[v]) for v in names}
        self.functions = {v: functions[v] for v in names}
        self.children: dict[Any, list[Any]] = {v: [] for v in names}
        for v in names:
            for p in self.parents[v]:
                self.children[p].append(v)
        self.inputs = [v for v in names if not self.parents[v]]
        self.outputs = [v for v in names if not self.children[v]]
        self._check_acyclic(names)
        if timesteps is None:
            self.timesteps = self._default_timesteps(names)
        else:
            self.timesteps = self._checked_timesteps(names, timesteps)
        self.variables = sorted(names, key=lambda v: self.timesteps[v])  # stable: ties keep name order
        self.rng = np.random.default_rng(seed)
        self._equiv_classes = {v: dict(c) for v, c in (equiv_classes or {}).items()}
        self.pos = dict(pos or {})
        width: dict = {}
        for v in self.variables:
            if v not in self.pos:
                t = self.timesteps[v]
                self.pos[v] = (width.get(t, 0), t)
                width[t] = width.get(t, 0) + 1
        self.run_forward()  # as pyvene: every function must run on the defaults

    # ------------------------------------------------------------------ structure
    def _check_acyclic(self, names):
        state: dict = {}  # 1: on the current path, 2: done

        def visit(v, path):
            state[v] = 1
            for p in self.parents[v]:
                if state.get(p) == 1:
                    cycle = path[path.index(p) :] + [p]
                    raise ValueError(
                        f"the graph has a cycle through variable {p!r}: " + " <- ".join(repr(x) for x in cycle)
                    )
                if p not in state:
                    visit(p, path + [p])
            state[v] = 2

        for v in names:
            if v not in state:
                visit(v, [v])

    def _default_timesteps(self, names) -> dict:
        steps: dict = {}

        def depth(v):
            if v not in steps:
                steps[v] = 0 if not self.parents[v] else 1 + max(depth(p) for p in self.parents[v])
            return steps[v]

        for v in names:
            depth(v)
        last = max(steps.values())
        for v in self.outputs:
            if self.parents[v]:  # a variable with neither parents nor children stays at 0
                steps[v] = last
        return steps

    def _checked_timesteps(self, names, timesteps) -> dict:
        steps = {}
        for v in names:
            if v not in timesteps:
                raise ValueError(f"variable {v!r} has no timestep in `timesteps`")
            steps[v] = timesteps[v]
        for v in names:
            for p in self.parents[v]:
                if not steps[p] < steps[v]:
                    raise ValueError(
                        f"variable {v!r} has timestep {steps[v]} but its parent {p!r} has "
                        f"{steps[p]}; parents must come strictly earlier"
                    )
        return steps

    @property
    def intermediates(self) -> list:
        """Variables that are neither inputs nor outputs (the ones interventions sample)."""
        return [v for v in self.variables if v not in self.inputs and v not in self.outputs]

    # ------------------------------------------------------------------ computing
    def run_forward(self, intervention: Mapping | None = None) -> dict:
        """Every variable's value, computed in timestep order.

        Variables named in ``intervention`` are clamped to the given value; this is also how
        inputs are supplied (inputs left out take their default). Returns a dict over all
        variables. Unlike pyvene, a key that is not a variable raises ``ValueError``.
        """
        intervention = {} if intervention is None else intervention
        for v in intervention:
            if v not in self.functions:
                raise ValueError(f"intervention on unknown variable {v!r}; variables: {self.variables}")
        setting: dict = {}
        for v in self.variables:
            if v in intervention:
                setting[v] = intervention[v]
                continue
            args = [setting[p] for p in self.parents[v]]
            try:
                setting[v] = self.functions[v](*args)
            except Exception as e:
                raise _with_context(e, f"while computing variable {v!r} from {dict(zip(self.parents[v], args))}") from e
        return setting

    def run_interchange(self, input: Mapping, source_interventions: Mapping) -> dict:
        """The counterfactual setting of an interchange intervention.

        ``source_interventions`` maps a variable to a source input (a dict as given to
        :meth:`run_forward`): the variable takes the value it has when the model runs on that
        source, clamped on top of ``input``; then the model runs forward.
        """
        clamped = dict(input)
        for v, source in source_interventions.items():
            if v not in self.functions:
                raise ValueError(f"interchange on unknown variable {v!r}; variables: {self.variables}")
            clamped[v] = self.run_forward(source)[v]
        return self.run_forward(clamped)

    def generate_equiv_classes(self) -> dict:
        """For each non-input variable ``v``: ``{value: [parent assignment, ...]}``, every
        assignment of ``v``'s parents' values (a dict) for which ``v``'s function gives
        ``value``. Classes given to the constructor are kept. Stored in ``equiv_classes`` and
        returned. The cost is the product of the parents' value counts, per variable."""
        for v in self.variables:
            if not self.parents[v] or v in self._equiv_classes:
                continue
            classes: dict = {value: [] for value in self.values[v]}
            for combo in itertools.product(*[self.values[p] for p in self.parents[v]]):
                value = self.functions[v](*combo)
                if value not in classes:
                    raise ValueError(
                        f"variable {v!r} computes {value!r} from {dict(zip(self.parents[v], combo))}, "
                        f"which is not among its values {self.values[v]!r}"
                    )
                classes[value].append(dict(zip(self.parents[v], combo)))
            self._equiv_classes[v] = classes
        return self._equiv_classes

    @property
    def equiv_classes(self) -> dict:
        """The equivalence classes of all non-input variables (computed on first access)."""
        return self.generate_equiv_classes()

    @equiv_classes.setter
    def equiv_classes(self, classes: Mapping):
        self._equiv_classes = {v: dict(c) for v, c in classes.items()}

    def reachable_values(self, var) -> list:
        """The values of ``var`` that some input produces locally (from some assignment of its
        parents' values); all declared values for an input."""
        if not self.parents[var]:
            return list(self.values[var])
        classes = self.equiv_classes[var]
        return [value for value in self.values[var] if classes.get(value)]

    # ------------------------------------------------------------------ sampling
    def _resolve_rng(self, seed=None, rng=None) -> np.random.Generator:
        if seed is not None and rng is not None:
            raise ValueError("give `seed` or `rng`, not both")
        if rng is not None:
            return rng
        if seed is not None:
            return np.random.default_rng(seed)
        return self.rng

    @staticmethod
    def _choice(rng: np.random.Generator, options: Sequence):
        return options[int(rng.integers(len(options)))]

    def _uniform_inputs(self, rng) -> dict:
        return {v: self._choice(rng, self.values[v]) for v in self.inputs}

    def sample_input(self, mandatory: Callable[[dict], bool] | None = None, *, seed=None, rng=None) -> dict:
        """Inputs drawn uniformly and independently from their values.

        With ``mandatory(setting) -> bool`` (on the full forward setting), draws are rejected
        until it holds; ``RuntimeError`` after 10 000 rejections.
        """
        rng = self._resolve_rng(seed, rng)
        for _ in range(_MAX_TRIES):
            inputs = self._uniform_inputs(rng)
            if mandatory is None or mandatory(self.run_forward(inputs)):
                return inputs
        raise RuntimeError(f"sample_input: no input satisfied `mandatory` in {_MAX_TRIES} draws")

    def sample_input_tree_balanced(self, output_var=None, output_var_value=None, *, seed=None, rng=None) -> dict:
        """Inputs for which ``output_var`` takes a uniformly drawn (or the given) value.

        The value of ``output_var`` (the model's only output by default) is drawn uniformly
        among the values it can take; then, walking up the graph, each variable's parents get
        an assignment drawn uniformly from the equivalence class of the variable's value, down
        to the inputs. Inputs not above ``output_var`` are drawn uniformly. Labels are thereby
        balanced over ``output_var``'s values. Differences from pyvene: each call starts from
        an empty setting (pyvene's recursion shares a mutable default, so inputs outside the
        subtree keep values from earlier calls); ``output_var`` may be an input; and when the
        graph above ``output_var`` is not a tree (a variable reached along two paths) the draw
        is checked and repeated, then falls back to rejection sampling.

        Raises:
            ValueError: no ``output_var`` with several outputs, an unknown variable, or a value
                that ``output_var`` cannot take.
        """
        rng = self._resolve_rng(seed, rng)
        if output_var is None:
            if len(self.outputs) != 1:
                raise ValueError(f"the model has outputs {self.outputs}; say which with `output_var=`")
            output_var = self.outputs[0]
        if output_var not in self.functions:
            raise ValueError(f"unknown variable {output_var!r}; variables: {self.variables}")
        reachable = self.reachable_values(output_var)
        if output_var_value is None:
            output_var_value = self._choice(rng, reachable)
        elif output_var_value not in reachable:
            raise ValueError(
                f"variable {output_var!r} never takes the value {output_var_value!r} (it can take {reachable!r})"
            )
        if not self.parents[output_var]:
            inputs = self._uniform_inputs(rng)
            inputs[output_var] = output_var_value
            return inputs

        classes = self.equiv_classes

        def fill(var, value, inputs):
            assignment = self._choice(rng, classes[var][value])
            for parent, parent_value in assignment.items():
                if self.parents[parent]:
                    fill(parent, parent_value, inputs)
                else:
                    inputs[parent] = parent_value

        for _ in range(100):
            inputs = {}
            fill(output_var, output_var_value, inputs)
            for v in self.inputs:
                if v not in inputs:
                    inputs[v] = self._choice(rng, self.values[v])
            if self.run_forward(inputs)[output_var] == output_var_value:
                return inputs  # always on the first try when the graph above output_var is a tree
        return self.sample_input(lambda s: s[output_var] == output_var_value, rng=rng)

    def sample_intervention(self, mandatory: Callable[[dict], bool] | None = None, *, seed=None, rng=None) -> dict:
        """A random intervention ``{variable: value}`` on intermediate variables.

        Each intermediate variable is included with probability 1/2 (redrawn until at least
        one is), with a value drawn uniformly among those it can take. With
        ``mandatory(intervention) -> bool`` draws are rejected until it holds (pyvene ignores
        ``mandatory``).

        Raises:
            ValueError: the model has no intermediate variable (pyvene loops forever).
            RuntimeError: ``mandatory`` rejected 10 000 draws.
        """
        rng = self._resolve_rng(seed, rng)
        middle = self.intermediates
        if not middle:
            raise ValueError(
                "sample_intervention: the model has no intermediate variables (each variable is an "
                "input or an output); pass your own `intervention_sampler`"
            )
        options = {v: self.reachable_values(v) for v in middle}
        for _ in range(_MAX_TRIES):
            intervention: dict[Any, Any] = {}
            while not intervention:
                for v in middle:
                    if rng.integers(2) == 0:
                        intervention[v] = self._choice(rng, options[v])
            if mandatory is None or mandatory(intervention):
                return intervention
        raise RuntimeError(f"sample_intervention: no intervention satisfied `mandatory` in {_MAX_TRIES} draws")

    # ------------------------------------------------------------------ datasets
    @staticmethod
    def _flat(value) -> np.ndarray:
        return np.asarray(value, dtype=np.float32).reshape(-1)

    def input_to_tensor(self, setting: Mapping) -> np.ndarray:
        """The inputs' values (in ``self.inputs`` order), as float32, flattened and
        concatenated into one 1-D array. Vector-valued inputs are allowed."""
        return np.concatenate([self._flat(setting[v]) for v in self.inputs])

    def output_to_tensor(self, setting: Mapping) -> np.ndarray:
        """The outputs' values (in ``self.outputs`` order) as one 1-D float32 array."""
        return np.concatenate([self._flat(setting[v]) for v in self.outputs])

    @staticmethod
    def _bind_rng(fn: Callable, rng) -> Callable:
        """Pass the dataset's generator to a sampler that has an ``rng`` parameter (e.g. a
        bound sampling method of a model), so that ``seed=`` also governs it."""
        try:
            takes_rng = "rng" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_rng = False
        if not takes_rng:
            return fn
        return lambda *args, **kwargs: fn(*args, rng=rng, **kwargs)

    def generate_factual_dataset(
        self,
        size: int,
        sampler: Callable | None = None,
        filter: Callable[[dict], bool] | None = None,
        input_function: Callable | None = None,
        output_function: Callable | None = None,
        return_tensors: bool = True,
        *,
        seed=None,
        rng=None,
    ) -> list:
        """``size`` examples ``{"input_ids", "labels"}`` of the model's own behaviour.

        ``sampler()`` gives an input (default :meth:`sample_input`); inputs for which
        ``filter(input)`` is false are skipped. With ``return_tensors``, ``input_ids =
        input_function(input)`` and ``labels = output_function(forward setting)`` (defaults
        :meth:`input_to_tensor`, :meth:`output_to_tensor`: float32 NumPy arrays); otherwise
        ``input_ids`` is the input dict and ``labels`` the full forward setting, as pyvene.
        ``seed`` / ``rng`` govern the default sampler and any sampler with an ``rng``
        parameter; the same seed gives the same dataset.
        """
        rng = self._resolve_rng(seed, rng)
        sampler = self._bind_rng(sampler, rng) if sampler is not None else (lambda: self.sample_input(rng=rng))
        to_in = input_function or self.input_to_tensor
        to_out = output_function or self.output_to_tensor
        examples: list = []
        rejected = 0
        while len(examples) < size:
            inputs = sampler()
            if filter is not None and not filter(inputs):
                rejected += 1
                if rejected >= _MAX_TRIES + 100 * size:
                    raise RuntimeError(f"generate_factual_dataset: `filter` rejected {rejected} inputs")
                continue
            setting = self.run_forward(inputs)
            if return_tensors:
                examples.append({"input_ids": to_in(inputs), "labels": to_out(setting)})
            else:
                examples.append({"input_ids": inputs, "labels": setting})
        return examples

    def generate_counterfactual_dataset(
        self,
        size: int,
        intervention_id: Callable[[dict], Any],
        batch_size: int,
        sampler: Callable | None = None,
        intervention_sampler: Callable | None = None,
        filter: Callable[[dict], bool] | None = None,
        input_function: Callable | None = None,
        output_function: Callable | None = None,
        return_tensors: bool = True,
        *,
        seed=None,
        rng=None,
    ) -> list:
        """Interchange-intervention examples, in groups of ``batch_size`` sharing an intervention.

        Until ``size`` examples exist (so the count is rounded up to a multiple of
        ``batch_size``, as pyvene): draw an intervention ``{variable: value}`` with
        ``intervention_sampler()`` (default :meth:`sample_intervention`), skipped if
        ``filter(intervention)`` is false; then ``batch_size`` times draw a base with
        ``sampler()`` and, for each intervened variable in ``self.variables`` order, a source
        with ``sampler(output_var=var, output_var_value=value)`` (default sampler:
        :meth:`sample_input_tree_balanced`, so the source gives ``var`` its sampled value).

        Each example, as pyvene: ``input_ids`` (base), ``source_input_ids`` (the sources in that
        order, padded with zero rows to one row per intermediate variable: shape
        ``(n_sources, d)``), ``base_labels`` (outputs on the base), ``labels`` (outputs of
        :meth:`run_interchange`), ``intervention_id`` (``np.array([intervention_id(
        intervention)])``). Inputs and labels go through ``input_function`` /
        ``output_function`` (defaults: float32 arrays). With ``return_tensors=False`` the
        fields are the dicts themselves (sources padded with ``{}``, labels as full settings)
        and the example also holds ``intervention``. ``seed`` / ``rng`` govern the default
        samplers and any sampler with an ``rng`` parameter.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        rng = self._resolve_rng(seed, rng)
        if sampler is None:
            sampler = lambda **kwargs: self.sample_input_tree_balanced(rng=rng, **kwargs)  # noqa: E731
        else:
            sampler = self._bind_rng(sampler, rng)
        if intervention_sampler is None:
            intervention_sampler = lambda: self.sample_intervention(rng=rng)  # noqa: E731
        else:
            intervention_sampler = self._bind_rng(intervention_sampler, rng)
        to_in = input_function or self.input_to_tensor
        to_out = output_function or self.output_to_tensor
        n_slots = len(self.intermediates)
        examples: list = []
        rejected = 0
        while len(examples) < size:
            intervention = intervention_sampler()
            if filter is not None and not filter(intervention):
                rejected += 1
                if rejected >= _MAX_TRIES:
                    raise RuntimeError(f"generate_counterfactual_dataset: `filter` rejected {rejected} interventions")
                continue
            for v in intervention:
                if v not in self.functions:
                    raise ValueError(f"the intervention sampler gave unknown variable {v!r}")
            ident = intervention_id(intervention)
            for _ in range(batch_size):
                base = sampler()
                sources = {
                    v: sampler(output_var=v, output_var_value=intervention[v])
                    for v in self.variables
                    if v in intervention
                }
                counterfactual = self.run_interchange(base, sources)
                factual = self.run_forward(base)
                if return_tensors:
                    base_ids = np.asarray(to_in(base))
                    rows = [np.asarray(to_in(s)) for s in sources.values()]
                    rows += [np.zeros_like(base_ids)] * (n_slots - len(rows))
                    examples.append(
                        {
                            "input_ids": base_ids,
                            "source_input_ids": np.stack(rows)
                            if rows
                            else np.zeros((0,) + base_ids.shape, base_ids.dtype),
                            "base_labels": np.asarray(to_out(factual)),
                            "labels": np.asarray(to_out(counterfactual)),
                            "intervention_id": np.asarray([ident]),
                        }
                    )
                else:
                    source_rows = list(sources.values()) + [{} for _ in range(n_slots - len(sources))]
                    examples.append(
                        {
                            "input_ids": base,
                            "source_input_ids": source_rows,
                            "base_labels": factual,
                            "labels": counterfactual,
                            "intervention_id": [ident],
                            "intervention": dict(intervention),
                        }
                    )
        return examples

    # ------------------------------------------------------------------ live paths and filters
    def find_live_paths(self, intervention: Mapping) -> dict:
        """Directed paths along which each step is an actual cause under ``intervention``:
        ``{length: [path, ...]}`` for lengths 2, 3, ... (the last entry is empty), where
        ``path[i] -> path[i+1]`` is kept if some other value of ``path[i]`` (the rest of
        ``intervention`` held) changes ``path[i+1]``. As pyvene."""
        actual = self.run_forward(intervention)
        paths: dict = {1: [[v] for v in self.variables]}
        step = 2
        while True:
            paths[step] = []
            for path in paths[step - 1]:
                last = path[-1]
                for child in self.children[last]:
                    for value in self.values[last]:
                        changed = self.run_forward({**intervention, last: value})
                        if changed[child] != actual[child]:
                            paths[step].append(path + [child])
                            break
            if not paths[step]:
                break
            step += 1
        del paths[1]
        return paths

    def get_partial_filter(self, partial_setting: Mapping) -> Callable[[Mapping], bool]:
        """A predicate: the setting agrees with ``partial_setting`` on its variables."""

        def compare(setting):
            return all(setting[v] == value for v, value in partial_setting.items())

        return compare

    def get_path_maxlen_filter(self, lengths) -> Callable[[Mapping], bool]:
        """A predicate: the longest live path from the setting's inputs has a length in
        ``lengths`` (false when no path is live)."""

        def check(setting):
            paths = self.find_live_paths({v: setting[v] for v in self.inputs})
            live = [n for n, ps in paths.items() if ps]
            return bool(live) and max(live) in lengths

        return check

    def get_specific_path_filter(self, start, end) -> Callable[[Mapping], bool]:
        """A predicate: some live path runs from ``start`` to ``end``."""

        def check(setting):
            paths = self.find_live_paths({v: setting[v] for v in self.inputs})
            return any(p[0] == start and p[-1] == end for ps in paths.values() for p in ps)

        return check

    # ------------------------------------------------------------------ drawing
    def _draw(self, labels: Mapping, font: int, node_size: int, show: bool):
        try:
            import matplotlib.pyplot as plt
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("drawing a CausalModel needs matplotlib (pip install matplotlib)") from e
        fig, ax = plt.subplots(figsize=(10, 10))
        for child in self.variables:
            for parent in self.parents[child]:
                ax.annotate(
                    "",
                    xy=self.pos[child],
                    xytext=self.pos[parent],
                    arrowprops={"arrowstyle": "->", "shrinkA": 15, "shrinkB": 15},
                )
        xs, ys = zip(*(self.pos[v] for v in self.variables))
        ax.scatter(xs, ys, s=node_size, c="green", zorder=2)
        for v in self.variables:
            ax.annotate(str(labels[v]), self.pos[v], ha="center", va="center", fontsize=font, zorder=3)
        ax.margins(0.2)
        ax.set_axis_off()
        if show:
            plt.show()
        return fig

    def print_structure(self, font: int = 12, node_size: int = 1000, show: bool = True):
        """Draw the graph with matplotlib at ``self.pos`` (optional dependency; no networkx).
        Returns the figure."""
        return self._draw({v: v for v in self.variables}, font, node_size, show)

    def print_setting(self, total_setting: Mapping, font: int = 12, node_size: int = 1000, show: bool = True):
        """Draw the graph with each variable labelled ``name: value``. Returns the figure."""
        return self._draw({v: f"{v}: {total_setting[v]}" for v in self.variables}, font, node_size, show)


def stack_dataset(examples: Sequence[Mapping]) -> dict:
    """Stack a list of dataset examples (``return_tensors=True``) into ``{key: array}`` with
    a leading example axis, e.g. ``input_ids (n, d)``, ``source_input_ids (n, n_sources, d)``,
    ``intervention_id (n, 1)``."""
    if len(examples) == 0:
        raise ValueError("stack_dataset: no examples")
    keys = list(examples[0])
    out = {}
    for k in keys:
        column = []
        for i, e in enumerate(examples):
            if set(e) != set(keys):
                raise ValueError(f"stack_dataset: example {i} has keys {sorted(e)}, example 0 has {sorted(keys)}")
            if isinstance(e[k], Mapping) or (isinstance(e[k], list) and e[k] and isinstance(e[k][0], Mapping)):
                raise TypeError(
                    f"stack_dataset: field {k!r} holds dicts; generate the dataset with return_tensors=True"
                )
            column.append(np.asarray(e[k]))
        shapes = {c.shape for c in column}
        if len(shapes) > 1:
            raise ValueError(f"stack_dataset: field {k!r} has differing shapes {sorted(shapes)}")
        out[k] = np.stack(column)
    return out
