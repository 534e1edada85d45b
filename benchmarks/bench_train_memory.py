"""Per-device memory of a compiled DAS train step: where the intervention sits, remat, sharding.

    python benchmarks/bench_train_memory.py              # both tables (about 3 minutes here)
    python benchmarks/bench_train_memory.py --skip-7b    # the small model only
    python benchmarks/bench_train_memory.py --skip-small --batch 32 --seq 256

Nothing runs: every step is lowered and compiled for abstract arrays (`jax.ShapeDtypeStruct`
with shardings) on 8 simulated devices, and XLA's `memory_analysis()` gives, per device, the
arguments (params, the train state, the batch) and the temporaries (activations kept for the
backward pass, gathered weights, scratch).

1. A width-256, 8-layer Llama-style native decoder, batch 16 x 128, a rank-4
   `LowRankRotatedSpaceIntervention` at `block_output` of layer 0 or of the last layer;
   `remat` off or on; params replicated on every device or FSDP (`sharding_rules("data",
   None)`) over a "data" axis of 8, the batch split over the same axis.
2. The same figures for a Llama-2-7B-shaped config with a `BoundlessRotatedSpaceIntervention`
   (4096 x 4096 rotation, as Boundless DAS on Alpaca 7B), FSDP over 8 devices. What a v5e-8
   (8 chips, 16 GB each) would hold: bfloat16 params from the shard shapes (exact), plus the
   train state and batch, plus the temporaries of the float32 program (XLA's CPU backend
   upcasts bfloat16 matmuls and hoists float32 copies of weights, which its
   `memory_analysis()` would count; float32 activations are twice bfloat16's, so the temp
   column is an upper bound for a bfloat16 model).

Before the train step split its layer scan (the layers below the intervention a separate,
forward-only loop) and pinned the residual stream to the batch sharding, layer 0 and the last
layer cost the same, and FSDP cost more than replication: see the README.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

SMALL = dict(
    model_type="llama",
    vocab_size=1000,
    hidden_size=256,
    intermediate_size=1024,
    num_hidden_layers=8,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=256,
)
LLAMA2_7B = dict(
    model_type="llama",
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def compile_step(raw, *, layer, remat, fsdp, batch, seq, intervention, dtype=None):
    """Compile one train step for abstract params; returns `(memory_analysis, bf16 param bytes
    per device, seconds)`."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding, PartitionSpec

    import jaxvene as jv
    from jaxvene.models.decoder import decoder_config, layout, sharding_rules
    from jaxvene.models.decoder._model import _spec_for
    from jaxvene.models.decoder._params import tree_from_paths
    from jaxvene.training import make_train_step

    cfg = decoder_config(raw, where="benchmark")
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:8]).reshape(8, 1), ("data", "model"))
    rules = sharding_rules("data", None) if fsdp else {}
    leaves = layout(cfg)
    shardings = {p: NamedSharding(mesh, _spec_for(rules, ".".join(p), leaf.shape)) for p, leaf in leaves.items()}
    bf16_bytes = sum(2 * int(np.prod(shardings[p].shard_shape(leaf.shape))) for p, leaf in leaves.items())
    params = tree_from_paths(
        {p: jax.ShapeDtypeStruct(leaf.shape, jnp.float32, sharding=shardings[p]) for p, leaf in leaves.items()}
    )
    by_batch = NamedSharding(mesh, PartitionSpec("data"))
    model = jv.NativeDecoder(cfg, params, remat=remat, batch_sharding=by_batch)
    config = jv.IntervenableConfig([{"layer": layer, "component": "block_output", **intervention[1]}], intervention[0])
    trainer = make_train_step(jv.IntervenableModel(config, model), optax.adam(1e-3))
    state = jax.tree_util.tree_map(lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec())), trainer.init())
    ids = jax.ShapeDtypeStruct((batch, seq), jnp.int32, sharding=by_batch)
    inputs = {"input_ids": ids, "attention_mask": ids, "position_ids": ids}
    pos = jax.ShapeDtypeStruct((batch, 1), jnp.int32, sharding=by_batch)
    data = {
        "base": inputs,
        "sources": [inputs],
        "locations": ((pos, pos),),
        "subspaces": (None,),
        "source_representations": (None,),
        "labels": jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=by_batch),
        "logit_positions": pos,
    }
    t0 = time.perf_counter()
    # the step is an `eqx.filter_jit`; `jax.jit` around it lowers it for abstract arguments
    compiled = jax.jit(lambda s, b, p: trainer.step(s, b, p)).lower(state, data, params).compile()
    return compiled.memory_analysis(), bf16_bytes, time.perf_counter() - t0


def small_table(args):
    import jaxvene as jv

    rows = []
    last = SMALL["num_hidden_layers"] - 1
    for fsdp in (False, True):
        for remat in (False, True):
            for layer in (0, last):
                mem, _, seconds = compile_step(
                    SMALL,
                    layer=layer,
                    remat=remat,
                    fsdp=fsdp,
                    batch=16,
                    seq=128,
                    intervention=(jv.LowRankRotatedSpaceIntervention, {"low_rank_dimension": 4}),
                )
                rows.append(
                    [
                        "FSDP x8" if fsdp else "replicated",
                        "on" if remat else "off",
                        layer,
                        _mib(mem.argument_size_in_bytes),
                        _mib(mem.temp_size_in_bytes),
                        _mib(mem.argument_size_in_bytes + mem.temp_size_in_bytes),
                        f"{seconds:.1f}",
                    ]
                )
                print(f"  small: {rows[-1]}", flush=True)
    return rows


def big_table(args):
    import jaxvene as jv

    rows = []
    last = LLAMA2_7B["num_hidden_layers"] - 1
    for remat in (False, True):
        for layer in (0, last):
            mem, bf16, seconds = compile_step(
                LLAMA2_7B,
                layer=layer,
                remat=remat,
                fsdp=True,
                batch=args.batch,
                seq=args.seq,
                intervention=(jv.BoundlessRotatedSpaceIntervention, {}),
            )
            f32_params = 2 * bf16
            other_args = mem.argument_size_in_bytes - f32_params  # the train state and the batch
            total = bf16 + other_args + mem.temp_size_in_bytes
            rows.append(
                [
                    "on" if remat else "off",
                    layer,
                    _gib(bf16),
                    _gib(other_args),
                    _gib(mem.temp_size_in_bytes),
                    _gib(total),
                    "yes" if total < args.hbm * 2**30 else "no",
                    f"{seconds:.0f}",
                ]
            )
            print(f"  7B: {rows[-1]}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8, help="7B table: global batch")
    ap.add_argument("--seq", type=int, default=128, help="7B table: tokens per example")
    ap.add_argument("--hbm", type=float, default=16.0, help="7B table: GB of memory per device")
    ap.add_argument("--skip-7b", action="store_true")
    ap.add_argument("--skip-small", action="store_true")
    args = ap.parse_args()

    import jax
    from _common import table

    print(f"8 simulated devices on {jax.devices()[0].platform}, {os.cpu_count()} cores; jax {jax.__version__}")
    if not args.skip_small:
        rows = small_table(args)
        print(
            "\nDAS train step (rank-4 low-rank rotation, Adam), width-256 8-layer Llama-style decoder, batch 16 x 128,"
            " per device (MiB, from the compiled step's memory_analysis()):\n"
        )
        print(table(rows, ["params", "remat", "layer", "arguments", "temp", "arguments + temp", "compile s"]))
    if args.skip_7b:
        return
    big = big_table(args)
    print(
        f"\nBoundless DAS train step on a Llama-2-7B-shaped config (32 layers, 4096 wide, 4096 x 4096 rotation,"
        f" Adam), FSDP over 8 devices, batch {args.batch} x {args.seq}, per device (GiB); fits: under"
        f" {args.hbm:g} GB (a v5e chip):\n"
    )
    print(
        table(
            big,
            [
                "remat",
                "layer",
                "bf16 params",
                "state + batch",
                "temp (f32 program)",
                "total",
                f"fits {args.hbm:g} GB",
                "compile s",
            ],
        )
    )


if __name__ == "__main__":
    main()
