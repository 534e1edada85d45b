"""How cost grows with sequence length and depth: a `block_output` sweep over every
(layer, position) and a DAS training step, jaxvene vs pyvene on the same random GPT-2 weights.

    python benchmarks/bench_scaling.py            # T = 16..256 at 4 layers, 2..12 layers at T = 64
    python benchmarks/bench_scaling.py --quick    # T = 16, 64 at 2 layers, 2 and 4 layers at T = 16
    python benchmarks/bench_scaling.py --out benchmarks/figures/scaling.png

The sweep: jaxvene's `jv.sweep` (one compiled program per chunk of cells) against pyvene's loop
(an `IntervenableModel` per layer, one call per position, as `bench_sweep.py`). pyvene's loop is
timed on a subset of cells (a few positions in a few layers; every call of pyvene runs the whole
model, so its cost per cell does not depend on the position) and scaled per cell to the full
grid; the output says how many cells were timed. The DAS step: `LowRankRotatedSpaceIntervention`
at the middle layer's `block_output`, last position, cross-entropy at the last position, Adam
(as `bench_das.py`), also on the frozen model's cache (`cached=True`). Warm times are medians of `--repeats` calls (fewer once 8 s are spent); jaxvene's first call (trace and
compile) is reported separately. pyvene gets its best torch thread count (1 or 2), measured on
each configuration's own work, and the table prints which.

Writes a log-log PNG (seconds against length, and against depth) to `--out`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _common import best_threads, gpt2_pair, machine, table


def median_time(fn, repeats: int, budget: float = 8.0) -> float:
    """Median of up to `repeats` calls of `fn`, fewer (at least one) once `budget` seconds are spent."""
    runs = []
    while len(runs) < repeats and (not runs or sum(runs) < budget):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def warm_times(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, median warm seconds)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0, median_time(fn, repeats)


def spread(n: int, k: int) -> list[int]:
    """`k` indices spread over `range(n)`, first and last included."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


def measure(layers: int, seq: int, args) -> dict:
    import jax
    import optax
    import pyvene as pv
    import torch

    import jaxvene as jv

    torch_model, flax_model = gpt2_pair(layers, args.width, args.heads, args.vocab)
    rng = np.random.default_rng(0)
    base = rng.integers(0, args.vocab, (1, seq))
    source = rng.integers(0, args.vocab, (1, seq))
    target = int(rng.integers(0, args.vocab))
    r = {"layers": layers, "seq": seq}

    # --- the sweep: every (layer, position) -------------------------------------------------
    def metric(logits):
        return jax.nn.softmax(logits[:, -1], axis=-1)[:, target]

    def jv_sweep():
        return jv.sweep(
            flax_model, {"input_ids": base}, {"input_ids": source}, metric=metric, chunk_size=32, progress=False
        )

    r["jv_sweep_first"], r["jv_sweep"] = warm_times(jv_sweep, args.repeats)
    ours = jv_sweep()[..., 0]

    tb, ts = torch.tensor(base), torch.tensor(source)

    def pv_model(layer):
        config = pv.IntervenableConfig(
            [{"layer": layer, "component": "block_output", "unit": "pos", "max_number_of_units": 1}],
            intervention_types=pv.VanillaIntervention,
        )
        return pv.IntervenableModel(config, torch_model)

    def pv_cell(model, pos):
        _, out = model({"input_ids": tb}, [{"input_ids": ts}], {"sources->base": ([[[pos]]], [[[pos]]])})
        return torch.softmax(out.logits[0, -1], -1)[target].item()

    with torch.no_grad():
        probe = pv_model(layers // 2)
        r["pv_sweep_threads"], r["pv_sweep_thread_times"] = best_threads(lambda: pv_cell(probe, seq // 2), args.repeats)
        timed_layers, timed_pos = spread(layers, args.pv_layers), spread(seq, args.pv_positions)
        per_layer, diffs = [], []
        for layer in timed_layers:
            t0 = time.perf_counter()
            model = pv_model(layer)
            build = time.perf_counter() - t0
            calls = []
            for pos in timed_pos:
                t0 = time.perf_counter()
                p = pv_cell(model, pos)
                calls.append(time.perf_counter() - t0)
                diffs.append(abs(p - ours[layer, pos]))
            per_layer.append(build + seq * statistics.mean(calls))  # one model, `seq` calls
    r["pv_sweep"] = layers * statistics.mean(per_layer)
    r["pv_cells_timed"] = len(timed_layers) * len(timed_pos)
    r["sweep_diff"] = max(diffs)

    # --- the DAS step ------------------------------------------------------------------------
    b = args.batch
    base = rng.integers(0, args.vocab, (b, seq))
    source = rng.integers(0, args.vocab, (b, seq))
    labels = rng.integers(0, args.vocab, (b,))
    rep = {
        "layer": layers // 2,
        "component": "block_output",
        "unit": "pos",
        "max_number_of_units": 1,
        "low_rank_dimension": args.rank,
    }
    locs = {"sources->base": ([[[seq - 1]] * b], [[[seq - 1]] * b])}

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

    r["jv_das_first"], r["jv_das"] = warm_times(jv_step, args.repeats)
    # on the frozen model's cache (built once per batch, outside the timed steps)
    (cache,) = jv.training.cache_frozen(jm, [batch])
    cinit, cstep, _ = jv.training.make_train_step(jm, optax.adam(1e-3), cached=True)
    cstate = {"s": cinit()}

    def jv_cached_step():
        cstate["s"], loss = cstep(cstate["s"], cache, params)
        return float(loss)

    r["jv_das_cached"] = warm_times(jv_cached_step, args.repeats)[1]

    pvm = pv.IntervenableModel(
        pv.IntervenableConfig([rep], intervention_types=pv.LowRankRotatedSpaceIntervention), torch_model
    )
    opt = torch.optim.Adam(pvm.get_trainable_parameters(), lr=1e-3)
    tb, ts, tl = torch.tensor(base), torch.tensor(source), torch.tensor(labels)

    def pv_step():
        _, out = pvm({"input_ids": tb}, [{"input_ids": ts}], locs)
        loss = torch.nn.functional.cross_entropy(out.logits[:, -1], tl)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss.item()

    r["pv_das_threads"], times = best_threads(pv_step, args.repeats)
    r["pv_das"], r["pv_das_thread_times"] = times[r["pv_das_threads"]], times
    return r


def plot(results, by_length, by_depth, args, path: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    lines = [
        ("jv_sweep_first", "jaxvene sweep, first call (compiles)", "lightsteelblue", ":", "o"),
        ("jv_sweep", "jaxvene sweep (warm)", "tab:blue", "-", "o"),
        ("pv_sweep", "pyvene sweep (loop, scaled)", "tab:orange", "-", "o"),
        ("jv_das", "jaxvene DAS step (warm)", "tab:blue", "--", "s"),
        ("jv_das_cached", "jaxvene DAS step on the frozen cache", "tab:green", "--", "s"),
        ("pv_das", "pyvene DAS step", "tab:orange", "--", "s"),
    ]
    panels = [
        (by_length, "seq", f"sequence length (depth {args.depth})"),
        (by_depth, "layers", f"layers (length {args.length})"),
    ]
    for i, (keys, axis, xlabel) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        xs = [results[k][axis] for k in keys]
        for key, label, color, style, marker in lines:
            ax.plot(xs, [results[k][key] for k in keys], color=color, linestyle=style, marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.grid(True, which="major", alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(
        f"GPT-2 width {args.width}, vocab {args.vocab}: block_output sweep over every (layer, position), "
        f"DAS step batch {args.batch}",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--depth", type=int, default=4, help="layers while the length varies")
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8, 12])
    ap.add_argument("--length", type=int, default=64, help="sequence length while the depth varies")
    ap.add_argument("--batch", type=int, default=8, help="DAS step batch")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pv-layers", type=int, default=3, help="layers of pyvene's sweep loop timed")
    ap.add_argument("--pv-positions", type=int, default=3, help="positions per timed layer")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures", "scaling.png"))
    args = ap.parse_args()
    if args.quick:
        args.lengths, args.depth, args.depths, args.length, args.repeats = [16, 64], 2, [2, 4], 16, 2

    start = time.perf_counter()
    by_length = [(args.depth, t) for t in args.lengths]
    by_depth = [(d, args.length) for d in args.depths]
    results = {}
    for key in dict.fromkeys(by_length + by_depth):
        results[key] = measure(*key, args)
        r = results[key]
        print(
            f"  {key[0]} layers, T={key[1]}: pyvene threads sweep {r['pv_sweep_threads']} "
            f"({', '.join(f'{n}: {t * 1e3:.1f} ms' for n, t in r['pv_sweep_thread_times'].items())} a cell), "
            f"DAS {r['pv_das_threads']} "
            f"({', '.join(f'{n}: {t * 1e3:.1f} ms' for n, t in r['pv_das_thread_times'].items())} a step); "
            f"sweep max |p diff| {r['sweep_diff']:.1e}",
            flush=True,
        )

    rows = []
    for key in dict.fromkeys(by_length + by_depth):
        r = results[key]
        rows.append(
            [
                r["layers"],
                r["seq"],
                f"{r['jv_sweep_first']:.2f}",
                f"{r['jv_sweep']:.2f}",
                f"{r['pv_sweep']:.2f} ({r['pv_cells_timed']}/{r['layers'] * r['seq']})",
                f"{r['jv_sweep'] / r['pv_sweep']:.3f}",
                f"{r['jv_das_first']:.2f}",
                f"{r['jv_das'] * 1e3:.1f}",
                f"{r['jv_das_cached'] * 1e3:.1f}",
                f"{r['pv_das'] * 1e3:.1f}",
                f"{r['jv_das'] / r['pv_das']:.2f}",
                f"{r['jv_das_cached'] / r['pv_das']:.2f}",
                f"{r['pv_sweep_threads']} / {r['pv_das_threads']}",
            ]
        )
    headers = [
        "layers",
        "T",
        "jv sweep first (s)",
        "jv sweep warm (s)",
        "pyvene sweep (s) (cells timed)",
        "sweep ratio",
        "jv DAS first (s)",
        "jv DAS warm (ms)",
        "jv DAS cached (ms)",
        "pyvene DAS (ms)",
        "DAS ratio",
        "cached DAS ratio",
        "pyvene threads sweep / DAS",
    ]
    print(
        f"\nGPT-2 width {args.width}, {args.heads} heads, vocab {args.vocab}. Sweep: block_output at every "
        f"(layer, position), batch 1, metric p(target) at the last position; pyvene's loop timed on the "
        f"cells shown and scaled per cell to the full grid. DAS step: LowRankRotatedSpace rank {args.rank} "
        f"at the middle layer, batch {args.batch}. Warm = median of up to {args.repeats} (fewer past 8 s); ratio = jaxvene warm / "
        f"pyvene. {machine()}"
    )
    print(table(rows, headers))
    plot(results, by_length, by_depth, args, args.out)
    print(f"\nplot: {args.out}; whole run {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
