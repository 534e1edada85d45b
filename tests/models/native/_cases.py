"""Tiny random HF PyTorch checkpoints, one per feature of each native decoder family.

A :class:`Case` names a config (kwargs for the family's transformers config class, valid for
transformers 4.57 and 5.x: 5 moved `rope_scaling`/`rope_theta` into `rope_parameters` but still
accepts the old keywords) and the guards that show its features matter: `contrasts` are config
overrides that switch one feature off while keeping the weights; the torch reference with them
must differ from the case itself (so a port that ignored the feature could not pass).

Every model is built from seed 0, then every 1-D parameter (norm weights, biases) is moved off
its initial value (HF initialises biases to 0 and norm weights to 1, or 0 for Gemma's `1 + w`
norms), so a swapped or ignored norm or bias shows in the logits. `initializer_range=0.25`
keeps the activations far from linear, and eager attention gives torch's probabilities.

The checkpoints are written once per process (`save_pretrained`, safetensors) under a temporary
folder; the native models are read back with `jv.from_pretrained` and cached per case and dtype.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

H, KV = 4, 2  # query heads, key/value heads (GQA) wherever the family allows

_COMMON: dict[str, Any] = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=H,
    num_key_value_heads=KV,
    vocab_size=64,
    max_position_embeddings=64,
    initializer_range=0.25,
    rms_norm_eps=1e-6,
    pad_token_id=0,  # Phi-3's default pad id (32000) is outside the tiny vocabulary
    bos_token_id=None,
    eos_token_id=None,  # jaxvene's decode loop never stops early: neither may torch's
    attn_implementation="eager",
)

# model_type -> (config class, causal LM class) in transformers
CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM"),
}

#: a config value meaning "leave this common field out" (GPT-NeoX has no GQA, no RMSNorm)
DROP = object()

# families pyvene 0.1.8 registers (pyvene/models/intervenable_modelcard.py)
PYVENE_FAMILIES = ("llama", "mistral", "gemma", "gemma2", "qwen2")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    model_type: str
    config: dict = dataclasses.field(default_factory=dict)
    long: int = 0  # > 0: also compare on a (2, long) input, past the rope's original window
    contrasts: tuple = ()  # config overrides that turn a feature off (same weights): must differ
    what: str = ""

    @property
    def kwargs(self) -> dict:
        return {k: v for k, v in {**_COMMON, **self.config}.items() if v is not DROP}

    @property
    def pyvene(self) -> bool:
        return self.model_type in PYVENE_FAMILIES


_LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

_NEOX = {"num_key_value_heads": DROP, "rms_norm_eps": DROP, "hidden_dropout": 0.0, "attention_dropout": 0.0}

CASES = {
    c.name: c
    for c in [
        Case("llama", "llama", what="plain LLaMA, GQA 4/2"),
        Case(
            "llama_llama3",
            "llama",
            {"rope_scaling": _LLAMA3, "hidden_size": 64},  # head_dim 16: 8 rotary bands, all three regimes
            long=40,
            contrasts=({"rope_scaling": None},),
            what="rope_scaling llama3 (factor 8, low 1, high 4, original window 16), 40 tokens",
        ),
        Case(
            "llama_linear",
            "llama",
            {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
            contrasts=({"rope_scaling": None},),
            what="rope_scaling linear, factor 2",
        ),
        Case(
            "llama_dynamic",
            "llama",
            {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}, "max_position_embeddings": 16},
            long=24,
            contrasts=({"rope_scaling": None},),
            what="rope_scaling dynamic NTK, factor 2, 24 tokens past max_position_embeddings 16",
        ),
        Case(
            "llama_yarn",
            "llama",
            {
                "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
                "hidden_size": 64,
            },
            long=40,
            contrasts=({"rope_scaling": None},),
            what="rope_scaling yarn, factor 4, original window 16 (attention factor on cos/sin)",
        ),
        Case(
            "mistral",
            "mistral",
            {"sliding_window": 3},
            contrasts=({"sliding_window": None},),
            what="Mistral, sliding_window 3 on every layer",
        ),
        Case("qwen2", "qwen2", {"head_dim": 8}, what="Qwen2: q/k/v biases (pyvene reads config.head_dim)"),
        Case("qwen2_tied", "qwen2", {"head_dim": 8, "tie_word_embeddings": True}, what="Qwen2, tied embeddings"),
        Case(
            "qwen2_sliding",
            "qwen2",
            {"head_dim": 8, "use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1},
            contrasts=({"use_sliding_window": False},),
            what="Qwen2, sliding window 3 from layer max_window_layers=1 on",
        ),
        Case(
            "qwen3",
            "qwen3",
            {"head_dim": 16},
            what="Qwen3: per-head q/k RMSNorm, explicit head_dim 16 (heads x head_dim != hidden)",
        ),
        Case(
            "gemma",
            "gemma",
            {"head_dim": 16, "hidden_activation": "gelu_pytorch_tanh"},
            what="Gemma: head_dim 16 (heads x head_dim != hidden), GeGLU, sqrt(hidden) embedding scale, 1+w norms, tied",
        ),
        Case(
            "gemma2",
            "gemma2",
            {
                "head_dim": 16,
                "query_pre_attn_scalar": 8,
                "attn_logit_softcapping": 5.0,
                "final_logit_softcapping": 3.0,
                "sliding_window": 3,
            },
            contrasts=(
                {"attn_logit_softcapping": None},
                {"final_logit_softcapping": None},
                {"sliding_window": 64},
                {"query_pre_attn_scalar": 16},
            ),
            what="Gemma2: pre/post norms, attention and final softcaps 5 and 3, sliding window 3 on layer 0, query_pre_attn_scalar 8 != head_dim 16",
        ),
        Case(
            "gemma3_text",
            "gemma3_text",
            {
                "num_hidden_layers": 3,
                "head_dim": 16,
                "query_pre_attn_scalar": 8,
                "sliding_window": 3,
                "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                "rope_theta": 10000.0,
                "rope_local_base_freq": 100.0,
                "rope_scaling": {"rope_type": "linear", "factor": 2.0},
            },
            contrasts=(
                {"rope_local_base_freq": 10000.0},
                {"rope_scaling": None},
                {"sliding_window": 64},
            ),
            what="Gemma3 text: q/k norms, sliding/full/sliding layers (window 3), local rope base 100 vs global 10000, linear factor 2 on global layers",
        ),
        Case("phi3", "phi3", what="Phi-3: fused qkv_proj and gate_up_proj"),
        Case(
            "phi3_partial",
            "phi3",
            {"hidden_size": 64, "partial_rotary_factor": 0.5, "sliding_window": 4},
            contrasts=({"partial_rotary_factor": 1.0}, {"sliding_window": None}),
            what="Phi-3: partial_rotary_factor 0.5 (8 of 16 dims rotated), sliding_window 4",
        ),
        Case(
            "phi3_longrope",
            "phi3",
            {
                "rope_scaling": {
                    "type": "longrope",
                    "short_factor": [1.0, 1.25, 1.5, 2.0],
                    "long_factor": [1.0, 2.0, 4.0, 8.0],
                },
                "original_max_position_embeddings": 16,
                "max_position_embeddings": 64,
            },
            long=24,
            contrasts=({"rope_scaling": None},),
            what="Phi-3 longrope: short factors up to 16 tokens, long factors and attention factor past them (24 tokens)",
        ),
        Case(
            "olmo2", "olmo2", what="OLMo-2: q/k RMSNorm over all heads, post-attention and post-feedforward norms only"
        ),
        Case(
            "gpt_neox",
            "gpt_neox",
            {**_NEOX, "rotary_pct": 0.5},
            contrasts=({"rotary_pct": 1.0},),
            what="GPT-NeoX: LayerNorm, parallel residual, fused per-head q/k/v, rotary_pct 0.5",
        ),
        Case(
            "gpt_neox_serial",
            "gpt_neox",
            {**_NEOX, "use_parallel_residual": False},
            contrasts=({"use_parallel_residual": True},),
            what="GPT-NeoX with use_parallel_residual=False",
        ),
    ]
}

# One case per family for the costlier tests (generation, interventions).
FAMILY_CASES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2"]


# ------------------------------------------------------------------------------ torch side
def transformers_class(model_type: str, which: int):
    import transformers

    return getattr(transformers, CLASSES[model_type][which])


def torch_config(case: Case, **overrides):
    kwargs = {**case.kwargs, **overrides}
    if kwargs.get("rope_scaling") is None:
        kwargs.pop("rope_scaling", None)
    return transformers_class(case.model_type, 0)(**kwargs)


def _perturb_vectors(model, seed: int = 0) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


def build_torch(case: Case, **overrides):
    """A fresh torch model of `case` (same weights every call); `overrides` change the config
    but not the weights (they must not change parameter shapes)."""
    import torch

    torch.manual_seed(0)
    model = transformers_class(case.model_type, 1)(torch_config(case)).eval()
    _perturb_vectors(model)
    if overrides:
        other = transformers_class(case.model_type, 1)(torch_config(case, **overrides)).eval()
        other.load_state_dict(model.state_dict())
        return other
    return model


@functools.cache
def torch_model(name: str):
    """The case's torch model, built once per process. (Dynamic NTK rope keeps state between
    calls in torch: it is only ever run at one long length here.)"""
    return build_torch(CASES[name])


_ROOT: list[str] = []


def _root() -> str:
    if not _ROOT:
        _ROOT.append(tempfile.mkdtemp(prefix="jaxvene-native-"))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]


@functools.cache
def checkpoint(name: str) -> str:
    """The case's checkpoint folder (config.json + model.safetensors), written once."""
    folder = os.path.join(_root(), name)
    torch_model(name).save_pretrained(folder, safe_serialization=True)
    return folder


def copy_checkpoint(name: str, dest, edit_config=None) -> str:
    """A copy of the case's checkpoint in `dest`, `edit_config(dict)` applied to config.json."""
    dest = os.fspath(dest)
    shutil.copytree(checkpoint(name), dest, dirs_exist_ok=True)
    if edit_config is not None:
        path = os.path.join(dest, "config.json")
        with open(path) as f:
            raw = json.load(f)
        edit_config(raw)
        with open(path, "w") as f:
            json.dump(raw, f)
    return dest


@functools.cache
def native(name: str, dtype_name: str = "float32"):
    """`jv.from_pretrained` of the case's checkpoint, cached per process (with its compiled
    forward)."""
    import jax.numpy as jnp

    import jaxvene as jv

    return jv.from_pretrained(checkpoint(name), dtype=getattr(jnp, dtype_name))


# ------------------------------------------------------------------------------ inputs
def tokens(shape, seed: int, vocab: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, vocab, shape).astype(np.int32)


BASE = tokens((2, 8), 0)
SRC = tokens((2, 9), 1)


def left_padded(ids: np.ndarray, n: int = 3):
    """Mask the first `n` tokens of row 0; HF's positions for it (`cumsum(mask) - 1`, padded
    slots clipped to 0, which attention never reads)."""
    mask = np.ones_like(ids)
    mask[0, :n] = 0
    positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
    return mask, positions


def torch_logits(model, ids, mask=None, positions=None, **kw) -> np.ndarray:
    import torch

    t = lambda a: None if a is None else torch.tensor(np.asarray(a), dtype=torch.long)
    with torch.no_grad():
        out = model(t(ids), attention_mask=t(mask), position_ids=t(positions), **kw)
    return out.logits.float().numpy()


def assert_close(ours, theirs, atol=1e-4, rtol=1e-4, what=""):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    diff = np.abs(ours - theirs).max() if ours.size else 0.0
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=rtol, err_msg=f"{what}: max abs diff {diff:.3g}")


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
