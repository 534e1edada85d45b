"""The one configuration every native decoder is an instance of.

A :class:`DecoderConfig` says, field by field, which variant of the LLaMA-style decoder layer a
checkpoint uses: how it normalises (RMSNorm with weight `w` or `1 + w`, where the norms sit),
which projections carry biases, its activation, rotary embedding (:class:`RopeSpec`), which
layers attend through a sliding window, and Gemma's soft-capping and embedding scale. Every
field is a Python scalar or tuple, so a config is hashable and is compiled into the program
(static), never traced. Field names follow HF's `config.json` where HF has the field
(`hidden_size`, `num_key_value_heads`, ...), so code that reads a HF config reads this one.

:mod:`jaxvene.models.decoder._hf` translates each family's `config.json` into one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DecoderConfig", "RopeSpec", "NORMS", "BLOCKS", "ACTIVATIONS"]

#: Norms: RMSNorm scaling by `w` after casting back to the model dtype (`llama`), by `1 + w` in
#: float32 (`gemma`), by `w` in float32 before the cast (`olmo2`); LayerNorm with a bias (`layer`,
#: GPT-NeoX).
NORMS = ("llama", "gemma", "olmo2", "layer")
#: Where the norms sit in a layer: `pre` (LLaMA: norm, sublayer, add), `sandwich` (Gemma 2/3:
#: norm, sublayer, norm, add), `post` (OLMo 2: sublayer, norm, add).
BLOCKS = ("pre", "sandwich", "post")
ACTIVATIONS = ("silu", "gelu_pytorch_tanh", "gelu_new", "gelu", "relu")


@dataclass(frozen=True)
class RopeSpec:
    """A rotary embedding: base `theta`, the `rotary_dim` leading features of each head it
    rotates (the rest pass through), and a scaling `kind` with its parameters.

    Kinds (HF's `rope_type`): `default`; `linear` (positions divided by `factor`); `dynamic`
    (NTK-aware base growing with the longest position in the batch); `llama3` (Llama 3.1's
    per-frequency smoothing); `yarn`; `longrope` (Phi-3's short/long factors, chosen by the
    longest position in the batch).
    """

    theta: float
    rotary_dim: int
    kind: str = "default"
    #: the kind's parameters as sorted `(name, value)` pairs (hashable); lists become tuples
    params: tuple = ()

    def get(self, name: str, default=None):
        return dict(self.params).get(name, default)


@dataclass(frozen=True)
class DecoderConfig:
    """One decoder-only transformer of the LLaMA lineage (see the module docstring)."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope: RopeSpec
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    norm: str = "llama"
    block: str = "pre"
    #: q/k norms: None; `head` (over each head's features, Qwen3 and Gemma 3); `full` (over the
    #: whole q and k projections, OLMo 2)
    qk_norm: str | None = None
    attention_bias: bool = False  # biases on q/k/v
    attention_out_bias: bool = False  # bias on o_proj
    mlp_bias: bool = False
    #: the MLP is `down(act(gate(x)) * up(x))` (True) or `down(act(up(x)))` (GPT-NeoX)
    mlp_gated: bool = True
    #: GPT-NeoX's parallel block: `h + attn(norm1(h)) + mlp(norm2(h))`
    parallel_residual: bool = False
    tie_word_embeddings: bool = False
    embed_scale: bool = False  # Gemma: embeddings times sqrt(hidden_size), in the model dtype
    #: per layer, the sliding window (a query at i sees keys in (i - window, i]) or None
    layer_windows: tuple = ()
    #: Gemma 3: the rotary embedding of the layers with a sliding window (the others use `rope`)
    local_rope: RopeSpec | None = None
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    #: attention scores are `q . k * query_scale` (HF: `head_dim ** -0.5`, Gemma 2/3:
    #: `query_pre_attn_scalar ** -0.5`)
    query_scale: float | None = None
    max_position_embeddings: int | None = None

    def __post_init__(self):
        for name, allowed in (("norm", NORMS), ("block", BLOCKS), ("hidden_act", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise NotImplementedError(f"{name} {getattr(self, name)!r} is not supported (supported: {allowed})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if len(self.layer_windows) != self.num_hidden_layers:
            object.__setattr__(self, "layer_windows", (None,) * self.num_hidden_layers)
        if self.query_scale is None:
            object.__setattr__(self, "query_scale", float(self.head_dim) ** -0.5)

    @property
    def has_windows(self) -> bool:
        return any(w is not None for w in self.layer_windows)

    @property
    def num_layers(self) -> int:
        return self.num_hidden_layers
