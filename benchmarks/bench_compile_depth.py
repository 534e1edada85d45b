"""Compile time against depth: jaxvene's native decoder (layers scanned) vs HF Flax LLaMA
(layers unrolled), with pyvene's first call on the same weights for reference.

    python benchmarks/bench_compile_depth.py             # depths 4, 8, 16, 32; width 256
    python benchmarks/bench_compile_depth.py --small     # depths 2, 4, 8; width 64

For each depth: the compile time of the plain forward pass (`jit(...).lower(...).compile()`),
and the first call of a one-site `IntervenableModel` (block_output at the middle layer: trace,
compile and run). The native decoder traces one layer whatever the depth, so its times stay
flat; the unrolled HF Flax model traces and compiles every layer. pyvene (PyTorch, eager) has
no compile step: its first call is there to show what "first call" costs without one.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _common import machine, table


def _llama_config(layers, width, heads, vocab):
    return dict(
        model_type="llama",
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        vocab_size=vocab,
        max_position_embeddings=512,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )


def _seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _row(depth, args, ids, src):
    """One table row: compile and first-call seconds at `depth` layers."""
    import jax
    import jax.numpy as jnp

    import jaxvene as jv

    raw = _llama_config(depth, args.width, args.heads, args.vocab)
    native = jv.NativeDecoder.random(raw, seed=0)
    adapter = native.jaxvene_adapter()
    inputs = adapter.prepare({"input_ids": ids})
    native_compile = _seconds(lambda: jax.jit(adapter.apply).lower(native.params, inputs).compile())
    rep = {"layer": depth // 2, "component": "block_output"}
    locs = {"sources->base": ([[[3]]], [[[3]]])}

    def first_call(model):
        im = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), model)
        return _seconds(lambda: jax.block_until_ready(im({"input_ids": ids}, [{"input_ids": src}], locs)[1].logits))

    native_first = first_call(native)
    hf_compile = hf_first = pv_first = float("nan")
    if not args.no_hf:
        try:
            import torch
            import transformers

            with tempfile.TemporaryDirectory() as d:
                native.save_pretrained(d)
                torch_model = transformers.LlamaForCausalLM.from_pretrained(d, attn_implementation="eager").eval()
                flax_model = transformers.FlaxLlamaForCausalLM.from_pretrained(d, from_pt=True)
        except (ImportError, AttributeError):
            args.no_hf = True
        else:
            hf = jv.adapters.adapt(flax_model)
            hf_inputs = hf.prepare({"input_ids": jnp.asarray(ids)})
            hf_compile = _seconds(lambda: jax.jit(hf.apply).lower(flax_model.params, hf_inputs).compile())
            hf_first = first_call(flax_model)
            import pyvene as pv

            torch.set_num_threads(1)
            pm = pv.IntervenableModel(
                pv.IntervenableConfig([rep], intervention_types=pv.VanillaIntervention), torch_model
            )
            with torch.no_grad():
                pv_first = _seconds(
                    lambda: pm({"input_ids": torch.tensor(ids)}, [{"input_ids": torch.tensor(src)}], locs)
                )
    return [
        depth,
        f"{native_compile:.2f}",
        f"{hf_compile:.2f}",
        f"{native_first:.2f}",
        f"{hf_first:.2f}",
        f"{pv_first:.2f}",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depths", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--no-hf", action="store_true", help="skip HF Flax LLaMA and pyvene")
    args = ap.parse_args()
    if args.small:
        args.depths, args.width = [2, 4, 8], 64

    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab, (1, args.seq))
    src = rng.integers(0, args.vocab, (1, args.seq))
    rows = []
    for depth in args.depths:
        rows.append(_row(depth, args, ids, src))
        print(f"depth {depth} done", flush=True)
    print(f"\nCompile time vs depth, width {args.width}, T={args.seq}; {machine()}")
    print("(seconds; 'first call' = a one-site IntervenableModel's first call: trace + compile + run)\n")
    print(
        table(
            rows,
            [
                "layers",
                "native compile",
                "HF Flax LLaMA compile",
                "native first call",
                "HF Flax first call",
                "pyvene first call (1 thread)",
            ],
        )
    )
    first, last = rows[0], rows[-1]
    print(
        f"\nnative compile {args.depths[-1]} vs {args.depths[0]} layers: {float(last[1]) / float(first[1]):.2f}x; "
        f"HF Flax: {float(last[2]) / float(first[2]):.2f}x"
    )


if __name__ == "__main__":
    main()
