"""Interventions called directly, as pyvene's unit tests call them: `interchange_dim` starts at
`embed_dim`, integer inputs are computed in the parameters' float dtype, and pyvene's setters and
`rotate_layer` exist (setters return a new module)."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxvene as jv

torch = pytest.importorskip("torch")
pv = pytest.importorskip("pyvene")

BASE = np.arange(36).reshape(2, 3, 6)
SOURCE = np.arange(36, 72).reshape(2, 3, 6)


def test_vanilla_embed_dim_swaps_only_the_first_embed_dim():
    """pyvene's own test_vanilla_intervention_positive, with its golden output."""
    out = np.asarray(jv.VanillaIntervention(embed_dim=2)(BASE, SOURCE))
    golden = np.array(
        [
            [[36, 37, 2, 3, 4, 5], [42, 43, 8, 9, 10, 11], [48, 49, 14, 15, 16, 17]],
            [[54, 55, 20, 21, 22, 23], [60, 61, 26, 27, 28, 29], [66, 67, 32, 33, 34, 35]],
        ]
    )
    np.testing.assert_array_equal(out, golden)


@pytest.mark.parametrize(
    "name", ["VanillaIntervention", "AdditionIntervention", "SubtractionIntervention", "ZeroIntervention"]
)
@pytest.mark.parametrize("embed_dim", [None, 2, 6])
def test_interchange_dim_defaults_like_pyvene(name, embed_dim):
    theirs_iv = getattr(pv, name)(embed_dim=embed_dim)
    ours_iv = getattr(jv, name)(embed_dim=embed_dim)
    assert ours_iv.interchange_dim == (None if embed_dim is None else embed_dim)
    with torch.no_grad():
        theirs = theirs_iv(torch.tensor(BASE), torch.tensor(SOURCE)).numpy()
    np.testing.assert_array_equal(np.asarray(ours_iv(BASE, SOURCE)), theirs)


def test_collect_with_embed_dim_returns_the_first_embed_dim():
    with torch.no_grad():
        theirs = pv.CollectIntervention(embed_dim=2)(torch.tensor(BASE), None).numpy()
    np.testing.assert_array_equal(np.asarray(jv.CollectIntervention(embed_dim=2)(BASE, None)), theirs)


def test_latent_space_interventions_start_with_everything():
    """Their subspace axis is not the representation: `interchange_dim` starts at None."""
    assert jv.LowRankRotatedSpaceIntervention(6, low_rank_dimension=2).interchange_dim is None
    assert jv.AutoencoderIntervention(6, latent_dim=8).interchange_dim is None
    assert jv.JumpReLUAutoencoderIntervention(6, low_rank_dimension=8).interchange_dim is None
    assert jv.PCARotatedSpaceIntervention(6, components=np.eye(6)[:3]).interchange_dim is None
    assert jv.RotatedSpaceIntervention(6).interchange_dim == 6


def test_set_interchange_dim_returns_a_new_module_matching_pyvene():
    torch.manual_seed(0)
    theirs = pv.RotatedSpaceIntervention(embed_dim=6)
    theirs.set_interchange_dim(2)
    weight = theirs.rotate_layer.weight.detach().numpy()
    ours = jv.RotatedSpaceIntervention.from_matrix(weight)
    changed = ours.set_interchange_dim(2)
    assert ours.interchange_dim == 6 and changed.interchange_dim == 2  # the original is unchanged
    assert isinstance(changed, jv.RotatedSpaceIntervention)
    b = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    s = np.random.default_rng(1).normal(size=(2, 6)).astype(np.float32)
    with torch.no_grad():
        ref = theirs(torch.tensor(b), torch.tensor(s)).numpy()
    np.testing.assert_allclose(np.asarray(changed(b, s)), ref, atol=1e-5)
    # by hand: rotate, take the first 2 rotated dims from the source, rotate back
    r = np.asarray(ours.rotation)
    rb, rs = b @ r, s @ r
    np.testing.assert_allclose(np.asarray(changed(b, s)), np.concatenate([rs[:, :2], rb[:, 2:]], 1) @ r.T, atol=1e-5)
    with pytest.raises(TypeError, match="must be an int"):
        ours.set_interchange_dim(2.5)
    assert ours.set_interchange_dim(None).interchange_dim is None


def test_rotate_layer_is_pyvenes_view_of_the_rotation():
    torch.manual_seed(0)
    theirs = pv.LowRankRotatedSpaceIntervention(embed_dim=6, low_rank_dimension=2)
    weight = theirs.rotate_layer.weight.detach().numpy()
    ours = jv.LowRankRotatedSpaceIntervention.from_matrix(weight)
    np.testing.assert_allclose(np.asarray(ours.rotate_layer.weight), weight, atol=1e-5)
    x = np.arange(12).reshape(2, 6)  # integers, as pyvene's layer takes them
    with torch.no_grad():
        ref = theirs.rotate_layer(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours.rotate_layer(x)), ref, atol=1e-4)
    full = jv.RotatedSpaceIntervention(6)
    np.testing.assert_array_equal(np.asarray(full.rotate_layer.weight), np.asarray(full.rotation))
    for cls in (jv.BoundlessRotatedSpaceIntervention, jv.SigmoidMaskRotatedSpaceIntervention):
        iv = cls(6)
        np.testing.assert_array_equal(np.asarray(iv.rotate_layer.weight), np.asarray(iv.rotation))


def test_boundless_on_integers_matches_pyvenes_golden():
    """pyvene's test_brs_intervention_positive: integer inputs, integer output."""
    base = np.arange(12).reshape(2, 6)
    source = np.arange(12, 24).reshape(2, 6)
    out = np.asarray(jv.BoundlessRotatedSpaceIntervention(embed_dim=6)(base, source))
    np.testing.assert_array_equal(out, [[3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14]])
    assert out.dtype == np.int32


@pytest.mark.parametrize(
    "make, keeps_int",
    [
        (lambda: jv.RotatedSpaceIntervention(6).set_interchange_dim(3), True),
        (lambda: jv.LowRankRotatedSpaceIntervention(6, low_rank_dimension=2), True),
        (lambda: jv.BoundlessRotatedSpaceIntervention(6), True),
        (lambda: jv.SigmoidMaskRotatedSpaceIntervention(6).set_temperature(200.0), True),
        (lambda: jv.AutoencoderIntervention(6, latent_dim=4), True),
        (lambda: jv.PCARotatedSpaceIntervention(6, components=np.eye(6)[:3], pca_std=np.full(6, 2.0)), False),
        (lambda: jv.SigmoidMaskIntervention(6), False),
    ],
)
def test_integer_inputs_compute_in_the_parameters_float_dtype(make, keeps_int):
    """As pyvene: the same numbers as float inputs, truncated back to the integer dtype where
    pyvene casts back (rotations, autoencoder), floats where it does not (PCA, sigmoid mask)."""
    iv = make()
    base, source = np.arange(12).reshape(2, 6), np.arange(12, 24).reshape(2, 6) * 3
    ints = np.asarray(iv(base, source))
    floats = np.asarray(iv(base.astype(np.float32), source.astype(np.float32)))
    if keeps_int:
        assert ints.dtype == np.int32
        np.testing.assert_array_equal(ints, np.trunc(floats).astype(np.int32))
    else:
        assert ints.dtype == np.float32
        np.testing.assert_array_equal(ints, floats)
    assert np.abs(floats).max() > 1  # not the zeros an integer rotation gave


def test_tempered_setters_return_new_modules():
    iv = jv.BoundlessRotatedSpaceIntervention(6)
    cooler = iv.set_temperature(0.1)
    assert float(iv.get_temperature()) == 50.0 and float(cooler.get_temperature()) == pytest.approx(0.1)
    wider = iv.set_intervention_boundaries(0.8)
    assert float(iv.get_boundary_parameters()[0]) == 0.5
    assert float(wider.get_boundary_parameters()[0]) == pytest.approx(0.8)
    mask = jv.SigmoidMaskIntervention(6)
    assert float(mask.set_temperature(2.0).get_temperature()) == 2.0
    assert float(mask.get_temperature()) == pytest.approx(0.01)


def test_set_source_representation_makes_it_sourceless():
    iv = jv.VanillaIntervention(embed_dim=6)
    const = iv.set_source_representation(jnp.full((6,), 7.0))
    assert not iv.is_source_constant and const.is_source_constant
    np.testing.assert_array_equal(np.asarray(const(BASE.astype(np.float32), None)), np.full((2, 3, 6), 7.0))
