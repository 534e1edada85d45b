"""pyvene's MLP classifier in Flax: same logits and same interventions as pyvene."""

import numpy as np
import pytest
import torch

import jaxvene as jv


@pytest.fixture(scope="module")
def mlps():
    pv = pytest.importorskip("pyvene")
    torch.manual_seed(0)
    config = pv.models.mlp.modelings_mlp.MLPConfig(
        h_dim=6, n_layer=3, num_classes=2, activation_function="relu", pdrop=0.0, include_emb=False
    )
    torch_model = pv.models.mlp.modelings_mlp.MLPForClassification(config).eval()
    return pv, torch_model, jv.MLPForClassification.from_torch(torch_model)


X = np.random.default_rng(0).normal(size=(4, 1, 6)).astype(np.float32)
XS = np.random.default_rng(1).normal(size=(4, 1, 6)).astype(np.float32)


def test_logits_equal_pyvene_model(mlps):
    _, torch_model, model = mlps
    with torch.no_grad():
        ref = torch_model(inputs_embeds=torch.tensor(X), return_dict=True).logits.numpy()
    np.testing.assert_allclose(model({"inputs_embeds": X})["logits"], ref, atol=1e-5)


@pytest.mark.parametrize("component", ["block_input", "block_output", "mlp_activation"])
def test_subspace_interchange_equals_pyvene(mlps, component):
    pv, torch_model, model = mlps
    rep = {"layer": 1, "component": component, "subspace_partition": [[0, 3], [3, 6]]}
    pv_model = pv.IntervenableModel(
        pv.IntervenableConfig([rep], intervention_types=pv.VanillaIntervention), torch_model
    )
    with torch.no_grad():
        _, ref = pv_model(
            {"inputs_embeds": torch.tensor(X)},
            [{"inputs_embeds": torch.tensor(XS)}],
            {"sources->base": 0},
            subspaces=[[[1]] * 4],
        )
    jm = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), model)
    _, out = jm({"inputs_embeds": X}, [{"inputs_embeds": XS}], {"sources->base": 0}, subspaces=[[[1]] * 4])
    np.testing.assert_allclose(out["logits"], ref[0].numpy(), atol=1e-5)
    with pytest.raises(IndexError, match="layer 3 is out of range"):
        jv.IntervenableModel(jv.IntervenableConfig([{**rep, "layer": 3}]), model)
