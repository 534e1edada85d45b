"""Trainable interventions against pyvene on the same weights, orthogonality, gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")

import jaxvene as jv  # noqa: E402

N = 12
B = np.random.default_rng(0).normal(size=(4, N)).astype(np.float32)
S = np.random.default_rng(1).normal(size=(4, N)).astype(np.float32)
TB, TS = torch.tensor(B), torch.tensor(S)


def _pv(iv, *args, **kwargs):
    with torch.no_grad():
        return iv(TB, TS, *args, **kwargs).numpy()


def _weight(pv_iv):
    return jnp.asarray(pv_iv.rotate_layer.weight.detach().numpy())


def test_rotated_space_parity_with_subspaces():
    torch.manual_seed(0)
    theirs = pv.RotatedSpaceIntervention(embed_dim=N)
    ours = jv.RotatedSpaceIntervention.from_matrix(_weight(theirs))
    np.testing.assert_allclose(ours.rotation, _weight(theirs), atol=1e-5)
    np.testing.assert_allclose(ours(B, S), _pv(theirs), atol=1e-5)
    np.testing.assert_allclose(ours(B, S, jnp.array([[0, 1, 2]] * 4)), _pv(theirs, [[0, 1, 2]] * 4), atol=1e-5)


def test_low_rank_parity():
    torch.manual_seed(0)
    theirs = pv.LowRankRotatedSpaceIntervention(embed_dim=N, low_rank_dimension=3)
    ours = jv.LowRankRotatedSpaceIntervention.from_matrix(_weight(theirs))
    np.testing.assert_allclose(ours(B, S), _pv(theirs), atol=1e-5)


def test_boundless_and_sigmoid_masks_parity():
    torch.manual_seed(0)
    theirs = pv.BoundlessRotatedSpaceIntervention(embed_dim=N)
    ours = eqx.tree_at(lambda m: m.raw, jv.BoundlessRotatedSpaceIntervention(N), _weight(theirs))
    np.testing.assert_allclose(ours(B, S), _pv(theirs), atol=1e-5)
    theirs.temperature.data = torch.tensor(0.5)
    with torch.no_grad():
        theirs.intervention_boundaries.data = torch.tensor([0.3])
    tuned = eqx.tree_at(lambda m: m.intervention_boundaries, ours.set_temperature(0.5), jnp.array([0.3]))
    np.testing.assert_allclose(tuned(B, S), _pv(theirs), atol=1e-5)
    theirs = pv.SigmoidMaskRotatedSpaceIntervention(embed_dim=N)
    ours = eqx.tree_at(lambda m: m.raw, jv.SigmoidMaskRotatedSpaceIntervention(N), _weight(theirs))
    np.testing.assert_allclose(ours(B, S), _pv(theirs), atol=1e-5)
    theirs = pv.SigmoidMaskIntervention(embed_dim=N)
    with torch.no_grad():
        theirs.mask.data = torch.linspace(-0.02, 0.02, N)
    ours = eqx.tree_at(lambda m: m.mask, jv.SigmoidMaskIntervention(N), jnp.linspace(-0.02, 0.02, N))
    np.testing.assert_allclose(ours(B, S), _pv(theirs), atol=1e-5)


def test_jumprelu_sae_parity_and_error_term():
    rng = np.random.default_rng(2)
    weights = {
        k: rng.normal(size=shape).astype(np.float32) * 0.3
        for k, shape in {"W_enc": (N, 20), "W_dec": (20, N), "threshold": (20,), "b_enc": (20,), "b_dec": (N,)}.items()
    }
    theirs = pv.JumpReLUAutoencoderIntervention(embed_dim=N, low_rank_dimension=20)
    with torch.no_grad():
        for k, v in weights.items():
            getattr(theirs, k).data = torch.tensor(v)
    ours = jv.JumpReLUAutoencoderIntervention(N, low_rank_dimension=20)
    ours = eqx.tree_at(lambda m: [getattr(m, k) for k in weights], ours, [jnp.asarray(v) for v in weights.values()])
    np.testing.assert_allclose(ours(B, S, jnp.array([[3, 7]] * 4)), _pv(theirs, [[3, 7]] * 4), atol=1e-5)
    # with the error term kept and nothing swapped, the intervention is the identity
    same = jv.JumpReLUAutoencoderIntervention(N, low_rank_dimension=20, keep_error=True)
    same = eqx.tree_at(lambda m: [getattr(m, k) for k in weights], same, [jnp.asarray(v) for v in weights.values()])
    np.testing.assert_allclose(same(B, B), B, atol=1e-5)


def test_pca_and_autoencoder_by_hand():
    comps = np.linalg.qr(np.random.default_rng(3).normal(size=(N, N)))[0][:4]  # (4, N) orthonormal rows
    mean, std = np.linspace(-1, 1, N).astype(np.float32), np.linspace(0.5, 2, N).astype(np.float32)
    pca = jv.PCARotatedSpaceIntervention(N, components=comps, pca_mean=mean, pca_std=std)
    zb, zs = ((B - mean) / std) @ comps.T, ((S - mean) / std) @ comps.T
    zb[:, :2] = zs[:, :2]
    np.testing.assert_allclose(pca(B, S, jnp.array([[0, 1]] * 4)), (zb @ comps) * std + mean, atol=1e-5)
    ae = jv.AutoencoderIntervention(N, latent_dim=6)
    enc = lambda x: np.maximum((x - np.asarray(ae.b_dec)) @ np.asarray(ae.W_enc) + np.asarray(ae.b_enc), 0)
    z = enc(B)
    z[:, 2] = enc(S)[:, 2]
    np.testing.assert_allclose(
        ae(B, S, jnp.array([[2]] * 4)), z @ np.asarray(ae.W_dec) + np.asarray(ae.b_dec), atol=1e-5
    )


def test_orthogonality_holds_after_training():
    ours = jv.RotatedSpaceIntervention(N)
    low = jv.LowRankRotatedSpaceIntervention(N, low_rank_dimension=4)
    target = jnp.asarray(np.random.default_rng(4).normal(size=(4, N)).astype(np.float32))
    for iv in (ours, low):
        params, static = eqx.partition(iv, eqx.is_inexact_array)
        opt = optax.adam(0.05)
        state = opt.init(params)

        @jax.jit
        def step(params, state):
            loss = lambda p: jnp.sum((eqx.combine(p, static)(B, S, jnp.array([[0, 1]] * 4)) - target) ** 2)  # noqa: B023
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = opt.update(grads, state, params)  # noqa: B023
            return optax.apply_updates(params, updates), state, value

        first = None
        for _ in range(50):
            params, state, value = step(params, state)
            first = value if first is None else first
        assert value < first
        trained = eqx.combine(params, static)
        m = trained.rotation if isinstance(trained, jv.RotatedSpaceIntervention) else trained.weight
        np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-5)


@pytest.fixture(scope="module")
def gpt2_pair():
    import tempfile

    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_embd=24,
        n_layer=3,
        n_head=4,
        vocab_size=50,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation="eager",
    )
    torch_model = transformers.GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        flax_model = transformers.FlaxGPT2LMHeadModel.from_pretrained(d, from_pt=True)
    return torch_model, flax_model


@pytest.mark.parametrize("units", [1, 2])
def test_low_rank_das_through_the_model_and_one_step_gradients(gpt2_pair, units):
    torch_model, flax_model = gpt2_pair
    rep = {
        "layer": 1,
        "component": "block_output",
        "unit": "pos",
        "max_number_of_units": units,
        "low_rank_dimension": 3,
    }
    torch.manual_seed(1)
    pm = pv.IntervenableModel(
        pv.IntervenableConfig([rep], intervention_types=pv.LowRankRotatedSpaceIntervention), torch_model
    )
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([rep], intervention_types=jv.LowRankRotatedSpaceIntervention), flax_model
    )
    pv_iv = list(pm.interventions.values())[0]
    pv_iv = pv_iv[0] if isinstance(pv_iv, (list, tuple)) else pv_iv
    w = _weight(pv_iv)
    assert w.shape == (24 * units, 3)
    jm.set_intervention_params([jv.LowRankRotatedSpaceIntervention.from_matrix(w)])
    base = np.random.default_rng(0).integers(0, 50, (3, 6))
    src = np.random.default_rng(1).integers(0, 50, (3, 6))
    positions = [[[1, 2][:units]] * 3]
    locs = {"sources->base": (positions, positions)}
    labels = np.array([3, 7, 11])

    # give pyvene a plain W (a leaf), so its gradient is d loss / d W, not d loss / d raw param
    class PlainLayer(torch.nn.Module):
        def __init__(self, weight):
            super().__init__()
            self.weight = torch.nn.Parameter(weight)

        def forward(self, x):
            return x.to(self.weight.dtype) @ self.weight

    pv_iv.rotate_layer = PlainLayer(torch.tensor(np.asarray(w)))
    w_t = pv_iv.rotate_layer.weight
    _, theirs = pm({"input_ids": torch.tensor(base)}, [{"input_ids": torch.tensor(src)}], locs)
    _, ours = jm({"input_ids": base}, [{"input_ids": src}], locs)
    np.testing.assert_allclose(np.asarray(ours.logits), theirs.logits.detach().numpy(), atol=1e-4)
    # one training step's gradient, w.r.t. the materialised W (both libraries parametrise W)
    loss = torch.nn.functional.cross_entropy(theirs.logits[:, -1], torch.tensor(labels))
    (grad_t,) = torch.autograd.grad(loss, w_t)
    batch = jv.training.make_batch(jm, {"input_ids": base}, [{"input_ids": src}], locs, labels=labels)
    plan, params = jm.plan(), jm.adapter.params

    def loss_of(wmat):
        iv = jv.LowRankRotatedSpaceIntervention.from_matrix(np.asarray(w))
        iv = eqx.tree_at(lambda m: m.raw, iv, wmat)
        # evaluate with W used as is (it is orthonormal already: orthonormal(W) == W)
        out, _ = jv.core.run(
            jm.adapter,
            plan,
            params,
            (iv,),
            batch["base"],
            batch["sources"],
            batch["locations"],
            logit_positions=batch["logit_positions"],
        )
        return jv.training.iit_loss(out["logits"], batch["labels"])

    np.testing.assert_allclose(loss_of(w), loss.item(), rtol=1e-5)
    # d loss / d W through the QR map differs from the raw gradient by the map's Jacobian; compare
    # the directional derivative along a tangent direction of the Stiefel manifold instead
    d = np.random.default_rng(5).normal(size=w.shape).astype(np.float32)
    a = np.asarray(w).T @ d
    tangent = d - np.asarray(w) @ (a + a.T) / 2
    ours_dir = jax.jvp(loss_of, (w,), (jnp.asarray(tangent),))[1]
    theirs_dir = float((grad_t.numpy() * tangent).sum())
    np.testing.assert_allclose(ours_dir, theirs_dir, rtol=1e-3, atol=1e-6)
