"""HF `config.json` -> :class:`DecoderConfig`, one translation per family.

Each family is a table of HF's defaults (what `save_pretrained` leaves out of `config.json`
when a value equals the config class's default, so they must be known here) and a function
that reads the fields which change the math. A field that changes the math and that jaxvene
does not implement is refused with an error naming it; a field jaxvene does not know at all
gets a warning naming it. Both transformers 4.x's `rope_theta` / `rope_scaling` and 5.x's
`rope_parameters` (possibly per layer type) are read.

Supported `model_type`s: :data:`FAMILIES`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

from ._config import DecoderConfig, RopeSpec

__all__ = ["FAMILIES", "decoder_config", "supported_model_types"]

# Keys that never change the forward pass (or are read elsewhere: dtype by the loader).
_HARMLESS = frozenset(
    """architectures auto_map bos_token_id eos_token_id pad_token_id sep_token_id torch_dtype dtype
    transformers_version initializer_range use_cache attention_dropout resid_pdrop embd_pdrop
    hidden_dropout _name_or_path name_or_path output_attentions output_hidden_states return_dict
    attn_implementation _attn_implementation tokenizer_class pretraining_tp is_decoder
    tie_encoder_decoder chunk_size_feed_forward problem_type id2label label2id model_type
    cache_implementation image_token_index boi_token_index eoi_token_index use_bidirectional_attention
    rope_theta rope_scaling rope_parameters partial_rotary_factor max_position_embeddings
    original_max_position_embeddings layer_types sliding_window_pattern _sliding_window_pattern
    use_sliding_window max_window_layers sliding_window head_dim num_key_value_heads
    vocab_size hidden_size intermediate_size num_hidden_layers num_attention_heads rms_norm_eps
    hidden_act hidden_activation tie_word_embeddings attention_bias mlp_bias query_pre_attn_scalar
    attn_logit_softcapping final_logit_softcapping rope_local_base_freq dtype_override
    keys_to_ignore_at_inference base_model_tp_plan base_model_pp_plan rotary_emb_base rotary_pct
    layer_norm_eps use_parallel_residual classifier_dropout""".split()
)
# Keys that change the math and that jaxvene refuses whenever they are set (not None/False).
_REFUSED = {
    "quantization_config": "quantised checkpoints are not supported (load the float checkpoint)",
    "num_experts": "mixture-of-experts layers are not implemented",
    "num_local_experts": "mixture-of-experts layers are not implemented",
    "rope_interleave": "interleaved rotary embeddings are not implemented",
    "use_qk_norm": "this q/k norm is not implemented for the family",
    "use_bidirectional_attention": "bidirectional attention (EmbeddingGemma) is not implemented: the decoders are causal",
}
# Keys whose explicit null in config.json switches a feature off (Mistral's sliding_window: null
# is full attention); for every other key a null reads as HF's class default.
_NULL_IS_OFF = frozenset({"sliding_window", "attn_logit_softcapping", "final_logit_softcapping"})

_COMMON = dict(rms_norm_eps=1e-6, tie_word_embeddings=False, rope_theta=10000.0, hidden_act="silu")

#: HF's config-class defaults per family (transformers 4.57), for the fields read here.
DEFAULTS: dict[str, dict] = {
    "llama": dict(
        _COMMON,
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=2048,
        attention_bias=False,
        mlp_bias=False,
    ),
    "mistral": dict(
        _COMMON,
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        sliding_window=4096,
    ),
    "qwen2": dict(
        _COMMON,
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=22016,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=32768,
        use_sliding_window=False,
        sliding_window=4096,
        max_window_layers=28,
    ),
    "qwen3": dict(
        _COMMON,
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=22016,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        head_dim=128,
        max_position_embeddings=32768,
        attention_bias=False,
        use_sliding_window=False,
        sliding_window=4096,
        max_window_layers=28,
    ),
    "gemma": dict(
        _COMMON,
        vocab_size=256000,
        hidden_size=3072,
        intermediate_size=24576,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=256,
        hidden_act="gelu_pytorch_tanh",
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        attention_bias=False,
    ),
    "gemma2": dict(
        _COMMON,
        vocab_size=256000,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        attention_bias=False,
        sliding_window=4096,
        query_pre_attn_scalar=256,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
    ),
    "gemma3_text": dict(
        _COMMON,
        vocab_size=262208,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=131072,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        attention_bias=False,
        sliding_window=4096,
        query_pre_attn_scalar=256,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        rope_local_base_freq=10_000.0,
        sliding_window_pattern=6,
    ),
    "phi3": dict(
        _COMMON,
        vocab_size=32064,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        sliding_window=None,
        partial_rotary_factor=1.0,
    ),
    "gpt_neox": dict(
        _COMMON,
        vocab_size=50432,
        hidden_size=6144,
        intermediate_size=24576,
        num_hidden_layers=44,
        num_attention_heads=64,
        hidden_act="gelu",
        max_position_embeddings=2048,
        rotary_emb_base=10000,
        rotary_pct=0.25,
        layer_norm_eps=1e-5,
        use_parallel_residual=True,
        attention_bias=True,
    ),
    "olmo2": dict(
        _COMMON,
        vocab_size=50304,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        attention_bias=False,
    ),
}


class _Raw:
    """A family's view of a `config.json` dict: `raw[key]`, or HF's default where the key is
    absent (or null, except for the keys in `_NULL_IS_OFF`)."""

    def __init__(self, raw: Mapping, family: str):
        self.raw, self.family, self.defaults = dict(raw), family, DEFAULTS[family]

    def __getitem__(self, key):
        if key in self.raw and (self.raw[key] is not None or key in _NULL_IS_OFF):
            return self.raw[key]
        return self.defaults.get(key)

    def get(self, key, default=None):
        value = self[key]
        return default if value is None else value


# ---------------------------------------------------------------------------- rotary
_ROPE_KINDS = ("default", "linear", "dynamic", "llama3", "yarn", "longrope")
_ROPE_REQUIRED = {
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "yarn": ("factor",),
    "longrope": ("short_factor", "long_factor"),
}


def _rope(c: _Raw, head_dim: int, layer_type: str = "full_attention", theta_key: str = "rope_theta") -> RopeSpec:
    params = c.raw.get("rope_parameters")
    if params and layer_type in params and isinstance(params[layer_type], Mapping):
        params = params[layer_type]  # transformers 5: one dict per layer type (Gemma 3)
    if params:
        params = dict(params)
        field = "rope_parameters"
    else:
        params = dict(c.raw.get("rope_scaling") or {})
        field = "rope_scaling"
    kind = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    theta = float(params.pop("rope_theta", None) or c[theta_key])
    factor = float(params.pop("partial_rotary_factor", None) or c.get("partial_rotary_factor", 1.0))
    if kind not in _ROPE_KINDS:
        raise NotImplementedError(
            f"{field} {dict(c.raw.get(field) or {})!r}: rope_type {kind!r} is not implemented by jaxvene's native "
            f"{c.family} (implemented: {', '.join(_ROPE_KINDS)})"
        )
    missing = [k for k in _ROPE_REQUIRED.get(kind, ()) if params.get(k) is None]
    if kind == "llama3" and "original_max_position_embeddings" in missing and c["original_max_position_embeddings"]:
        missing.remove("original_max_position_embeddings")
    if missing:
        raise ValueError(f"{field} of rope_type {kind!r} needs {', '.join(missing)}")
    if kind in ("dynamic", "yarn", "longrope", "llama3"):
        params.setdefault("max_position_embeddings", c["max_position_embeddings"])
        top = c.raw.get("original_max_position_embeddings")
        if kind == "longrope" and top is not None:  # Phi-3 keeps it at the top level, and HF prefers it there
            params["original_max_position_embeddings"] = top
        elif params.get("original_max_position_embeddings") is None and top is not None:
            params["original_max_position_embeddings"] = top
    rotary_dim = int(head_dim * factor)
    if kind == "default":
        params = {}
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items() if v is not None))
    return RopeSpec(theta=theta, rotary_dim=rotary_dim, kind=kind, params=items)


# ---------------------------------------------------------------------------- layers
def _types_windows(c: _Raw, window, types) -> tuple:
    if window is None:
        return (None,) * int(c["num_hidden_layers"])
    return tuple(int(window) if t == "sliding_attention" else None for t in types)


def _layer_types(c: _Raw, default: Callable[[int], str]) -> list[str]:
    n = int(c["num_hidden_layers"])
    types = c.raw.get("layer_types")
    if types is not None:
        if len(types) != n:
            raise ValueError(f"layer_types has {len(types)} entries for {n} layers")
        unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
        if unknown:
            raise NotImplementedError(
                f"layer_types {unknown} are not implemented (only sliding_attention, full_attention)"
            )
        return list(types)
    return [default(i) for i in range(n)]


def _qwen_windows(c: _Raw) -> tuple:
    window = c["sliding_window"] if c.get("use_sliding_window", False) else None
    types = _layer_types(
        c, lambda i: "sliding_attention" if window is not None and i >= c["max_window_layers"] else "full_attention"
    )
    return _types_windows(c, window, types)


def _all_windows(c: _Raw) -> tuple:
    return _types_windows(c, c.get("sliding_window"), ["sliding_attention"] * int(c["num_hidden_layers"]))


# ---------------------------------------------------------------------------- families
def _common(c: _Raw, **overrides) -> dict:
    heads = int(c["num_attention_heads"])
    hidden = int(c["hidden_size"])
    head_dim = int(c.get("head_dim") or hidden // heads)
    out = dict(
        model_type=c.family,
        vocab_size=int(c["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(c["intermediate_size"]),
        num_hidden_layers=int(c["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(c.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        hidden_act=str(c["hidden_act"]),
        rms_norm_eps=float(c["rms_norm_eps"]),
        tie_word_embeddings=bool(c["tie_word_embeddings"]),
        max_position_embeddings=c["max_position_embeddings"],
    )
    out["rope"] = _rope(c, head_dim)
    out.update(overrides)
    return out


def _llama(c):
    bias = bool(c["attention_bias"])
    return _common(c, attention_bias=bias, attention_out_bias=bias, mlp_bias=bool(c["mlp_bias"]))


def _mistral(c):
    return _common(c, layer_windows=_all_windows(c))


def _qwen2(c):
    return _common(c, attention_bias=True, layer_windows=_qwen_windows(c))


def _qwen3(c):
    bias = bool(c["attention_bias"])
    return _common(c, attention_bias=bias, attention_out_bias=bias, qk_norm="head", layer_windows=_qwen_windows(c))


def _gemma(c):
    bias = bool(c["attention_bias"])
    return _common(c, norm="gemma", embed_scale=True, attention_bias=bias, attention_out_bias=bias)


def _gemma2(c):
    types = _layer_types(c, lambda i: "sliding_attention" if (i + 1) % 2 else "full_attention")
    bias = bool(c["attention_bias"])
    return _common(
        c,
        hidden_act=str(c["hidden_activation"]),
        norm="gemma",
        block="sandwich",
        embed_scale=True,
        attention_bias=bias,
        attention_out_bias=bias,
        layer_windows=_types_windows(c, c["sliding_window"], types),
        attn_logit_softcapping=c["attn_logit_softcapping"],
        final_logit_softcapping=c["final_logit_softcapping"],
        query_scale=float(c["query_pre_attn_scalar"]) ** -0.5,
    )


def _gemma3(c):
    pattern = int(c["sliding_window_pattern"] or c.raw.get("_sliding_window_pattern") or 6)
    types = _layer_types(c, lambda i: "sliding_attention" if (i + 1) % pattern else "full_attention")
    out = _gemma2(c)
    out["layer_windows"] = _types_windows(c, c["sliding_window"], types)
    out["qk_norm"] = "head"
    # HF's Gemma3Attention keeps attn_logit_softcapping but never applies it: so neither does the
    # reference this decoder matches (the released Gemma 3 configs set it to null)
    out["attn_logit_softcapping"] = None
    head_dim = out["head_dim"]
    params = c.raw.get("rope_parameters") or {}
    if "sliding_attention" in params:  # transformers 5
        out["local_rope"] = _rope(c, head_dim, "sliding_attention")
    else:  # transformers 4: the local rope is unscaled, with its own base
        out["local_rope"] = RopeSpec(theta=float(c["rope_local_base_freq"]), rotary_dim=head_dim)
    return out


def _phi3(c):
    return _common(c, layer_windows=_all_windows(c))


def _olmo2(c):
    bias = bool(c["attention_bias"])
    return _common(c, norm="olmo2", block="post", qk_norm="full", attention_bias=bias, attention_out_bias=bias)


def _gpt_neox(c):
    # GPT-NeoX names its rotary base and fraction differently; read them as the others' names
    c.raw.setdefault("rope_theta", c["rotary_emb_base"])
    c.raw.setdefault("partial_rotary_factor", c["rotary_pct"])
    c.raw["rms_norm_eps"] = c["layer_norm_eps"]
    c.raw["num_key_value_heads"] = c["num_attention_heads"]  # multi-head attention only
    bias = bool(c["attention_bias"])
    return _common(
        c,
        norm="layer",
        attention_bias=bias,
        attention_out_bias=bias,
        mlp_bias=True,
        mlp_gated=False,
        parallel_residual=bool(c["use_parallel_residual"]),
    )


#: model_type -> translation of its `config.json`
FAMILIES: dict[str, Callable[[_Raw], dict]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3_text": _gemma3,
    "phi3": _phi3,
    "olmo2": _olmo2,
    "gpt_neox": _gpt_neox,
}


def supported_model_types() -> tuple[str, ...]:
    return tuple(FAMILIES) + ("gemma3",)


def decoder_config(raw: Mapping, where: str = "config.json") -> DecoderConfig:
    """The :class:`DecoderConfig` of a HF `config.json` (as a dict).

    Gemma 3's multimodal checkpoints (`model_type` "gemma3") are read through their
    `text_config` (the language model; the vision tower is not loaded).
    """
    raw = dict(raw)
    model_type = raw.get("model_type")
    if model_type == "gemma3" and isinstance(raw.get("text_config"), Mapping):
        raw = {"model_type": "gemma3_text", **raw["text_config"]}
        model_type = "gemma3_text"
    if model_type not in FAMILIES:
        raise NotImplementedError(
            f"{where} describes model_type {model_type!r}, which jaxvene's native decoders do not implement "
            f"(supported: {', '.join(supported_model_types())})"
        )
    for key, why in _REFUSED.items():
        if raw.get(key):
            raise NotImplementedError(f"{where} sets {key}={raw[key]!r}: {why} in jaxvene's native {model_type}")
    unknown = sorted(k for k in raw if k not in _HARMLESS and not k.startswith("_"))
    if unknown:
        warnings.warn(
            f"{where}: jaxvene's native {model_type} does not read {', '.join(unknown)}; if any of them changes "
            "the model's math, the results will differ from the reference implementation",
            stacklevel=3,
        )
    c = _Raw(raw, model_type)
    fields = FAMILIES[model_type](c)
    rope = fields["rope"]
    if rope.kind == "longrope" and len(rope.get("short_factor")) * 2 != rope.rotary_dim:
        raise ValueError(
            f"{where}: longrope short_factor has {len(rope.get('short_factor'))} entries; the rotary "
            f"dimension {rope.rotary_dim} needs {rope.rotary_dim // 2}"
        )
    return DecoderConfig(**fields)
