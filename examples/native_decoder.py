"""Activation patching on a native decoder read from a HF checkpoint folder, end to end.

    python examples/native_decoder.py            # builds a tiny Llama-3.2-style checkpoint, patches it
    python examples/native_decoder.py --checkpoint ~/models/Llama-3.2-1B \\
        --clean "The Eiffel Tower is in the city of" --corrupt "The Colosseum is in the city of"
    python examples/native_decoder.py --devices 8   # the same, params sharded over 8 (simulated) devices

What it does, on any Llama / Mistral / Qwen / Gemma / Phi-3 / OLMo 2 / GPT-NeoX checkpoint:

1. `jv.from_pretrained(folder, dtype=..., mesh=..., sharding=...)` reads `config.json` and the
   safetensors tensor by tensor (each device reads only its slice), and `jv.load_tokenizer`
   its tokenizer. Without `--checkpoint`, the example first writes a tiny random model in HF's
   format (Llama 3 rotary scaling, grouped-query attention) with the word-level tokenizer of
   jaxvene's shipped facts model, so it runs anywhere, without PyTorch or a download.
2. `jv.sweep` patches `block_output` from the clean prompt into the corrupted one at every
   (layer, position), as one compiled program, and prints how much of the clean prediction each
   cell restores (1 = all of it). A heatmap goes to `jaxvene-output/`.
3. `attention_weight` (the attention probabilities per head, which only jaxvene's own attention
   code exposes) is collected at the last token of the last layer.
4. `generate` continues the clean prompt greedily, through the KV cache.

On the random tiny model the table holds only what must be true of any causal decoder: at the
last layer, patching the last position restores everything and earlier positions nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np

TINY_LLAMA = dict(
    model_type="llama",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    },
    tie_word_embeddings=True,
    rms_norm_eps=1e-5,
)


def build_tiny_checkpoint(folder: str, seed: int = 0) -> str:
    """A random Llama-3.2-style checkpoint in HF's format, with the facts model's tokenizer."""
    import json

    import jaxvene as jv
    from jaxvene.pretrained._facts import MODEL_DIR

    tokenizer_file = os.path.join(MODEL_DIR, "tokenizer.json")
    with open(tokenizer_file) as f:
        vocab = len(json.load(f)["model"]["vocab"])
    jv.NativeDecoder.random({**TINY_LLAMA, "vocab_size": vocab}, seed=seed, scale=0.2).save_pretrained(folder)
    shutil.copy(tokenizer_file, os.path.join(folder, "tokenizer.json"))
    return folder


def encode(tokenizer, text: str) -> np.ndarray:
    """Token ids `(1, T)` from a transformers tokenizer or a `tokenizers.Tokenizer`."""
    ids = tokenizer(text)["input_ids"] if callable(tokenizer) else tokenizer.encode(text).ids
    return np.asarray([ids])


def decode(tokenizer, ids) -> str:
    return tokenizer.decode([int(i) for i in ids])


def tensor_parallel(n_devices: int):
    """A 1-D "model" mesh, and jaxvene's tensor-parallel rules over it."""
    import jax
    from jax.sharding import Mesh

    from jaxvene.models.decoder import tensor_parallel as rules

    return Mesh(np.asarray(jax.devices()[:n_devices]), ("model",)), rules("model")


def main(
    checkpoint: str | None = None,
    clean: str = "The Ulmar Harbor is in the city of",
    corrupt: str = "The Tarsk Tower is in the city of",
    dtype: str = "float32",
    devices: int = 1,
    out: str = "jaxvene-output",
    progress: bool = True,
) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxvene as jv

    tmp = None
    if checkpoint is None:
        tmp = tempfile.mkdtemp()
        checkpoint = build_tiny_checkpoint(tmp)
    try:
        mesh, rules = tensor_parallel(devices) if devices > 1 else (None, None)
        model = jv.from_pretrained(checkpoint, dtype=getattr(jnp, dtype), mesh=mesh, sharding=rules)
        tokenizer = jv.load_tokenizer(checkpoint)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp)
    print(model)
    base, source = encode(tokenizer, corrupt), encode(tokenizer, clean)
    if base.shape != source.shape:
        raise SystemExit(f"the prompts must have as many tokens: {source.shape[1]} vs {base.shape[1]}")
    clean_logits = np.asarray(model(source).logits[0, -1], np.float32)
    target = int(np.argmax(clean_logits))

    def logprob(logits):  # of the clean prediction, at the last position
        return jax.nn.log_softmax(logits[:, -1].astype(jnp.float32))[:, target]

    hi = float(logprob(model(source).logits)[0])
    lo = float(logprob(model(base).logits)[0])
    grid = jv.sweep(model, {"input_ids": base}, {"input_ids": source}, metric=logprob, progress=progress)
    restored = (grid[..., 0] - lo) / (hi - lo)
    L, T = restored.shape
    tokens = [decode(tokenizer, [t]) for t in source[0]]
    print(f"\nclean prediction {decode(tokenizer, [target])!r}: log p {hi:.3f} clean, {lo:.3f} corrupted")
    print("restored by patching block_output from the clean prompt (rows: layers; columns: tokens)")
    print("       " + " ".join(f"{t[:7]:>7}" for t in tokens))
    for layer in range(L):
        print(f"L{layer:<5} " + " ".join(f"{v:7.2f}" for v in restored[layer]))

    collect = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": L - 1, "component": "attention_weight", "unit": "h.pos"}],
            intervention_types=jv.CollectIntervention,
        ),
        model,
    )
    heads = list(range(model.config.num_attention_heads))
    (_, collected), _ = collect({"input_ids": source}, unit_locations={"base": [[[heads], [[T - 1]]]]})
    attention = np.asarray(collected[0][0, :, 0], np.float32)  # (heads, keys) at the last token
    print(f"\nlast layer, last token: most attended token per head: {[tokens[k] for k in attention.argmax(-1)]}")

    gen = jv.IntervenableModel(
        jv.IntervenableConfig([{"layer": 0, "component": "block_output"}], intervention_types=jv.AdditionIntervention),
        model,
    )
    _, continuation = gen.generate(  # a zero addition: the plain model, through the KV cache
        {"input_ids": source}, source_representations=jnp.zeros(model.config.hidden_size), max_new_tokens=5
    )
    text = decode(tokenizer, np.asarray(continuation)[0, T:])
    print(f"greedy continuation of the clean prompt: {text!r}")

    picture = None
    if out:
        figure = jv.analysis.plot_grid(
            restored,
            row_label="layer",
            column_label="patched token",
            columns=tokens,
            title=f"block_output patching: how much of the clean prediction {decode(tokenizer, [target])!r} returns",
            colorbar_label="fraction restored",
            cmap="Purples",
            vmin=0.0,
            vmax=1.0,
        )
        picture = os.path.abspath(
            jv.analysis.save_figure(figure, os.path.join(out, "native_block_output_patching.png"))
        )
        print(f"heatmap: {picture}")
    return {"restored": restored, "attention": attention, "continuation": np.asarray(continuation), "picture": picture}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="a HF checkpoint folder (or a hub name in the local HF cache)")
    ap.add_argument("--clean", default="The Ulmar Harbor is in the city of")
    ap.add_argument("--corrupt", default="The Tarsk Tower is in the city of")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--devices", type=int, default=1, help="shard the params over this many devices")
    ap.add_argument("--out", default="jaxvene-output")
    a = ap.parse_args()
    if a.devices > 1 and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={a.devices}"  # CPU: simulated devices
    main(a.checkpoint, a.clean, a.corrupt, a.dtype, a.devices, a.out)
