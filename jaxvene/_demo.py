"""The demo behind `python -m jaxvene demo`: interchange interventions on a small GPT-2.

Until the project ships its own trained models, the demo builds a small random GPT-2 from a
seed, patches the residual stream (`block_output`) of a source run into a base run at every
layer and position, and prints how far each patch moves the base's last-token prediction
toward the source's.
"""

from __future__ import annotations

import os
import warnings

import numpy as np


def _model(seed: int = 0):
    import transformers

    config = transformers.GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=100, n_positions=32,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2)
    return transformers.FlaxGPT2LMHeadModel(config, seed=seed)


def run_demo(out_dir: str = "jaxvene-output") -> None:
    warnings.filterwarnings("ignore")
    import jax

    import jaxvene as jv

    model = _model()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 100, (1, 6))
    source = base.copy()
    source[0, 2] = (base[0, 2] + 50) % 100  # the inputs differ at position 2 only
    clean_base = np.asarray(model(base).logits[0, -1])
    clean_source = np.asarray(model(source).logits[0, -1])
    gap = np.linalg.norm(clean_source - clean_base)
    n_layers, n_pos = model.config.n_layer, base.shape[1]
    print(f"GPT-2 (random, seed 0): {n_layers} layers x {model.config.n_embd} wide; inputs differ at position 2.\n")
    effect = np.zeros((n_layers, n_pos))
    for layer in range(n_layers):
        config = jv.IntervenableConfig([{"layer": layer, "component": "block_output", "unit": "pos"}],
                                       intervention_types=jv.VanillaIntervention)
        patcher = jv.IntervenableModel(config, model)
        for pos in range(n_pos):
            _, out = patcher({"input_ids": base}, [{"input_ids": source}], {"sources->base": pos})
            patched = np.asarray(out.logits[0, -1])
            effect[layer, pos] = 1.0 - np.linalg.norm(patched - clean_source) / gap
    header = "layer \\ pos " + " ".join(f"{p:>6d}" for p in range(n_pos))
    print("How far patching block_output moves the base's last-token logits to the source's")
    print("(1 - |patched - source| / |base - source|; 1 = all the way):")
    print(header)
    for layer in range(n_layers):
        print(f"{layer:>11d} " + " ".join(f"{v:6.2f}" for v in effect[layer]))
    print("\nThe effect sits at position 2 (where the inputs differ) in early layers and moves to the")
    print("last position in late layers: information flows from the differing token to the output.")
    _save_heatmap(effect, out_dir)
    del jax


def _save_heatmap(effect, out_dir: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no picture written)")
        return
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "patching_block_output.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    im = ax.imshow(effect, cmap="Purples", aspect="auto", vmin=min(0.0, effect.min()), vmax=max(1.0, effect.max()))
    ax.set_xlabel("position")
    ax.set_ylabel("layer")
    ax.set_title("block_output patching: share restored")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"Heatmap written to {os.path.abspath(path)}")
