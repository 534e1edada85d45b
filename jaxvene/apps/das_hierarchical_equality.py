"""DAS on hierarchical equality, after pyvene's DAS tutorial (Geiger et al.).

The task: four entities W, X, Y, Z (random vectors); the label is (W == X) == (Y == Z). A
3-layer ReLU MLP (width 16) is trained on it (jaxvene ships the trained model:
`jaxvene.pretrained.load_hierarchical_equality_model()`; `--from-scratch` retrains it); then DAS learns a 16 x 16 rotation of
its first hidden layer in which the first 8 dimensions hold the variable WX = (W == X) and the
last 8 hold YZ = (Y == Z): interchanging those halves between inputs must change the output as
the causal model `O = (WX == YZ)` predicts. pyvene's tutorial reports test IIA 0.97.

    python -m jaxvene das                 # full run on the shipped MLP
    python -m jaxvene das --quick         # a reduced run
    python -m jaxvene das --from-scratch  # train the MLP too
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import optax

import jaxvene as jv
from jaxvene.pretrained.train_hierarchical_equality import DIM, factual_data, train_mlp


def causal_model(seed: int) -> jv.CausalModel:
    # entities are abstract ids here; `embed` turns them into vectors afterwards
    ids = list(range(8))
    return jv.CausalModel(
        ["W", "X", "Y", "Z", "WX", "YZ", "O"],
        {"W": ids, "X": ids, "Y": ids, "Z": ids, "WX": [0, 1], "YZ": [0, 1], "O": [0, 1]},
        {"W": [], "X": [], "Y": [], "Z": [], "WX": ["W", "X"], "YZ": ["Y", "Z"], "O": ["WX", "YZ"]},
        {
            "W": lambda: 0,
            "X": lambda: 0,
            "Y": lambda: 0,
            "Z": lambda: 0,
            "WX": lambda w, x: int(w == x),
            "YZ": lambda y, z: int(y == z),
            "O": lambda a, b: int(a == b),
        },
        seed=seed,
    )


class Embedder:
    """Fresh random vectors per sampled input (the tutorial's "infinite" entities): equal ids
    within one input get the same vector, so only equality carries information."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, setting) -> np.ndarray:
        table = {}
        out = []
        for v in ("W", "X", "Y", "Z"):
            if setting[v] not in table:
                table[setting[v]] = self.rng.uniform(-1, 1, DIM).astype(np.float32)
            out.append(table[setting[v]])
        return np.concatenate(out)


def counterfactual_batches(model: jv.CausalModel, das, n: int, batch: int, seed: int):
    """Batches for the two linked DAS interventions: id 0 interchanges WX, 1 YZ, 2 both.
    An intervention that is not used gets the base itself as its source (a no-op)."""
    embed = Embedder(seed)
    kinds = [{"WX"}, {"YZ"}, {"WX", "YZ"}]
    batches = []
    for k in range(n // batch):
        which = kinds[k % 3]
        bases, src_wx, src_yz, labels = [], [], [], []
        for _ in range(batch):
            base = model.sample_input_tree_balanced()
            sources = {
                v: model.sample_input_tree_balanced(output_var=v, output_var_value=int(model.rng.integers(2)))
                for v in which
            }
            labels.append(model.run_interchange(base, sources)["O"])
            b = embed(model.run_forward(base))
            bases.append(b)
            src_wx.append(embed(model.run_forward(sources["WX"])) if "WX" in sources else b)
            src_yz.append(embed(model.run_forward(sources["YZ"])) if "YZ" in sources else b)
        batches.append(
            jv.training.make_batch(
                das,
                {"inputs_embeds": np.stack(bases)},
                [{"inputs_embeds": np.stack(src_wx)}, {"inputs_embeds": np.stack(src_yz)}],
                {"sources->base": 0},
                subspaces=[[[0]] * batch, [[1]] * batch],
                labels=np.asarray(labels),
                logit_position=None,
            )
        )
    return batches


def run(
    n_train: int = 1_000_000,
    mlp_epochs: int = 3,
    das_train: int = 120_000,
    das_epochs: int = 10,
    batch: int = 1000,
    lr: float = 1e-2,
    seed: int = 0,
    progress: bool = True,
    from_scratch: bool = False,
) -> dict:
    t0 = time.time()
    model = causal_model(seed)
    mlp_seconds = 0.0
    if from_scratch:
        mlp = train_mlp(n_train, mlp_epochs, seed)
        mlp_seconds = time.time() - t0
    else:
        from ..pretrained import load_hierarchical_equality_model

        mlp = load_hierarchical_equality_model()
    xt, yt = factual_data(10_000, np.random.default_rng(seed + 1))
    accuracy = float((np.asarray(mlp({"inputs_embeds": xt})["logits"]).argmax(-1) == yt).mean())

    reps = [
        {"layer": 0, "component": "block_output", "subspace_partition": [[0, 8], [8, 16]], "intervention_link_key": 0}
    ] * 2
    das = jv.IntervenableModel(jv.IntervenableConfig(reps, intervention_types=jv.RotatedSpaceIntervention), mlp)
    t1 = time.time()
    train = counterfactual_batches(model, das, das_train, batch, seed + 2)
    t2 = time.time()
    # the MLP is frozen: its source activations at the rotated layer are computed once per batch
    jv.training.train_interventions(das, train, optax.adam(lr), epochs=das_epochs, progress=progress, cached=True)
    das_seconds = time.time() - t2
    test_batches = counterfactual_batches(model, das, 3000, batch, seed + 3)
    iia = jv.training.evaluate_iia(das, test_batches)
    return {
        "task_accuracy": accuracy,
        "iia": iia,
        "seconds": time.time() - t0,
        "mlp_seconds": mlp_seconds,
        "data_seconds": t2 - t1,
        "das_seconds": das_seconds,
        "trainable_parameters": das.count_parameters(),
    }


def main(quick: bool = False, from_scratch: bool = False):
    kwargs: dict[str, Any] = dict(n_train=300_000, mlp_epochs=3, das_train=30_000, das_epochs=10) if quick else {}
    if from_scratch:
        print("Training a 3-layer MLP on (W==X)==(Y==Z), then a DAS rotation of its first layer...")
    else:
        print("The shipped 3-layer MLP for (W==X)==(Y==Z): training a DAS rotation of its first layer...")
    result = run(**kwargs, from_scratch=from_scratch)
    print(f"MLP test accuracy on (W==X)==(Y==Z): {result['task_accuracy']:.3f}")
    print(f"DAS rotation: {result['trainable_parameters']} trainable parameters")
    print(f"interchange intervention accuracy (test): {result['iia']:.3f}   (pyvene's tutorial: 0.97)")
    trained = f"MLP {result['mlp_seconds']:.1f} s + " if from_scratch else ""
    print(
        f"{result['seconds']:.0f} s in all; training: {trained}DAS {result['das_seconds']:.1f} s "
        f"(counterfactual data, sampled example by example from the causal model: {result['data_seconds']:.1f} s)"
    )
