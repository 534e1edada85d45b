"""DAS training step (LowRankRotatedSpaceIntervention, IIT loss): jaxvene vs pyvene, same weights.

    python benchmarks/bench_das.py            # GPT-2 6 layers x 256, batch 32, T=16, rank 4
    python benchmarks/bench_das.py --devices  # also: jaxvene steps/s on 1 vs 8 host devices

One step = source run, intervened base run, loss at the last position, backward, Adam update.
pyvene's step runs on PyTorch (`loss.backward(); optimizer.step()`); jaxvene's is one jitted
program (`jaxvene.training.make_train_step`), and with `cached=True` a step on the frozen
model's cache (`jaxvene.training.cache_frozen`: built once per batch, reused every epoch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--devices" in sys.argv:
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import numpy as np
from _common import best_threads, gpt2_pair, machine, table, threads_line, timed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--devices", action="store_true")
    args = ap.parse_args()

    import jax
    import optax
    import pyvene as pv
    import torch
    from jax.sharding import Mesh

    import jaxvene as jv

    torch_model, flax_model = gpt2_pair(args.layers, args.width, args.heads, args.vocab)
    rng = np.random.default_rng(0)
    base = rng.integers(0, args.vocab, (args.batch, args.seq))
    source = rng.integers(0, args.vocab, (args.batch, args.seq))
    labels = rng.integers(0, args.vocab, (args.batch,))
    layer, pos = args.layers // 2, args.seq - 1
    rep = {
        "layer": layer,
        "component": "block_output",
        "unit": "pos",
        "max_number_of_units": 1,
        "low_rank_dimension": args.rank,
    }
    locs = {"sources->base": ([[[pos]] * args.batch], [[[pos]] * args.batch])}

    # pyvene
    pv_model = pv.IntervenableModel(
        pv.IntervenableConfig([rep], intervention_types=pv.LowRankRotatedSpaceIntervention), torch_model
    )
    opt = torch.optim.Adam(pv_model.get_trainable_parameters(), lr=1e-3)
    tb, ts, tl = torch.tensor(base), torch.tensor(source), torch.tensor(labels)

    def pv_step():
        _, out = pv_model({"input_ids": tb}, [{"input_ids": ts}], locs)
        loss = torch.nn.functional.cross_entropy(out.logits[:, -1], tl)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    # jaxvene
    jm = jv.IntervenableModel(
        jv.IntervenableConfig([rep], intervention_types=jv.LowRankRotatedSpaceIntervention), flax_model
    )
    batch = jv.training.make_batch(jm, {"input_ids": base}, [{"input_ids": source}], locs, labels=labels)
    init, step, _ = jv.training.make_train_step(jm, optax.adam(1e-3))
    state = {"s": init()}
    params = jm.adapter.params

    def jv_step():
        state["s"], loss = step(state["s"], batch, params)
        return float(loss)

    # on the frozen model's cache: sources, the state entering the layer and the keys and values
    # before the position, computed once; the step runs layers >= `layer` at position `pos` only
    cinit, cstep, _ = jv.training.make_train_step(jm, optax.adam(1e-3), cached=True)
    t0 = time.perf_counter()
    (cache,) = jv.training.cache_frozen(jm, [batch])
    jax.block_until_ready(cache)
    cache_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(jv.training.cache_frozen(jm, [batch]))
    cache_warm = time.perf_counter() - t0
    cstate = {"s": cinit()}

    def jv_cached_step():
        cstate["s"], loss = cstep(cstate["s"], cache, params)
        return float(loss)

    jv_first, jv_warm = timed(jv_step, args.repeats)
    c_first, c_warm = timed(jv_cached_step, args.repeats)
    pv_first, pv_warm = timed(pv_step, args.repeats)  # its first step, before the thread count is chosen
    threads = best_threads(pv_step)
    pv_warm = timed(pv_step, args.repeats)[1]
    rows = [
        ["first step (s), jaxvene compiles", f"{jv_first:.3f}", f"{pv_first:.3f}", f"{pv_first / jv_first:.2f}x"],
        ["warm step (ms)", f"{jv_warm * 1e3:.1f}", f"{pv_warm * 1e3:.1f}", f"{pv_warm / jv_warm:.2f}x"],
        ["cached: first step (s)", f"{c_first:.3f}", f"{pv_first:.3f}", f"{pv_first / c_first:.2f}x"],
        ["cached: warm step (ms)", f"{c_warm * 1e3:.1f}", f"{pv_warm * 1e3:.1f}", f"{pv_warm / c_warm:.2f}x"],
        ["cached: building the cache, first / warm (ms)", f"{cache_first * 1e3:.0f} / {cache_warm * 1e3:.0f}", "", ""],
    ]
    print(
        f"DAS training step: LowRankRotatedSpace rank {args.rank} at layer {layer} block_output, GPT-2 "
        f"{args.layers} x {args.width}, vocab {args.vocab}, batch {args.batch}, T={args.seq}; {machine()}"
    )
    print(threads_line(*threads))
    print(table(rows, ["", "jaxvene", "pyvene", "pyvene / jaxvene"]))

    if args.devices:
        rows = []
        for n in (1, len(jax.devices())):
            mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
            sharded = jv.training.shard_batch(batch, mesh)
            s = {"s": init()}

            def sharded_step():
                s["s"], loss = step(s["s"], sharded, params)  # noqa: B023 (called within the iteration)
                return float(loss)

            _, warm = timed(sharded_step, args.repeats)
            rows.append([f"{n} host device(s)", f"{1 / warm:.1f}"])
        print(table(rows, ["jaxvene data-parallel", "steps / s"]))
        print("(host devices share the same 2 CPU cores: this checks the sharded program, not a speed-up)")


if __name__ == "__main__":
    main()
