"""A layers x positions `block_output` patching sweep: one compiled jaxvene program vs
pyvene's loop (one IntervenableModel per layer, one call per position), same weights.

    python benchmarks/bench_sweep.py            # GPT-2-small shape, 12 layers x 12 positions
    python benchmarks/bench_sweep.py --small    # 4 layers x 128 wide, quick

Prints both times (jaxvene including compile, and warm), the ratio, and the FLOP floor of
the work the sweep has to do (clean prefix reused) at this machine's measured matmul rate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import best_threads, gpt2_pair, machine, table, threads_line


def layer_flops(width: int, tokens: int, inner: int, keys: int | None = None) -> float:
    """Multiply-adds x 2 of one GPT-2 block on `tokens` query tokens attending to `keys` keys
    (default: as many as the queries) (projections, MLP, attention)."""
    projections = 4 * width * width + 2 * width * inner
    attention = 2 * (tokens if keys is None else keys) * width  # scores and weighted values, per token
    return 2.0 * tokens * (projections + attention)


def matmul_rate() -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(5):
        f(a).block_until_ready()
    return 5 * 2 * 2048**3 / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seq", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--chunk", type=int, default=12)
    ap.add_argument("--groups", type=int, default=None, help="also time this many causal-suffix groups")
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    if args.small:
        args.layers, args.width, args.heads, args.vocab = 4, 128, 4, 1000

    import jax
    import pyvene as pv
    import torch

    import jaxvene as jv

    torch_model, flax_model = gpt2_pair(args.layers, args.width, args.heads, args.vocab)
    rng = np.random.default_rng(0)
    base = rng.integers(0, args.vocab, (1, args.seq))
    source = rng.integers(0, args.vocab, (1, args.seq))
    target = int(rng.integers(0, args.vocab))
    L, T = args.layers, args.seq

    def metric(logits):
        return jax.nn.softmax(logits[:, -1], axis=-1)[:, target]

    def jv_sweep():
        return jv.sweep(
            flax_model, {"input_ids": base}, {"input_ids": source}, metric=metric, chunk_size=args.chunk, progress=False
        )

    t0 = time.perf_counter()
    ours = jv_sweep()
    jv_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = jv_sweep()
    jv_warm = time.perf_counter() - t0
    # every position recomputed (no causal suffixes), for comparison
    everything = lambda: jv.sweep(
        flax_model,
        {"input_ids": base},
        {"input_ids": source},
        metric=metric,
        chunk_size=args.chunk,
        progress=False,
        suffix_groups=0,
    )
    full = everything()
    t0 = time.perf_counter()
    full = everything()
    full_warm = time.perf_counter() - t0
    groups = args.groups
    if groups is not None:
        grouped = lambda: jv.sweep(
            flax_model,
            {"input_ids": base},
            {"input_ids": source},
            metric=metric,
            chunk_size=args.chunk,
            progress=False,
            suffix_groups=groups,
        )
        t0 = time.perf_counter()
        grouped()
        grouped_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        grouped()
        grouped_warm = time.perf_counter() - t0

    tb, ts = torch.tensor(base), torch.tensor(source)

    def pv_model(layer):
        config = pv.IntervenableConfig(
            [{"layer": layer, "component": "block_output", "unit": "pos", "max_number_of_units": 1}],
            intervention_types=pv.VanillaIntervention,
        )
        return pv.IntervenableModel(config, torch_model)

    with torch.no_grad():  # pyvene's best thread count, from one cell
        probe = pv_model(L // 2)
        threads = best_threads(
            lambda: probe({"input_ids": tb}, [{"input_ids": ts}], {"sources->base": ([[[0]]], [[[0]]])})
        )
    theirs = np.zeros((L, T))
    t0 = time.perf_counter()
    with torch.no_grad():
        for layer in range(L):
            model = pv_model(layer)
            for pos in range(T):
                _, out = model({"input_ids": tb}, [{"input_ids": ts}], {"sources->base": ([[[pos]]], [[[pos]]])})
                theirs[layer, pos] = torch.softmax(out.logits[0, -1], -1)[target].item()
    pv_time = time.perf_counter() - t0

    inner = 4 * args.width
    cells = T
    clean = 2 * L * layer_flops(args.width, T, inner)  # one clean base and one source run
    head = cells * L * 2.0 * args.width * args.vocab  # the head at the last position only
    work = cells * sum(L - l for l in range(L)) * layer_flops(args.width, T, inner) + clean + head
    # a causal patch at (l, p) changes only layers >= l at positions >= p
    suffix = sum((L - l) * layer_flops(args.width, T - p, inner, keys=T) for l in range(L) for p in range(T))
    suffix += clean + head
    rate = matmul_rate()
    floor, suffix_floor = work / rate, suffix / rate
    # (the later rows' first calls reuse whatever programs the earlier rows compiled)
    rows = [
        ["jaxvene (default suffix groups), first call (compiles)", f"{jv_first:.2f}", f"{pv_time / jv_first:.1f}x"],
        ["jaxvene (default suffix groups), warm", f"{jv_warm:.2f}", f"{pv_time / jv_warm:.1f}x"],
        [
            "jaxvene, every position recomputed (suffix_groups=0), warm",
            f"{full_warm:.2f}",
            f"{pv_time / full_warm:.1f}x",
        ],
    ]
    if groups is not None:
        rows += [
            [f"jaxvene, suffix_groups={groups}, first call", f"{grouped_first:.2f}", f"{pv_time / grouped_first:.1f}x"],
            [f"jaxvene, suffix_groups={groups}, warm", f"{grouped_warm:.2f}", f"{pv_time / grouped_warm:.1f}x"],
        ]
    rows += [
        ["pyvene loop", f"{pv_time:.2f}", "1"],
        [f"FLOP floor, clean prefix reused ({work / 1e9:.1f} GFLOP)", f"{floor:.2f}", f"{pv_time / floor:.1f}x"],
        [
            f"FLOP floor, causal suffixes only ({suffix / 1e9:.1f} GFLOP)",
            f"{suffix_floor:.2f}",
            f"{pv_time / suffix_floor:.1f}x",
        ],
    ]
    print(f"block_output sweep, {L} layers x {T} positions, GPT-2 {L} x {args.width}, vocab {args.vocab}; {machine()}")
    print(threads_line(*threads))
    print(f"matmul rate {rate / 1e9:.0f} GFLOP/s; warm jaxvene is {jv_warm / suffix_floor:.1f}x the suffix floor")
    print(f"max |p difference| jaxvene vs pyvene over all cells: {np.abs(ours[..., 0] - theirs).max():.2e}")
    print(f"max |p difference| causal suffixes vs every position: {np.abs(ours - full).max():.2e}")
    print(table(rows, ["", "seconds", "pyvene / this"]))


if __name__ == "__main__":
    main()
