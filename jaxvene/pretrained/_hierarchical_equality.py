"""The hierarchical-equality MLP that jaxvene ships (the model of pyvene's DAS tutorial)."""

from __future__ import annotations

import os
from pathlib import Path

#: The shipped model folder (`config.json`, `model.safetensors`).
MODEL_DIR = Path(__file__).resolve().parent / "hierarchical_equality_mlp"


def load_hierarchical_equality_model(path: str | os.PathLike | None = None):
    """The trained `jaxvene.MLPForClassification` for (W == X) == (Y == Z): inputs
    `{"inputs_embeds": (B, 16)}` (four vectors of 4 numbers in [-1, 1]), 2-way logits.
    Rebuild it with `python -m jaxvene.pretrained.train_hierarchical_equality`."""
    from ..models.mlp import MLPForClassification

    folder = MODEL_DIR if path is None else Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"model folder {folder} is missing; rebuild it with "
            "`python -m jaxvene.pretrained.train_hierarchical_equality`"
        )
    return MLPForClassification.from_pretrained(str(folder))
