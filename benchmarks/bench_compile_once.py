"""Compile once per shape: pyvene's causal-tracing tutorial loop, and a single patch's first call.

    python benchmarks/bench_compile_once.py              # GPT-2 6 layers x 256, vocab 1000, T=7
    python benchmarks/bench_compile_once.py --gpt2-small # 12 x 768, vocab 50257 (over 15 min here)

(a) pyvene's `Causal_Tracing.ipynb` loop, ported line by line: corrupt the subject's four tokens
    with a `NoiseIntervention` at layer 0's `block_input`, and for every stream (`block_output`
    with a window of 1 layer, `mlp_activation` and `attention_output` with windows of 10), every
    layer and every position, build a new `IntervenableModel` whose config restores the clean
    stream at that position in the window's layers, call it once and read the target's
    probability. pyvene and jaxvene run the same code on the same weights; jaxvene compiles one
    program per distinct config shape (instances share them), pyvene compiles nothing.
(b) One `block_output` patch at one position: the first call (jaxvene: trace + compile + run,
    pyvene: a forward with hooks), measured before anything else runs in the process.

pyvene gets its best torch thread count (1 or 2, measured on a forward pass; printed). The
noise differs by design (pyvene draws one fixed tensor, jaxvene draws from a key), so the
tracing tables are not compared cell by cell; the clean and single-patch logits are.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_threads, gpt2_pair, machine, table

SUBJECT = [0, 1, 2, 3]  # "The Space Needle" in "The Space Needle is in downtown"
STREAMS = ("block_output", "mlp_activation", "attention_output")


def restore_config(lib, layer, stream, window, num_layers):
    """The tutorial's `restore_corrupted_with_interval_config`, for pyvene or jaxvene."""
    start = max(0, layer - window // 2)
    end = min(num_layers, layer - (-window // 2))
    return lib.IntervenableConfig(
        representations=[lib.RepresentationConfig(0, "block_input")]
        + [lib.RepresentationConfig(i, stream) for i in range(start, end)],
        intervention_types=[lib.NoiseIntervention] + [lib.VanillaIntervention] * (end - start),
    )


def tracing_loop(lib, model, base, token, num_layers, positions, call):
    """The tutorial's triple loop; `call(intervenable, base, sources, locations)` -> last logits."""
    data = []
    for stream in STREAMS:
        for layer in range(num_layers):
            for pos in range(positions):
                config = restore_config(lib, layer, stream, 1 if stream == "block_output" else 10, num_layers)
                n_restores = len(config.representations) - 1
                intervenable = lib.IntervenableModel(config, model)
                logits = call(
                    intervenable,
                    base,
                    [None] + [base] * n_restores,
                    {"sources->base": ([None] + [[[pos]]] * n_restores, [[SUBJECT]] + [[[pos]]] * n_restores)},
                )
                probs = np.exp(logits - logits.max())
                data.append(float((probs / probs.sum())[token]))
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--gpt2-small", action="store_true", help="12 layers x 768, vocab 50257")
    args = ap.parse_args()
    if args.gpt2_small:
        args.layers, args.width, args.heads, args.vocab = 12, 768, 12, 50257

    import jax
    import pyvene as pv
    import torch

    import jaxvene as jv

    torch_model, flax_model = gpt2_pair(args.layers, args.width, args.heads, args.vocab)
    rng = np.random.default_rng(0)
    seq = 7  # the tutorial's prompt, "The Space Needle is in downtown"
    ids = rng.integers(0, args.vocab, (1, seq))
    src = rng.integers(0, args.vocab, (1, seq))
    token = int(rng.integers(0, args.vocab))
    tids = torch.tensor(ids)

    def forward():
        with torch.no_grad():
            torch_model(tids)

    threads = best_threads(forward, 5)[0]  # pyvene's best torch thread count (1 or 2), measured

    # (b) first: a single patch's first call, before anything else compiles in this process
    layer, pos = args.layers // 2, seq // 2
    rep = {"layer": layer, "component": "block_output", "unit": "pos", "max_number_of_units": 1}
    locs = {"sources->base": ([[[pos]]], [[[pos]]])}
    t0 = time.perf_counter()
    jv_patch = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), flax_model)
    jv_out = jax.block_until_ready(jv_patch({"input_ids": ids}, [{"input_ids": src}], locs)[1].logits)
    jv_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    pv_patch = pv.IntervenableModel(
        pv.IntervenableConfig([rep], intervention_types=pv.VanillaIntervention), torch_model
    )
    with torch.no_grad():
        pv_out = pv_patch({"input_ids": torch.tensor(ids)}, [{"input_ids": torch.tensor(src)}], locs)[1].logits
    pv_first = time.perf_counter() - t0
    patch_diff = float(np.abs(np.asarray(jv_out) - pv_out.numpy()).max())
    print(f"single patch, first call: jaxvene {jv_first:.2f} s, pyvene {pv_first:.2f} s", flush=True)

    # (a) the tutorial's loop
    key = jax.random.key(1)

    def jv_call(intervenable, base, sources, locations):
        out = intervenable(base, sources, locations, key=key)[1]
        return np.asarray(out.logits[0, -1])

    def pv_call(intervenable, base, sources, locations):
        with torch.no_grad():
            out = intervenable(base, sources, locations)[1]
        return out.logits[0, -1].numpy()

    traces_before = jv.core._programs.traces()
    t0 = time.perf_counter()
    jv_probs = tracing_loop(jv, flax_model, {"input_ids": ids}, token, args.layers, seq, jv_call)
    jv_loop = time.perf_counter() - t0
    programs = jv.core._programs.traces() - traces_before
    print(f"tracing loop: jaxvene {jv_loop:.1f} s", flush=True)
    t0 = time.perf_counter()
    pv_probs = tracing_loop(pv, torch_model, {"input_ids": torch.tensor(ids)}, token, args.layers, seq, pv_call)
    pv_loop = time.perf_counter() - t0
    calls = len(jv_probs)
    assert len(pv_probs) == calls and np.isfinite(jv_probs).all()
    clean_diff = float(
        np.abs(np.asarray(flax_model(ids).logits) - torch_model(torch.tensor(ids)).logits.detach().numpy()).max()
    )

    print(
        f"causal tracing tutorial loop and single patch, GPT-2 {args.layers} layers x {args.width}, "
        f"vocab {args.vocab}, T={seq}; {machine()}; pyvene on {threads} torch thread(s)"
    )
    print(f"max |logit difference| jaxvene vs pyvene: clean {clean_diff:.2e}, single patch {patch_diff:.2e}")
    print(f"tracing loop: {calls} IntervenableModels built and called; jaxvene compiled {programs} programs\n")
    rows = [
        ["tracing tutorial loop (s)", f"{jv_loop:.1f}", f"{pv_loop:.1f}", f"{jv_loop / pv_loop:.2f}"],
        ["single patch, first call (s)", f"{jv_first:.2f}", f"{pv_first:.2f}", f"{jv_first / pv_first:.1f}"],
    ]
    print(table(rows, ["", "jaxvene", "pyvene", "jaxvene / pyvene"]))


if __name__ == "__main__":
    main()
