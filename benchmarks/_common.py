"""Shared set-up for the benchmarks: identical random weights in PyTorch and Flax, and timing."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")


def gpt2_pair(layers: int, width: int, heads: int, vocab: int = 50257, positions: int = 1024, seed: int = 0):
    """A random GPT-2 as `(torch_model, flax_model)` sharing the same weights."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=heads,
        vocab_size=vocab,
        n_positions=positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation="eager",
    )
    torch_model = transformers.GPT2LMHeadModel(config).eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        flax_model = transformers.FlaxGPT2LMHeadModel.from_pretrained(d, from_pt=True)
    return torch_model, flax_model


def timed(fn, repeats: int):
    """(first call seconds, median of `repeats` warm calls). `fn` must block until done."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return first, statistics.median(warm)


def best_threads(fn, repeats: int = 3) -> tuple[int, dict[int, float]]:
    """Give PyTorch its best thread count here: time `fn` (one warm-up call, then the median of
    `repeats`) with 1 and with 2 torch threads, leave torch on the faster one, and return it
    with the times. On these small shared VMs PyTorch's 2-thread OpenMP pool can run 10x slower
    than 1 thread (see DESIGN.md), so every comparison measures this rather than assume it."""
    import torch

    times: dict[int, float] = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        fn()
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
            if n == 2 and runs[0] > 2 * times[1]:
                break  # one 2-thread call over twice the 1-thread median settles it
        times[n] = statistics.median(runs)
    best = min(times, key=lambda n: times[n])
    torch.set_num_threads(best)
    return best, times


def threads_line(best: int, times: dict[int, float]) -> str:
    """What :func:`best_threads` found, for a benchmark's header."""
    found = ", ".join(f"{n}: {t * 1e3:.1f} ms" for n, t in times.items())
    return f"pyvene on {best} torch thread(s) (measured per call: {found})"


def machine() -> str:
    import jax
    import torch

    dev = jax.devices()[0]
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__} on {dev.platform}, torch {torch.__version__}"
    )


def table(rows, headers) -> str:
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])
