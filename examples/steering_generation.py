"""Steering by adding a vector during generation, on the factual-recall GPT-2.

    python examples/steering_generation.py [--layer 2] [--scale 4]

A direction for one answer: the mean residual stream (`block_output`) at the last token over
"... is in the city of" prompts whose answer is Paris, minus the mean over all of them. Adding a
multiple of it at the prompt's last token while generating (`AdditionIntervention` with a
constant source, `intervene_on_prompt=True`) makes the model answer Paris for subjects it knows
to be elsewhere. pyvene's words throughout: `IntervenableConfig`, `AdditionIntervention`,
`source_representations`, `generate`.
"""

import argparse

import jax.numpy as jnp
import numpy as np

import jaxvene as jv
from jaxvene.pretrained import encode_prompt, facts, load_facts_model


def residuals(model, tokenizer, prompts, layer):
    """block_output at `layer`, last position, for each prompt: (N, D)."""
    collect = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": layer, "component": "block_output"}], intervention_types=jv.CollectIntervention
        ),
        model,
    )
    out = []
    for prompt in prompts:
        ids = encode_prompt(prompt, tokenizer)
        (_, collected), _ = collect({"input_ids": ids}, unit_locations={"base": ids.shape[1] - 1})
        out.append(np.asarray(collected[0]).reshape(-1))
    return np.stack(out)


def main(layer: int = 2, scale: float = 4.0, answer: str = "Paris", n_test: int = 20):
    model, tokenizer = load_facts_model()
    city = [f for f in facts() if f["relation"] == "city"]
    acts = residuals(model, tokenizer, [f["prompt"] for f in city], layer)
    is_answer = np.array([f["answer"] == answer for f in city])
    direction = acts[is_answer].mean(0) - acts.mean(0)

    steer = jv.IntervenableModel(
        jv.IntervenableConfig(
            [{"layer": layer, "component": "block_output"}], intervention_types=jv.AdditionIntervention
        ),
        model,
    )
    others = [f for f in city if f["answer"] != answer][:n_test]
    hits = 0
    for i, fact in enumerate(others):
        ids = encode_prompt(fact["prompt"], tokenizer)
        original, steered = steer.generate(
            {"input_ids": ids},
            unit_locations={"base": ids.shape[1] - 1},
            source_representations=jnp.asarray(scale * direction),
            intervene_on_prompt=True,
            output_original_output=True,
            max_new_tokens=1,
        )
        before = tokenizer.convert_ids_to_tokens(int(np.asarray(original)[0, -1]))
        after = tokenizer.convert_ids_to_tokens(int(np.asarray(steered)[0, -1]))
        hits += after == answer
        if i < 5:
            print(f"{fact['prompt']!r}: {before} -> steered: {after}")
    rate = hits / len(others)
    print(
        f"steered to {answer!r} in {hits}/{len(others)} prompts whose answer is elsewhere "
        f"(layer {layer}, scale {scale})"
    )
    return rate


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--scale", type=float, default=4.0)
    args = ap.parse_args()
    main(args.layer, args.scale)
