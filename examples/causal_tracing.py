"""Causal tracing (ROME, Meng et al. 2022) on the factual-recall GPT-2 that jaxvene ships.

    python examples/causal_tracing.py [--facts 24] [--out jaxvene-output/causal_tracing]

Where does the model recall "The Quorra Vells Gate is in the city of" -> "Lima"? Corrupt the
subject's token embeddings with noise (3 x the embeddings' std, 10 samples), then restore the
clean output of one component at one (layer, position) and measure how much of the answer's
probability comes back. `jv.causal_trace` runs each component's whole (layer x position) table
as one compiled sweep. Averaged over facts, restoring the MLP output of layer 0 at the subject's
last token brings back almost all of it (0.9 of clean - corrupted); at the first word after the
subject, nothing: the fact is recalled at the subject, as ROME found in GPT-2 XL.
"""

import argparse

import jax
import numpy as np

import jaxvene as jv
from jaxvene.pretrained import encode_prompt, facts, load_facts_model

WINDOWS = {"block_output": 1, "mlp_output": 1, "attention_output": 1}  # 4 layers: no windows


def trace_fact(model, tokenizer, fact, key, components=("block_output", "mlp_output", "attention_output")):
    ids = encode_prompt(fact["prompt"], tokenizer)
    target = tokenizer.convert_tokens_to_ids(fact["answer"])
    return jv.causal_trace(
        model,
        {"input_ids": ids},
        fact["subject_token_positions"],
        target,
        key=key,
        components=components,
        windows=WINDOWS,
        progress=False,
    )


def average_mlp_restoration(model, tokenizer, chosen):
    """Per layer, the share of (clean - corrupted) that restoring mlp_output recovers, averaged
    over facts, at four kinds of position."""
    kinds = {
        "first subject token": lambda s, n: s[0],
        "last subject token": lambda s, n: s[-1],
        "first word after subject": lambda s, n: s[-1] + 1,
        "last token": lambda s, n: n - 1,
    }
    rows = {k: [] for k in kinds}
    for i, fact in enumerate(chosen):
        trace = trace_fact(model, tokenizer, fact, jax.random.key(i), components=("mlp_output",))
        share = trace.indirect_effect("mlp_output") / max(trace.clean - trace.corrupted, 1e-9)
        n_tokens = share.shape[1]
        for kind, where in kinds.items():
            rows[kind].append(share[:, where(fact["subject_token_positions"], n_tokens)])
    return {k: np.mean(v, axis=0) for k, v in rows.items()}


def main(n_facts: int = 24, out: str = "jaxvene-output/causal_tracing"):
    model, tokenizer = load_facts_model()
    all_facts = facts()
    fact = all_facts[0]
    trace = trace_fact(model, tokenizer, fact, jax.random.key(0))
    tokens = tokenizer.convert_ids_to_tokens(encode_prompt(fact["prompt"], tokenizer)[0].tolist())
    print(f"{fact['prompt']!r} -> {fact['answer']!r}: clean p {trace.clean:.3f}, corrupted p {trace.corrupted:.3f}")
    for component, layer, pos, score in trace.top_sites(5):
        print(f"  restore {component:<17} layer {layer} at {pos} {tokens[pos]!r:<10} -> p {score:.3f}")
    print("heatmaps:", ", ".join(trace.save_heatmaps(out, tokenizer=tokenizer)))

    chosen = all_facts[:: max(1, len(all_facts) // n_facts)][:n_facts]
    mean = average_mlp_restoration(model, tokenizer, chosen)
    print(f"\nmlp_output restored, share recovered, mean over {len(chosen)} facts:")
    for kind, per_layer in mean.items():
        print(f"  {kind:<26}" + "".join(f"  L{l} {v:5.2f}" for l, v in enumerate(per_layer)))
    return mean


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", type=int, default=24)
    ap.add_argument("--out", default="jaxvene-output/causal_tracing")
    args = ap.parse_args()
    main(args.facts, args.out)
