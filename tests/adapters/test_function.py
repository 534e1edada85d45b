"""Any JAX model: plain functions with taps, Flax linen modules, Equinox models."""

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

X = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32))
XS = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32))
W1 = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32))
W2 = jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)).astype(np.float32))


def tapped_fn(params, inputs):
    h = jv.tap("hidden", jnp.tanh(inputs["x"] @ params["w1"]))
    return {"out": h @ params["w2"]}


def hand_edited(params, x, patch_pos, patch_value):
    h = jnp.tanh(x @ params["w1"])
    h = h.at[:, patch_pos].set(patch_value)
    return h @ params["w2"]


PARAMS = {"w1": W1, "w2": W2}


def test_taps_in_plain_functions():
    adapter = jv.FunctionAdapter(tapped_fn, PARAMS, {"x": X})
    assert adapter.sites() == {"hidden": (3, 5, 6)}
    np.testing.assert_array_equal(tapped_fn(PARAMS, {"x": X})["out"], X @ W1 @ W2 * 0 + jnp.tanh(X @ W1) @ W2)
    model = jv.IntervenableModel(jv.IntervenableConfig([{"component": "hidden"}]), adapter)
    _, out = model({"x": X}, [{"x": XS}], {"sources->base": (1, 3)})
    source_hidden = jnp.tanh(XS @ W1)[:, 1]
    np.testing.assert_allclose(out["out"], hand_edited(PARAMS, X, 3, source_hidden), atol=1e-6)
    # under grad: the gradient through a constant source equals the hand-edited function's
    add = jv.IntervenableModel(
        jv.IntervenableConfig([{"component": "hidden"}], intervention_types=jv.AdditionIntervention), adapter
    )
    b, s, locs, subs, _ = add.prepare({"x": X}, None, {"base": 2})

    def ours(v):
        out, _ = jv.core.run(adapter, add.plan(), PARAMS, add.intervention_params(), b, s, locs, subs, (v,))
        return out["out"].sum()

    def theirs(v):
        h = jnp.tanh(X @ W1)
        return (h.at[:, 2].add(v) @ W2).sum()

    v = jnp.ones((6,)) * 0.3
    np.testing.assert_allclose(jax.jit(jax.grad(ours))(v), jax.grad(theirs)(v), rtol=1e-5)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(6, name="up")(x))
        return nn.Dense(2, name="down")(h), h


def test_flax_module_sites_and_patching():
    module = MLP()
    variables = module.init(jax.random.key(0), X)
    adapter = jv.FlaxModuleAdapter(module, variables, X)
    sites = jv.list_sites(adapter)
    assert sites["up.output"] == (3, 5, 6)
    assert sites["down.input"] == (3, 5, 6)
    assert sites["output"] == (3, 5, 2) and sites["output.1"] == (3, 5, 6)
    model = jv.IntervenableModel(
        jv.IntervenableConfig([{"component": "down.input"}], intervention_types=jv.ZeroIntervention), adapter
    )
    _, (logits, hidden) = model(X, unit_locations={"base": 4})
    p = variables["params"]
    h = jax.nn.relu(X @ p["up"]["kernel"] + p["up"]["bias"]).at[:, 4].set(0.0)
    np.testing.assert_allclose(logits, h @ p["down"]["kernel"] + p["down"]["bias"], atol=1e-5)
    with pytest.raises(ValueError, match="unknown site 'mid.output'.*up.output"):
        jv.IntervenableModel(jv.IntervenableConfig([{"component": "mid.output"}]), adapter)


class Batched(eqx.Module):
    """Applies an Equinox layer to a batch (taps must see the batch axis)."""

    layer: eqx.nn.Linear

    def __call__(self, x):
        return jax.vmap(self.layer)(x)


class EqxMLP(eqx.Module):
    up: Batched
    down: Batched

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.up = Batched(eqx.nn.Linear(4, 6, key=k1))
        self.down = Batched(eqx.nn.Linear(6, 2, key=k2))

    def __call__(self, x):  # x: (batch, 4) -> (batch, 2)
        return self.down(jax.nn.relu(self.up(x)))


def test_equinox_model_by_surgery():
    mlp = EqxMLP(jax.random.key(0))
    x, xs = X[:, 0], XS[:, 0]
    adapter = jv.equinox_adapter(mlp, x, where={"up": lambda m: m.up})
    assert adapter.sites()["up.output"] == (3, 6)
    np.testing.assert_allclose(adapter.apply(adapter.params, x), mlp(x), atol=1e-6)
    config = jv.IntervenableConfig([{"component": "up.output", "subspace_partition": [[0, 3], [3, 6]]}])
    model = jv.IntervenableModel(config, adapter)
    _, out = model(x, [xs], {"sources->base": 0}, subspaces=1)
    h = mlp.up(x).at[:, 3:].set(mlp.up(xs)[:, 3:])
    np.testing.assert_allclose(out, mlp.down(jax.nn.relu(h)), atol=1e-5)


def scanned_model(params, inputs):
    """Three stacked tanh layers run with jaxvene.scan_layers; a tap inside the scan."""

    def layer(h, w):
        return jv.tap("block.output", jnp.tanh(h @ w)), None

    h, _ = jv.scan_layers(layer, inputs["x"], params["w"])
    return {"out": h}


def test_scanned_layers_are_addressed_by_layer_index():
    w = jnp.asarray(np.random.default_rng(4).normal(size=(3, 4, 4)).astype(np.float32)) * 0.7
    params = {"w": w}
    adapter = jv.FunctionAdapter(scanned_model, params, {"x": X})
    assert adapter.layers() == {"block.output": 3}
    np.testing.assert_allclose(
        scanned_model(params, {"x": X})["out"], jnp.tanh(jnp.tanh(jnp.tanh(X @ w[0]) @ w[1]) @ w[2]), atol=1e-6
    )

    def hand(x, xs, layer, src_pos, base_pos):
        hs_src = [xs]
        for k in range(3):
            hs_src.append(jnp.tanh(hs_src[-1] @ w[k]))
        h = x
        for k in range(3):
            h = jnp.tanh(h @ w[k])
            if k == layer:
                h = h.at[:, base_pos].set(hs_src[k + 1][:, src_pos])
        return h

    for layer in (0, 1):
        model = jv.IntervenableModel(jv.IntervenableConfig([{"layer": layer, "component": "block.output"}]), adapter)
        _, out = model({"x": X}, [{"x": XS}], {"sources->base": (2, 4)})
        np.testing.assert_allclose(out["out"], hand(X, XS, layer, 2, 4), atol=1e-5)
    collect = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 1, "component": "block.output"}], intervention_types=jv.CollectIntervention),
        adapter,
    )
    (_, collected), _ = collect({"x": X}, unit_locations={"base": 3})
    np.testing.assert_allclose(collected[0][:, 0], jnp.tanh(jnp.tanh(X @ w[0]) @ w[1])[:, 3], atol=1e-6)
    with pytest.raises(IndexError, match="layer 3 is out of range.*scan over 3 layers"):
        jv.IntervenableModel(jv.IntervenableConfig([{"layer": 3, "component": "block.output"}]), adapter)


def test_taps_under_vmap_over_locations():
    adapter = jv.FunctionAdapter(tapped_fn, PARAMS, {"x": X})
    model = jv.IntervenableModel(jv.IntervenableConfig([{"component": "hidden"}]), adapter)
    b, s, _, subs, consts = model.prepare({"x": X}, [{"x": XS}], {"sources->base": 0})

    def out_at(pos):
        loc = jnp.full((3, 1), pos, jnp.int32)
        out, _ = jv.core.run(
            adapter, model.plan(), PARAMS, model.intervention_params(), b, s, ((loc, loc),), subs, consts
        )
        return out["out"]

    swept = jax.jit(jax.vmap(out_at))(jnp.arange(5))
    for p in range(5):
        np.testing.assert_allclose(swept[p], hand_edited(PARAMS, X, p, jnp.tanh(XS @ W1)[:, p]), atol=1e-5)


class ScanLayer(eqx.Module):
    linear: eqx.nn.Linear

    def __call__(self, h):  # (batch, seq, dim): the tap sees the batch axis
        return jnp.tanh(jax.vmap(jax.vmap(self.linear))(h))


class StackedEqx(eqx.Module):
    """Equinox layers stacked on a leading axis (made with `eqx.filter_vmap`) and run with
    `jaxvene.scan_layers`, a drop-in for `lax.scan`."""

    layers: ScanLayer

    def __init__(self, key, n_layers=3, dim=4):
        keys = jax.random.split(key, n_layers)
        self.layers = eqx.filter_vmap(lambda k: ScanLayer(eqx.nn.Linear(dim, dim, key=k)))(keys)

    def __call__(self, x):
        dynamic, static = eqx.partition(self.layers, eqx.is_array)

        def body(h, layer_params):
            return eqx.combine(layer_params, static)(h), None

        h, _ = jv.scan_layers(body, x, dynamic)
        return h


def test_equinox_stacked_layers_run_with_scan():
    """Surgery on the stacked module taps every layer; `layer=l` addresses scan iteration l."""
    model = StackedEqx(jax.random.key(5))
    adapter = jv.equinox_adapter(model, X, where={"block": lambda m: m.layers})
    assert adapter.layers() == {"block.input": 3, "block.output": 3}
    np.testing.assert_allclose(adapter.apply(adapter.params, X), model(X), atol=1e-6)

    def layer(k):
        return jax.tree_util.tree_map(lambda a: a[k] if eqx.is_array(a) else a, model.layers)

    def hand(x, xs, at, pos):  # the source's layer-`at` output written into the base by hand
        src = xs
        for k in range(at + 1):
            src = layer(k)(src)
        h = x
        for k in range(3):
            h = layer(k)(h)
            if k == at:
                h = h.at[:, pos].set(src[:, pos])
        return h

    for at in (0, 2):
        patch = jv.IntervenableModel(jv.IntervenableConfig([{"layer": at, "component": "block.output"}]), adapter)
        _, out = patch(X, [XS], {"sources->base": 1})
        np.testing.assert_allclose(out, hand(X, XS, at, 1), atol=1e-5)


def test_intervention_ops_carry_the_taps_name_scope():
    """Inside a run, what jaxvene does at a tap sits in `jax.named_scope(<tap name>)`, so
    profiles and HLO dumps show the site by name."""
    adapter = jv.FunctionAdapter(tapped_fn, PARAMS, {"x": X})
    model = jv.IntervenableModel(
        jv.IntervenableConfig([{"component": "hidden"}], intervention_types=jv.ZeroIntervention), adapter
    )
    b, s, locs, subs, consts = model.prepare({"x": X}, None, {"base": 1})

    def run(b):
        return jv.core.run(adapter, model.plan(), PARAMS, model.intervention_params(), b, s, locs, subs, consts)[0]

    hlo = jax.jit(run).lower(b).as_text(debug_info=True)
    assert "/hidden/" in hlo
    plain = jax.jit(lambda x: tapped_fn(PARAMS, {"x": x})["out"]).lower(X).as_text(debug_info=True)
    assert "/hidden/" not in plain  # outside a run a tap is the identity: no ops, nothing to name
