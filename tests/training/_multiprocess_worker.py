"""One process of tests/training/test_multiprocess.py, and the training both sides run.

Run as `python _multiprocess_worker.py PROCESS_ID PORT OUT_DIR` with 4 host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=4`): it joins a 2-process job on
localhost (`jax.distributed`, gloo CPU collectives), builds the same tiny native decoder as
every other process, takes its own half of the batch, trains a low-rank DAS rotation on a
"data" mesh over all 8 devices and saves. Process 0 writes what the training gave to
`OUT_DIR/result.json`. The test runs :func:`train` in its own process on 8 devices with the
whole batch and compares.
"""

from __future__ import annotations

import json
import os
import sys

RAW = dict(
    model_type="qwen3",
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=64,
)
BATCH, LENGTH, STEPS, LOG_EVERY = 16, 6, 6, 2


def data():
    """The global batch (the same on every process): base and source ids."""
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 64, (BATCH, LENGTH)), rng.integers(0, 64, (BATCH, LENGTH))


def train(mesh, rows=slice(None), local=False, progress=False, save_to=None) -> dict:
    """Train a rank-4 rotation at layer 1 on examples `rows` of the batch; what it computes."""
    import numpy as np
    import optax

    import jaxvene as jv

    model = jv.NativeDecoder.random(RAW, seed=1, scale=0.3)
    base, src = data()
    labels = np.asarray(model(src).logits[:, -1].argmax(-1))  # every process computes them whole
    jm = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": 1, "component": "block_output", "low_rank_dimension": 4}],
            intervention_types=jv.LowRankRotatedSpaceIntervention,
        ),
        model,
    )
    batch = jv.training.make_batch(
        jm, {"input_ids": base[rows]}, [{"input_ids": src[rows]}], {"sources->base": 4}, labels=labels[rows]
    )
    before = jm.intervention_params()[0].raw
    losses = jv.training.train_interventions(
        jm, [batch] * STEPS, optax.adam(0.05), mesh=mesh, local=local, log_every=LOG_EVERY, progress=progress
    )
    iia = jv.training.evaluate_iia(jm, [batch], mesh=mesh, local=local)
    raw = np.asarray(jm.intervention_params()[0].raw, np.float64)
    q, _ = np.linalg.qr(raw)  # the intervention computes b + (s - b) Q Q^T: Q Q^T is what it learnt
    if save_to is not None:
        jm.save(save_to)
    np.asarray(before)  # the model's initial arrays were not donated away
    return {"losses": losses, "iia": iia, "projection": (q @ q.T).tolist(), "raw": raw.tolist()}


def main(process_id: int, port: int, out: str) -> None:
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id, initialization_timeout=60
        )
    except Exception as e:  # noqa: BLE001 - reported to the test, which skips
        print(f"DISTRIBUTED-UNAVAILABLE: {type(e).__name__}: {e}", flush=True)
        sys.exit(3)
    import numpy as np
    from jax.sharding import Mesh

    assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    half = BATCH // 2
    rows = slice(process_id * half, (process_id + 1) * half)
    result = train(mesh, rows, local=True, progress=True, save_to=os.path.join(out, f"save{process_id}"))
    if process_id == 0:
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(result, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
