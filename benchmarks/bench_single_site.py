"""One single-site interchange intervention call: jaxvene vs pyvene on the same weights.

    python benchmarks/bench_single_site.py              # GPT-2-small shape, T=12
    python benchmarks/bench_single_site.py --small      # a quick run

Times the first call (jaxvene: trace + compile) and the median warm call, for a
`block_output` Vanilla patch at one position, and prints jaxvene/pyvene ratios.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_threads, gpt2_pair, machine, table, threads_line, timed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seq", type=int, default=12)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--small", action="store_true", help="4 layers x 128 wide, vocab 1000")
    args = ap.parse_args()
    vocab = 50257
    if args.small:
        args.layers, args.width, args.heads, vocab = 4, 128, 4, 1000

    import jax
    import pyvene as pv
    import torch

    import jaxvene as jv

    torch_model, flax_model = gpt2_pair(args.layers, args.width, args.heads, vocab)
    rng = np.random.default_rng(0)
    base = rng.integers(0, vocab, (args.batch, args.seq))
    source = rng.integers(0, vocab, (args.batch, args.seq))
    layer, pos = args.layers // 2, args.seq // 2
    rep = {"layer": layer, "component": "block_output", "unit": "pos", "max_number_of_units": 1}
    locs = {"sources->base": ([[[pos]] * args.batch], [[[pos]] * args.batch])}

    jv_model = jv.IntervenableModel(jv.IntervenableConfig([rep], intervention_types=jv.VanillaIntervention), flax_model)
    jv_call = lambda: jax.block_until_ready(jv_model({"input_ids": base}, [{"input_ids": source}], locs)[1].logits)

    pv_model = pv.IntervenableModel(
        pv.IntervenableConfig([rep], intervention_types=pv.VanillaIntervention), torch_model
    )
    tb, ts = torch.tensor(base), torch.tensor(source)

    def pv_call():
        with torch.no_grad():
            return pv_model({"input_ids": tb}, [{"input_ids": ts}], locs)[1].logits

    jv_first, jv_warm = timed(jv_call, args.repeats)
    pv_first, pv_warm = timed(pv_call, args.repeats)  # its first call, before the thread count is chosen
    threads = best_threads(pv_call)
    pv_warm = timed(pv_call, args.repeats)[1]
    diff = float(np.abs(np.asarray(jv_call()) - pv_call().numpy()).max())
    rows = [
        ["first call, jaxvene compiles (s)", f"{jv_first:.3f}", f"{pv_first:.3f}", f"{jv_first / pv_first:.2f}"],
        ["warm call (ms)", f"{jv_warm * 1e3:.2f}", f"{pv_warm * 1e3:.2f}", f"{jv_warm / pv_warm:.2f}"],
    ]
    print(
        f"single-site block_output patch, GPT-2 {args.layers} layers x {args.width}, vocab {vocab}, "
        f"batch {args.batch}, T={args.seq}; {machine()}"
    )
    print(threads_line(*threads))
    print(f"max |logit difference| jaxvene vs pyvene: {diff:.2e}")
    print(table(rows, ["", "jaxvene", "pyvene", "jaxvene / pyvene"]))


if __name__ == "__main__":
    main()
