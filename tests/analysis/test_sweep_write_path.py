"""The sweep's write path: for every intervention class, unit ("pos", "h", "h.pos") and with or
without subspaces, a cell of `jv.sweep` equals the facade `jv.IntervenableModel` run at that cell.

Trainable interventions get random, non-trivial weights, so a sweep that dropped a rotation, a
mask or the subspaces would disagree with the facade; `test_guards_*` check that these
differences are visible at all (the main test cannot pass by accident). With one unit per cell
the distributed flatten is invisible to those classes, so a probe intervention checks it. The
metric is the identity on the logits at every position. Facades are built once per (class,
unit) and their results cached: compiling is most of the cost.
"""

import dataclasses
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

B, T = 2, 5
BASE = np.random.default_rng(0).integers(0, 50, (B, T))
SRC = np.random.default_rng(1).integers(0, 50, (B, T))
LAYER, POSITIONS, HEADS = 2, [1, 4], [1, 3]
METRIC_POSITIONS = tuple(range(T))  # every position's logits, the patched ones included
WIDTH = {"pos": 24, "h": 6, "h.pos": 6}  # block_output width; head width 24 / 4 (one unit)
COMPONENT = {"pos": "block_output", "h": "head_attention_value_output", "h.pos": "head_attention_value_output"}

CLASSES = [
    jv.VanillaIntervention,
    jv.AdditionIntervention,
    jv.SubtractionIntervention,
    jv.ZeroIntervention,
    jv.RotatedSpaceIntervention,
    jv.LowRankRotatedSpaceIntervention,
    jv.BoundlessRotatedSpaceIntervention,
    jv.SigmoidMaskRotatedSpaceIntervention,
    jv.SigmoidMaskIntervention,
]


class LayoutProbe(jv.DistributedRepresentationIntervention):
    """Writes the rank of what it is handed into the activations. With one unit per cell the
    distributed flatten is a reshape that no intervention above can see; this one sees it."""

    def __call__(self, base, source, subspaces=None, *, key=None):
        # not a constant shift: the next LayerNorm would erase it
        return self._source(source) + 0.1 * base.ndim * jnp.linspace(-1.0, 1.0, base.shape[-1])


def identity(logits):
    return logits


def make(cls, unit, seed=0):
    """`cls` sized for the activation it sees at `unit`, with random weights if trainable."""
    kwargs = {}
    if cls is jv.LowRankRotatedSpaceIntervention:
        kwargs["low_rank_dimension"] = 2
    if "seed" in inspect.signature(cls.__init__).parameters:
        kwargs["seed"] = seed
    iv = cls(WIDTH[unit], **kwargs)
    if not cls.trainable:
        return iv
    # perturb every trained array (not the set temperatures): leaf + N(0, 0.5 (|leaf| + 0.1)),
    # so masks at 0 (SigmoidMask) or at 100 (SigmoidMaskRotated) become non-uniform
    frozen = set(iv.frozen_fields) if hasattr(iv, "frozen_fields") else set()
    names = [
        f.name for f in dataclasses.fields(iv) if f.name not in frozen and eqx.is_inexact_array(getattr(iv, f.name))
    ]
    for name, k in zip(names, jax.random.split(jax.random.key(100 + seed), len(names))):
        leaf = getattr(iv, name)
        new = leaf + 0.5 * (abs(leaf) + 0.1) * jax.random.normal(k, leaf.shape, leaf.dtype)
        iv = eqx.tree_at(lambda m, name=name: getattr(m, name), iv, new)
    return iv


def subspaces_for(cls):
    """One intervention's subspaces, per example (different per example on purpose)."""
    if cls is jv.LowRankRotatedSpaceIntervention:  # the subspace axis has low_rank_dimension = 2
        return [[1], [0]]
    return [[0, 2, 3], [1, 4]]


def cells(unit):
    """(grid index, the facade's locations for one intervention) for every swept cell: B x 1
    positions or heads, or [B x 1 heads, B x 1 positions] for "h.pos"."""
    if unit == "pos":
        return [((j,), [[p]] * B) for j, p in enumerate(POSITIONS)]
    if unit == "h":
        return [((i,), [[h]] * B) for i, h in enumerate(HEADS)]
    return [((i, j), [[[h]] * B, [[p]] * B]) for i, h in enumerate(HEADS) for j, p in enumerate(POSITIONS)]


_FACADES: dict = {}
_REFERENCES: dict = {}


def facade(model, cls, unit):
    """`(iv, at)`: the intervention `make(cls, unit)` and `at(loc, subspaces)`, the facade's logits
    (B, T, V) with `iv` at one cell. One facade per (class, unit) for the whole module, so its
    compiled programs are reused."""
    key = (id(model), cls, unit)
    if key not in _FACADES:
        iv = make(cls, unit)
        config = jv.IntervenableConfig([jv.RepresentationConfig(LAYER, COMPONENT[unit], unit, intervention=iv)])
        im = jv.IntervenableModel(config, model)
        assert im.intervention_params()[0] is iv  # the facade runs this exact instance
        sourceless = iv.is_source_constant

        def at(loc, subspaces=None):
            locs = {"base": [loc]} if sourceless else {"sources->base": ([loc], [loc])}
            sources = None if sourceless else [{"input_ids": SRC}]
            _, out = im({"input_ids": BASE}, sources, locs, subspaces=None if subspaces is None else [subspaces])
            return np.asarray(out.logits)

        _FACADES[key] = iv, at
    return _FACADES[key]


def reference(model, cls, unit, with_subspaces):
    """The facade's logits at every cell, `{grid index: (B, T, V)}` (cached)."""
    key = (id(model), cls, unit, with_subspaces)
    if key not in _REFERENCES:
        _, at = facade(model, cls, unit)
        subspaces = subspaces_for(cls) if with_subspaces else None
        _REFERENCES[key] = {index: at(loc, subspaces) for index, loc in cells(unit)}
    return _REFERENCES[key]


def run_sweep(model, iv, unit, subspaces=None):
    kwargs = {} if subspaces is None else {"subspaces": subspaces}
    if unit != "pos":
        kwargs["heads"] = HEADS
    source = None if iv.is_source_constant else {"input_ids": SRC}
    return jv.sweep(
        model,
        {"input_ids": BASE},
        source,
        metric=identity,
        component=COMPONENT[unit],
        unit=unit,
        layers=[LAYER],
        positions=POSITIONS,
        intervention=iv,
        metric_positions=METRIC_POSITIONS,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def clean(flax_gpt2):
    return np.asarray(flax_gpt2(BASE).logits)


# Every class at "h.pos" (the unit with the most steps: heads and positions, flatten across
# heads), with and without subspaces; at "pos" and "h" the classes whose sweep paths differ
# (Addition and Subtraction take Vanilla's path, SigmoidMaskRotated Boundless's), to bound the
# compile time (two programs per case: the facade's and the sweep's).
CASES = (
    [(cls, "h.pos", w) for cls in CLASSES for w in (False, True)]
    + [
        (cls, unit, True)
        for unit in ("pos", "h")
        for cls in (
            jv.VanillaIntervention,
            jv.ZeroIntervention,
            jv.RotatedSpaceIntervention,
            jv.LowRankRotatedSpaceIntervention,
            jv.BoundlessRotatedSpaceIntervention,
            jv.SigmoidMaskIntervention,
        )
    ]
    + [(jv.VanillaIntervention, unit, False) for unit in ("pos", "h")]
)


@pytest.mark.parametrize(
    "cls, unit, with_subspaces", CASES, ids=[f"{c.__name__}-{u}-{'subspaces' if w else 'all'}" for c, u, w in CASES]
)
def test_sweep_cell_equals_facade(flax_gpt2, clean, cls, unit, with_subspaces):
    iv, _ = facade(flax_gpt2, cls, unit)
    res = run_sweep(flax_gpt2, iv, unit, subspaces_for(cls) if with_subspaces else None)
    grid = {"pos": (len(POSITIONS),), "h": (len(HEADS),), "h.pos": (len(HEADS), len(POSITIONS))}[unit]
    assert res.shape == (1,) + grid + (B, T, 50)
    for index, ref in reference(flax_gpt2, cls, unit, with_subspaces).items():
        # every cell visibly changes the logits, so the comparison is not vacuous
        assert np.abs(ref - clean).max() > 1e-3, f"cell {index}: the intervention changes nothing"
        np.testing.assert_allclose(res[(0,) + index], ref, atol=1e-5, err_msg=f"cell {index}")


@pytest.mark.parametrize("unit", ["pos", "h", "h.pos"])
def test_distributed_interventions_get_the_facades_layout(flax_gpt2, unit):
    iv, _ = facade(flax_gpt2, LayoutProbe, unit)
    res = run_sweep(flax_gpt2, iv, unit)
    for index, ref in reference(flax_gpt2, LayoutProbe, unit, False).items():
        np.testing.assert_allclose(res[(0,) + index], ref, atol=1e-5, err_msg=f"cell {index}")


@pytest.mark.parametrize("flat", [[0, 2, 3], [0, 2]], ids=["3", "B"])
def test_flat_subspaces_apply_to_every_example(flax_gpt2, flat):
    """A flat list of indices is every example's subspaces, also when it has B entries (it is
    not one int per example)."""
    iv, at = facade(flax_gpt2, jv.RotatedSpaceIntervention, "h.pos")
    res = run_sweep(flax_gpt2, iv, "h.pos", flat)
    for index, loc in cells("h.pos"):
        np.testing.assert_allclose(res[(0,) + index], at(loc, [flat] * B), atol=1e-5)


@pytest.mark.parametrize("unit", ["pos", "h", "h.pos"])
def test_guards_rotation_and_subspaces_are_visible(flax_gpt2, unit):
    """At the swept cells the facade tells a rotated swap from a plain one, and a subspace swap
    from a full one, so a sweep that skipped either could not match it by accident. (Reuses
    the main test's facade results when it ran first.)"""
    v_sub, v_all = (reference(flax_gpt2, jv.VanillaIntervention, unit, w) for w in (True, False))
    r_sub, r_all = (reference(flax_gpt2, jv.RotatedSpaceIntervention, unit, w) for w in (True, False))
    for index, _ in cells(unit):
        assert not np.allclose(r_sub[index], v_sub[index], atol=1e-4), f"cell {index}: the rotation is invisible"
        assert not np.allclose(v_sub[index], v_all[index], atol=1e-4), f"cell {index}: the subspaces are invisible"
        # a full rotated interchange is a plain swap: why the rotation cases need subspaces
        np.testing.assert_allclose(r_all[index], v_all[index], atol=1e-4)
