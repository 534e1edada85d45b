"""jaxvene's JAX GRU against pyvene's PyTorch GRU models (weights converted with `from_torch`).

pyvene addresses GRU time steps with unit "t"; here they are positions (unit "pos"). pyvene
0.1.8's stateful path runs batch size 1 only and zeroes the component at every step not in the
base locations, so its single-step patches are compared with a jaxvene patch plus an explicit
`ZeroIntervention` on the other steps, and the intended semantics (batches, no zeroing) with
forward hooks that swap one step by hand.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")

from pyvene.models.gru import modelings_gru as pv_gru  # noqa: E402

import jaxvene as jv  # noqa: E402
from jaxvene.models.gru import GRUForClassification, GRULMHeadModel, GRUModel  # noqa: E402

D, T = 8, 5


def _torch(cls=pv_gru.GRUForClassification, **kw):
    torch.manual_seed(0)
    config = pv_gru.GRUConfig(
        **{"h_dim": D, "n_layer": 2, "n_labels": 3, "vocab_size": 20, "max_position_embeddings": 16, **kw}
    )
    return cls(config).eval()


@pytest.fixture(scope="module")
def pair():
    tm = _torch()
    return tm, GRUForClassification.from_torch(tm)


RNG = np.random.default_rng(0)
BASE = RNG.normal(size=(2, T, D)).astype(np.float32)
SRC = RNG.normal(size=(2, T + 2, D)).astype(np.float32)  # sources may be longer


def _close(ours, theirs):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5, rtol=1e-5)


def _pyvene(tm, reps, base, src, locs):
    pm = pv.IntervenableModel(pv.IntervenableConfig(reps, intervention_types=pv.VanillaIntervention), tm)
    with torch.no_grad():
        _, out = pm({"inputs_embeds": torch.tensor(base)}, [{"inputs_embeds": torch.tensor(src)}], locs)
    return out[0].numpy()


def _jaxvene(model, reps, base, src, locs, types=jv.VanillaIntervention):
    jm = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=types), model)
    _, out = jm({"inputs_embeds": base}, [{"inputs_embeds": src}], locs)
    return np.asarray(out["logits"])


# ------------------------------------------------------------------------------ numerics
def test_outputs_match_pyvene():
    x = torch.tensor(BASE)
    for cls, ours_cls in [
        (pv_gru.GRUForClassification, GRUForClassification),
        (pv_gru.GRULMHeadModel, GRULMHeadModel),
        (pv_gru.GRUModel, GRUModel),
    ]:
        tm = _torch(cls)
        with torch.no_grad():
            ref = tm(inputs_embeds=x.clone())[0].numpy()
        out = ours_cls.from_torch(tm)({"inputs_embeds": BASE})
        _close(out["hidden_states"] if ours_cls is GRUModel else out["logits"], ref)
    mask = np.array([[1, 1, 1, 0, 0], [1] * T])  # the classifier pools at the last real step
    tm = _torch()
    with torch.no_grad():
        ref = tm(inputs_embeds=x.clone(), attention_mask=torch.tensor(mask))[0].numpy()
    _close(GRUForClassification.from_torch(tm)({"inputs_embeds": BASE, "attention_mask": mask})["logits"], ref)
    tm = _torch(pv_gru.GRULMHeadModel, include_emb=True)  # token and position embeddings
    ids, pos = RNG.integers(0, 20, (2, T)), np.tile(np.arange(T), (2, 1))
    with torch.no_grad():
        ref = tm(input_ids=torch.tensor(ids), position_ids=torch.tensor(pos))[0].numpy()
    _close(GRULMHeadModel.from_torch(tm)({"input_ids": ids, "position_ids": pos})["logits"], ref)
    with pytest.raises(ValueError, match="not a pyvene model"):
        GRULMHeadModel.from_torch(_torch())


# ------------------------------------------------------------------------------ interventions
def test_every_step_interchange_matches_pyvene(pair):
    """Two components (one a third of x2h) over all base steps, fed by source steps 2..6."""
    tm, model = pair
    reps = [
        {"layer": 0, "component": "update_gate_output", "group_key": 0},
        {"layer": 1, "component": "new_x2h_output", "group_key": 0},
    ]
    src_steps, base_steps = [[list(range(2, T + 2))]], [[list(range(T))]]
    theirs = _pyvene(
        tm, [dict(r, unit="t") for r in reps], BASE[:1], SRC[:1], {"sources->base": (src_steps * 2, base_steps * 2)}
    )
    ours = _jaxvene(model, reps, BASE[:1], SRC[:1], {"sources->base": (src_steps * 2, base_steps * 2)})
    _close(ours, theirs)
    plain = np.asarray(model({"inputs_embeds": BASE[:1]})["logits"])
    assert np.abs(ours - plain).max() > 1e-3
    one = _jaxvene(model, reps[:1], BASE[:1], SRC[:1], {"sources->base": (src_steps, base_steps)})
    assert np.abs(ours - one).max() > 1e-3  # the layer-1 patch matters too


def test_single_steps_match_pyvene_with_its_zeroing(pair):
    """pyvene: source step 1 -> base step 3 (cell_output, layer 0) and 4 -> 2 (reset_h2h_output,
    layer 1); it zeroes both components at their other steps, which jaxvene says explicitly."""
    tm, model = pair
    sites = [(0, "cell_output", 1, 3), (1, "reset_h2h_output", 4, 2)]
    reps = [{"layer": l, "component": c, "unit": "t", "group_key": 0} for l, c, _, _ in sites]
    theirs = _pyvene(
        tm, reps, BASE[:1], SRC[:1], {"sources->base": ([[[s]] for *_, s, _ in sites], [[[b]] for *_, b in sites])}
    )
    patch = [
        {"layer": l, "component": c, "group_key": 0, "intervention_type": jv.VanillaIntervention}
        for l, c, _, _ in sites
    ]
    zero = [
        {"layer": l, "component": c, "group_key": 0, "intervention_type": jv.ZeroIntervention} for l, c, _, _ in sites
    ]
    others = [[[t for t in range(T) if t != b]] for *_, b in sites]
    locs = {"sources->base": ([[[s]] for *_, s, _ in sites] + [None, None], [[[b]] for *_, b in sites] + others)}
    _close(_jaxvene(model, patch + zero, BASE[:1], SRC[:1], locs, types=None), theirs)


def _hand_patch(tm, specs, base, src):
    """Classifier logits of `base` where, per `(layer, third, {example: (src_step, base_step)})`,
    cell `layer`'s output (third None) or a third of its h2h output takes the source's value."""

    def run(x, edit):
        calls, handles = {}, []
        for layer, third, _ in specs:
            mod = tm.gru.cells[layer] if third is None else tm.gru.cells[layer].h2h

            def hook(m, args, out, key=(layer, third)):
                step = calls[key] = calls.get(key, -1) + 1
                return edit(key, step, out)

            handles.append(mod.register_forward_hook(hook))
        try:
            with torch.no_grad():
                return tm(inputs_embeds=torch.tensor(x))[0].numpy()
        finally:
            for h in handles:
                h.remove()

    seen = {}

    def record(key, step, out):
        seen[key + (step,)] = out.clone()

    def swap(key, step, out):
        out = out.clone()
        cols = slice(None) if key[1] is None else slice(key[1] * D, (key[1] + 1) * D)
        for layer, third, steps in specs:
            for b, (s, t) in steps.items():
                if (layer, third) == key and t == step:
                    out[b, cols] = seen[key + (s,)][b, cols]
        return out

    run(src, record)
    return run(base, swap)


def test_batched_single_steps_match_hand_patch(pair):
    """The intended semantics: other steps untouched, different steps per example."""
    tm, model = pair
    sites = [(0, "cell_output", None, {0: (1, 3), 1: (6, 0)}), (1, "update_h2h_output", 1, {0: (4, 2), 1: (0, 4)})]
    reps = [{"layer": l, "component": c, "group_key": 0} for l, c, _, _ in sites]
    locs = {
        "sources->base": (
            [[[st[b][0]] for b in (0, 1)] for *_, st in sites],
            [[[st[b][1]] for b in (0, 1)] for *_, st in sites],
        )
    }
    ours = _jaxvene(model, reps, BASE, SRC, locs)
    _close(ours, _hand_patch(tm, [(l, third, st) for l, _, third, st in sites], BASE, SRC))
    assert np.abs(ours - np.asarray(model({"inputs_embeds": BASE})["logits"])).max() > 1e-3


# ------------------------------------------------------------------------------ sites
def test_sites_collect_and_unit_t(pair):
    tm, model = pair
    adapter = model.jaxvene_adapter()
    site = adapter.site("reset_x2h_output", 1)
    assert (site.tap, site.part) == ("gru.cells.1.x2h.output", (0, 3))
    assert adapter.site("new_gate_input", 0).tap == "gru.cells.0.new_act.input"
    assert adapter.site("gru.cells[0].h2h.output").tap == "gru.cells.0.h2h.output"  # a module path
    with pytest.raises(IndexError, match="out of range"):
        adapter.site("cell_output", 2)
    # collecting every step of the top cell gives the whole trajectory (pyvene's GRUModel output)
    bare = GRUModel.from_torch(tm.gru)
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "cell_output"}], intervention_types=jv.CollectIntervention),
        bare,
    )
    (_, collected), _ = jm({"inputs_embeds": BASE}, unit_locations={"base": [0, 1, 2, 3, 4]})
    with torch.no_grad():
        _close(collected[0], tm.gru(inputs_embeds=torch.tensor(BASE))[0].numpy())
    # pyvene's unit name for time steps, once jaxvene's IntervenableModel maps "t" to "pos"
    reps = [{"layer": 0, "component": "cell_output", "unit": "t"}]
    try:
        jv.IntervenableModel(jv.IntervenableConfig(reps), model)
    except ValueError as err:
        pytest.skip(f"unit 't' is not accepted yet: {err}")
    locs = {"sources->base": ([[[1], [2]]], [[[3], [0]]])}
    _close(_jaxvene(model, reps, BASE, SRC, locs), _jaxvene(model, [dict(reps[0], unit="pos")], BASE, SRC, locs))
