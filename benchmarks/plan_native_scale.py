"""What the native decoders need at the sizes people study, computed without allocating them.

    python benchmarks/plan_native_scale.py                 # 8 simulated devices, bfloat16
    python benchmarks/plan_native_scale.py --batch 4 --seq 2048

For each real config (Llama-3.1-8B, Mistral-7B, Qwen2.5-7B, Gemma-2-9B, Gemma-3-12B's text
model), the params are abstract arrays (`jax.ShapeDtypeStruct`) sharded tensor-parallel over a
1-D "model" mesh of 8 devices with `jaxvene.models.decoder.tensor_parallel()`; the forward pass
(last-position logits) and a one-site `block_output` patch (`jv.core.run`, source and base
runs) are lowered and compiled for those shapes, and XLA's `memory_analysis()` gives the
scratch bytes per device (of the float32 program: see `_row` for why). Nothing of the model's size is allocated, so this runs on a laptop; the figures are
what the compiled program would use on 8 accelerators. Compile times are this machine's.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

CONFIGS = {
    "Llama-3.1-8B": dict(
        model_type="llama",
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rms_norm_eps=1e-5,
    ),
    "Mistral-7B-v0.1": dict(
        model_type="mistral",
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        sliding_window=4096,
    ),
    "Qwen2.5-7B": dict(
        model_type="qwen2",
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        rope_theta=1000000.0,
    ),
    "Gemma-2-9B": dict(
        model_type="gemma2",
        vocab_size=256000,
        hidden_size=3584,
        intermediate_size=14336,
        num_hidden_layers=42,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=256,
        query_pre_attn_scalar=256,
    ),
    "Gemma-3-12B (text)": dict(
        model_type="gemma3_text",
        vocab_size=262208,
        hidden_size=3840,
        intermediate_size=15360,
        num_hidden_layers=48,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=256,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
        sliding_window=1024,
    ),
}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def _row(name, args, mesh, rules):
    """Compile the forward pass and a one-site patch of `name` for abstract sharded params."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxvene as jv
    from jaxvene.models.decoder import decoder_config, layout
    from jaxvene.models.decoder._model import _spec_for
    from jaxvene.models.decoder._params import tree_from_paths

    cfg = decoder_config(CONFIGS[name], where=name)
    leaves = layout(cfg)
    shardings = {
        path: jax.sharding.NamedSharding(mesh, _spec_for(rules, ".".join(path), leaf.shape))
        for path, leaf in leaves.items()
    }
    # bfloat16 params per device, from the shard shapes (exact)
    bf16_bytes = sum(2 * int(np.prod(shardings[p].shard_shape(leaf.shape))) for p, leaf in leaves.items())
    # the programs are compiled for float32 params: XLA's CPU backend upcasts bfloat16 matmuls and
    # hoists a float32 copy of every weight out of the layer loop, which its memory_analysis()
    # would count; an accelerator computes bfloat16 natively. float32 activations are twice the
    # bfloat16 ones, so the temp columns are upper bounds for a bfloat16 model.
    params = tree_from_paths(
        {path: jax.ShapeDtypeStruct(leaf.shape, jnp.float32, sharding=shardings[path]) for path, leaf in leaves.items()}
    )
    n_params = sum(int(np.prod(leaf.shape)) for leaf in leaves.values())
    model = jv.NativeDecoder(cfg, params)
    adapter = model.jaxvene_adapter()
    ids = jax.ShapeDtypeStruct((args.batch, args.seq), jnp.int32)
    inputs = {"input_ids": ids, "attention_mask": ids, "position_ids": ids}
    last = jax.ShapeDtypeStruct((args.batch, 1), jnp.int32)

    def forward(params, inputs, last):
        return adapter.apply(params, inputs, logit_positions=last)["logits"]

    t0 = time.perf_counter()
    compiled = jax.jit(forward).lower(params, inputs, last).compile()
    forward_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()

    plan, interventions, _ = jv.core.build_plan(
        adapter, jv.IntervenableConfig([{"layer": cfg.num_hidden_layers // 2, "component": "block_output"}])
    )
    positions = jax.ShapeDtypeStruct((args.batch, 1), jnp.int32)

    def patch(params, base, source, src_pos, base_pos, last):
        out, _ = jv.core.run(
            adapter, plan, params, interventions, base, (source,), ((src_pos, base_pos),), logit_positions=last
        )
        return out["logits"]

    t0 = time.perf_counter()
    patched = jax.jit(patch).lower(params, inputs, inputs, positions, positions, last).compile()
    patch_s = time.perf_counter() - t0
    pmem = patched.memory_analysis()
    return [
        name,
        f"{n_params / 1e9:.2f} B",
        cfg.num_hidden_layers,
        _gib(bf16_bytes),
        _gib(mem.temp_size_in_bytes),
        f"{forward_s:.1f}",
        _gib(pmem.temp_size_in_bytes),
        f"{patch_s:.1f}",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--models", nargs="*", default=list(CONFIGS))
    args = ap.parse_args()

    import jax
    import numpy as np
    from _common import table

    from jaxvene.models.decoder import tensor_parallel

    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[: args.devices]), ("model",))
    rules = tensor_parallel("model")
    rows = []
    for name in args.models:
        rows.append(_row(name, args, mesh, rules))
        print(f"{name} done", flush=True)
    print(
        f"\nPer device, params tensor-parallel over {args.devices} devices, batch {args.batch} x {args.seq} "
        "tokens: bfloat16 params from the shard shapes; temp (activations, scratch) from XLA's "
        "memory_analysis() of the float32 program (an upper bound for bfloat16: see _row); compile seconds "
        f"on this machine ({jax.devices()[0].platform}, {os.cpu_count()} cores)\n"
    )
    print(
        table(
            rows,
            [
                "model",
                "params",
                "layers",
                "bf16 params GiB/device",
                "forward temp GiB/device (f32)",
                "forward compile s",
                "patch temp GiB/device (f32)",
                "patch compile s",
            ],
        )
    )


if __name__ == "__main__":
    main()
