"""The native decoder as an object people hold: config, params, a call, and loading.

:class:`NativeDecoder` is what :func:`from_pretrained` returns and what
`jv.IntervenableModel`, `jv.sweep`, `jv.causal_trace`, the patching helpers, `generate` and
training take. It is a thin holder: the computation is :func:`jaxvene.models.decoder.forward`,
a pure function of the (static) config and the params.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._checkpoint import Checkpoint, place
from ._adapter import DecoderAdapter
from ._config import DecoderConfig
from ._forward import forward
from ._hf import decoder_config
from ._outputs import CausalLMOutput
from ._params import BASE_PREFIX, init_params, layout, tree_from_paths

__all__ = ["NativeDecoder", "CausalLMOutput", "from_pretrained"]


class NativeDecoder:
    """A LLaMA-lineage decoder (Llama 1-3.x, Mistral, Qwen2/2.5/3, Gemma 1-3, Phi-3, OLMo 2).

    Args:
      config: the :class:`DecoderConfig` (static: compiled into the program).
      params: the params tree (:func:`jaxvene.models.decoder.layout` gives its paths).
      remat: recompute each layer's activations in the backward pass (`jax.checkpoint`
        around the scanned layer): less memory for training, more compute.
      batch_sharding: a `jax.sharding.Sharding` that splits the batch axis (e.g.
        `NamedSharding(mesh, PartitionSpec("data"))`): the residual stream entering and
        leaving each layer is kept so. With FSDP params (:func:`sharding_rules`) it makes XLA
        gather one layer's weights at a time instead of every device computing the whole
        batch; `from_pretrained(mesh=)` sets it when the mesh has a "data" axis.
    """

    def __init__(
        self,
        config: DecoderConfig,
        params,
        *,
        remat: bool = False,
        batch_sharding=None,
        name_or_path: str | None = None,
        hf_config: Mapping | None = None,
    ):
        self.config = config
        #: the HF `config.json` this model was made from (what :meth:`save_pretrained` writes)
        self.hf_config = None if hf_config is None else dict(hf_config)
        self.params = params
        self.remat = remat
        if batch_sharding is not None and not isinstance(batch_sharding, jax.sharding.NamedSharding):
            raise TypeError(
                f"batch_sharding must be a jax.sharding.NamedSharding of the batch axis, e.g. "
                f'NamedSharding(mesh, PartitionSpec("data")); got {type(batch_sharding).__name__}'
            )
        self.batch_sharding = batch_sharding
        self.name_or_path = name_or_path
        self._adapter = None
        self._jitted: Callable | None = None

    @classmethod
    def random(cls, config: DecoderConfig | Mapping, seed: int = 0, dtype=jnp.float32, scale: float = 0.02):
        """A model with random weights for `config` (a :class:`DecoderConfig` or a HF
        `config.json` dict)."""
        cfg = config if isinstance(config, DecoderConfig) else decoder_config(config)
        hf = None if isinstance(config, DecoderConfig) else config
        return cls(cfg, init_params(cfg, jax.random.key(seed), dtype, scale), hf_config=hf)

    @property
    def dtype(self):
        return self.params["embed_tokens"]["embedding"].dtype

    def __repr__(self) -> str:
        c = self.config
        return (
            f"NativeDecoder({c.model_type}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
            f"{c.num_attention_heads} heads / {c.num_key_value_heads} kv, vocab {c.vocab_size}, {self.dtype})"
        )

    def __call__(self, input_ids, attention_mask=None, position_ids=None, params=None, output_hidden_states=False):
        """Logits (and hidden states) for a batch; compiled once per input shape."""
        inputs = self.jaxvene_adapter().prepare(
            {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        )
        self.jaxvene_adapter().validate(inputs)
        if self._jitted is None:
            self._jitted = jax.jit(self._forward, static_argnames=("hidden_states",))
        out = self._jitted(self.params if params is None else params, inputs, hidden_states=bool(output_hidden_states))
        return CausalLMOutput(**out)

    def _forward(self, params, inputs, hidden_states):
        return forward(
            self.config,
            params,
            inputs["input_ids"],
            inputs["attention_mask"],
            inputs["position_ids"],
            hidden_states=hidden_states,
        )

    def init_cache(self, batch: int, length: int) -> dict:
        """An empty KV cache for `batch` sequences of up to `length` tokens (kv heads only)."""
        c = self.config
        shape = (c.num_hidden_layers, batch, length, c.num_key_value_heads, c.head_dim)
        return {
            "key": jnp.zeros(shape, self.dtype),
            "value": jnp.zeros(shape, self.dtype),
            "index": jnp.array(0, jnp.int32),
        }

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write a HF checkpoint folder (`config.json`, `model.safetensors`) that
        :func:`from_pretrained` and HF's PyTorch classes read. Each file is written to a
        temporary name and renamed, so an interrupted save leaves no half-written file."""
        from safetensors.flax import save_file

        if self.hf_config is None:
            raise ValueError("this model was built from a DecoderConfig alone: there is no config.json to write")
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        prefix = BASE_PREFIX.get(self.config.model_type, "model.")
        tensors: dict[str, list] = {}
        for path, leaf in layout(self.config).items():
            value = self.params
            for key in path:
                value = value[key]
            for layer in range(self.config.num_hidden_layers) if leaf.stacked else [None]:
                name = leaf.tensor if leaf.is_head else prefix + leaf.tensor.format(i=layer)
                part = np.asarray(value[layer] if layer is not None else value)
                tensors.setdefault(name, []).append((leaf.source_rows(), part.T if leaf.transpose else part))
        arrays = {}
        for name, parts in tensors.items():
            if parts[0][0] is None:
                arrays[name] = jnp.asarray(parts[0][1])
                continue
            total = max(int(rows.max()) for rows, _ in parts) + 1
            fused = np.zeros((total, *parts[0][1].shape[1:]), parts[0][1].dtype)
            for rows, part in parts:
                fused[rows] = part
            arrays[name] = jnp.asarray(fused)
        _atomic(
            os.path.join(folder, "model.safetensors"), lambda tmp: save_file(arrays, tmp, metadata={"format": "pt"})
        )
        text = json.dumps(self.hf_config, indent=2, sort_keys=True)
        _atomic(os.path.join(folder, "config.json"), lambda tmp: open(tmp, "w").write(text))

    def jaxvene_adapter(self):
        if self._adapter is None:
            self._adapter = DecoderAdapter(self)
        return self._adapter


# ---------------------------------------------------------------------------- loading
ShardingRules = Mapping[str, Any] | Callable[[str, tuple], Any] | None


def _spec_for(rules: ShardingRules, path: str, shape: tuple):
    from jax.sharding import PartitionSpec

    if rules is None:
        return PartitionSpec()
    if callable(rules):
        return rules(path, shape)
    for pattern, spec in rules.items():
        if re.search(pattern, path):
            return spec
    return PartitionSpec()


def from_pretrained(
    path: str | os.PathLike,
    *,
    dtype=jnp.float32,
    mesh=None,
    sharding: ShardingRules = None,
    remat: bool = False,
    revision: str = "main",
    batch_axis: str | None = "data",
) -> NativeDecoder:
    """Load a HF checkpoint folder (`config.json` + safetensors) as a :class:`NativeDecoder`.

    Tensors are read one at a time, and each device reads only its own slice: with a `mesh`,
    every parameter is placed with `NamedSharding(mesh, spec)`, `spec` from `sharding`, a
    mapping of regular expressions over dotted param paths (`r"layers\\.mlp\\..*kernel"`,
    first match wins) to `PartitionSpec`s of the full shape (the stacked layer axis first),
    or a function `(path, shape) -> PartitionSpec`; unmatched params are replicated. Without
    a mesh, params go to the default device.

    Args:
      path: a checkpoint folder, or a hub name (`"meta-llama/Llama-3.2-1B"`) already in the
        local HF cache (nothing is downloaded; see :func:`jaxvene.models.resolve`), at
        `revision` (a branch or a commit hash).
      dtype: the params' dtype (`jnp.float32` or `jnp.bfloat16`), whatever the file holds.
      mesh, sharding: where the params live (see above).
      remat: rematerialise each layer in the backward pass (see :class:`NativeDecoder`).
      batch_axis: with a `mesh` that has this axis, the batch is taken to be split over it
        (`NativeDecoder(batch_sharding=)`); None, or a mesh without it: no such constraint.
    """
    ck = Checkpoint(path, revision)
    cfg = decoder_config(ck.config, where=os.path.join(ck.folder, "config.json"))
    leaves = layout(cfg)
    base = _base_prefix(ck, leaves)
    expected = _expected_tensors(cfg, leaves, base, ck)
    for name, shape in expected.items():
        if not ck.has(name):
            raise KeyError(f"{ck.folder} has no tensor {name!r}, which this {cfg.model_type} config needs")
        if ck.shapes[name] != shape:
            raise ValueError(f"tensor {name!r} has shape {ck.shapes[name]} but the config implies {shape}")
    flat = {}
    for leaf_path, leaf in leaves.items():
        dotted = ".".join(leaf_path)
        target: jax.sharding.Sharding
        if mesh is None:
            target = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        else:
            target = jax.sharding.NamedSharding(mesh, _spec_for(sharding, dotted, leaf.shape))
        flat[leaf_path] = place(leaf.shape, jnp.dtype(dtype), target, _reader(ck, leaf, base, cfg))
    used = set(expected) | {n for n in ck.where if n.endswith("rotary_emb.inv_freq")}
    if cfg.tie_word_embeddings:
        used |= {n for n in ck.where if n.endswith(("lm_head.weight", "embed_out.weight"))}  # a tied copy
    unused = sorted(n for n in ck.where if n not in used)
    vision = [n for n in unused if "vision" in n or "multi_modal" in n]
    if vision:
        unused = [n for n in unused if n not in vision]
    if unused:
        warnings.warn(
            f"{len(unused)} tensors of {ck.folder} are not used: {', '.join(unused[:6])}"
            + (" ..." if len(unused) > 6 else ""),
            stacklevel=2,
        )
    batch_sharding = None
    if mesh is not None and batch_axis is not None and batch_axis in mesh.axis_names:
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(batch_axis))
    return NativeDecoder(
        cfg,
        tree_from_paths(flat),
        remat=remat,
        batch_sharding=batch_sharding,
        name_or_path=ck.folder,
        hf_config=ck.config,
    )


def _atomic(path: str, write: Callable[[str], object]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _base_prefix(ck: Checkpoint, leaves) -> str:
    """The prefix of the base model's tensors: "model." (HF causal LMs), "" (a bare model),
    "language_model.model." or "model.language_model." (multimodal checkpoints)."""
    embedding = leaves[("embed_tokens", "embedding")].tensor
    name = ck.find(embedding)
    if name is None:
        raise KeyError(f"{ck.folder} has no {embedding} tensor: not a checkpoint of this decoder family")
    return name[: -len(embedding)]


def _hf_name(leaf, base: str, ck: Checkpoint, layer: int | None = None) -> str:
    if leaf.is_head:
        found = ck.find(leaf.tensor)
        if found is None:
            raise KeyError(f"{ck.folder} has no {leaf.tensor} and the config does not tie it to the embeddings")
        return found
    name = leaf.tensor.format(i=layer) if layer is not None else leaf.tensor
    return base + name


def _expected_tensors(cfg, leaves, base, ck) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> the shape the config implies (fused tensors: all their rows)."""
    out: dict[str, tuple[int, ...]] = {}
    layers = range(cfg.num_hidden_layers)
    for leaf in leaves.values():
        shape = leaf.shape[1:] if leaf.stacked else leaf.shape
        if leaf.transpose:
            shape = shape[::-1]
        for layer in layers if leaf.stacked else [None]:
            name = _hf_name(leaf, base, ck, layer)
            if leaf.rows is not None:
                rows = max(max(b for _, b in leaf.rows), out.get(name, (0,))[0])
                shape = (rows, *shape[1:])
            out[name] = tuple(shape)
    return out


def _reader(ck: Checkpoint, leaf, base: str, cfg):
    """`index -> host array` for one leaf: the slice of the HF tensor(s) one device needs."""
    rows = leaf.source_rows()

    def read_one(name, index):
        if leaf.transpose:
            index = index[::-1]
        if rows is None:
            arr = ck.read(name, index)
        else:  # a fused tensor: this leaf's rows, read as one range and picked
            wanted = rows[index[0]]
            lo, hi = int(wanted.min()), int(wanted.max()) + 1
            arr = ck.read(name, (slice(lo, hi), *index[1:]))[wanted - lo]
        return arr.T if leaf.transpose else arr

    def read(index):
        if not leaf.stacked:
            return read_one(_hf_name(leaf, base, ck), index)
        layers = range(*index[0].indices(leaf.shape[0]))
        return np.stack([read_one(_hf_name(leaf, base, ck, l), index[1:]) for l in layers])

    return read
