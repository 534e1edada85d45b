"""Activation patching on the factual-recall GPT-2: which activations carry the answer?

    python examples/activation_patching.py [--pairs 8] [--out jaxvene-output/activation_patching]

Two prompts with the same relation and subjects of the same length but different answers:
"The Ulmar Harbor is in the city of" -> Rome (clean) and "The Tarsk Tower is in the city of"
-> Hanoi (corrupted). Patching one clean activation into the corrupted run, at every
(layer, position), and reading the logit difference (clean answer - corrupted answer) shows
where the answer lives: the residual stream at the subject's last token up to the layer where
the last token reads it (layers 0-1), then the last token (mean over the default 8 pairs: 0.90
at "Tower" after layer 0, 0.95 at "of" after layer 2). `jv.sweep` runs the whole table
as one compiled sweep; the same patch through pyvene's interface (`jv.IntervenableModel`) at one
cell gives the same number. Every pair's subjects take the first fact's token positions (2
tokens), so every prompt has 9 tokens with the subject at the same positions, and the tables
average cell by cell.
"""

import argparse
import os

import numpy as np

import jaxvene as jv
from jaxvene.pretrained import encode_prompt, facts, load_facts_model


def pairs(all_facts, n):
    """`n` (clean, corrupted) facts: same relation, different answers, and subjects at the
    first fact's token positions, so that every prompt has as many tokens, with the subject at
    the same positions, and the tables average position by position."""
    positions = all_facts[0]["subject_token_positions"]
    same_length = [f for f in all_facts if f["subject_token_positions"] == positions]
    out = []
    for i, a in enumerate(same_length):
        b = next(
            (f for f in same_length[i + 1 :] if f["relation"] == a["relation"] and f["answer"] != a["answer"]), None
        )
        if b is not None:
            out.append((a, b))
        if len(out) == n:
            break
    if len(out) < n:
        raise ValueError(f"only {len(out)} pairs of facts with subjects at positions {positions}; asked for {n}")
    return out


def normalised_table(model, tokenizer, clean, corrupted, component="block_output"):
    """(layers, positions): 0 = corrupted run's logit difference, 1 = clean run's."""
    c_ids, x_ids = encode_prompt(clean["prompt"], tokenizer), encode_prompt(corrupted["prompt"], tokenizer)
    good, bad = (tokenizer.convert_tokens_to_ids(f["answer"]) for f in (clean, corrupted))
    metric = jv.patching.logit_diff(good, bad)
    table = jv.sweep(
        model, {"input_ids": x_ids}, {"input_ids": c_ids}, metric=metric, component=component, progress=False
    )
    clean_ld = float(metric(model(c_ids).logits))
    corrupted_ld = float(metric(model(x_ids).logits))
    return (table - corrupted_ld) / (clean_ld - corrupted_ld)


def one_cell_with_pyvene_interface(model, tokenizer, clean, corrupted, layer, position):
    """The same patch as one cell of the table, written as pyvene code would be."""
    config = jv.IntervenableConfig(
        [{"layer": layer, "component": "block_output", "unit": "pos"}], intervention_types=jv.VanillaIntervention
    )
    patcher = jv.IntervenableModel(config, model)
    _, out = patcher(
        {"input_ids": encode_prompt(corrupted["prompt"], tokenizer)},
        [{"input_ids": encode_prompt(clean["prompt"], tokenizer)}],
        {"sources->base": position},
    )
    logits = np.asarray(out.logits)[0, -1]
    good, bad = (tokenizer.convert_tokens_to_ids(f["answer"]) for f in (clean, corrupted))
    return float(logits[good] - logits[bad]), tokenizer.convert_ids_to_tokens(int(logits.argmax()))


def save_picture(mean, tokens, n_pairs, out):
    """The (layers, positions) table: layers down, the corrupted prompt's tokens across."""
    fig = jv.analysis.plot_grid(
        mean,
        row_label="layer",
        columns=tokens,
        column_label="position (first pair's corrupted prompt)",
        colorbar_label="share of the clean logit difference restored",
        title=f"block_output patched from the clean run into the corrupted run, mean over {n_pairs} pairs",
    )
    return jv.analysis.save_figure(fig, os.path.join(out, "block_output_patching.png"))


def main(n_pairs: int = 8, out: str | None = None):
    model, tokenizer = load_facts_model()
    chosen = pairs(facts(), n_pairs)
    tables = [normalised_table(model, tokenizer, a, b) for a, b in chosen]
    mean = np.mean(tables, axis=0)
    a, b = chosen[0]
    tokens = tokenizer.convert_ids_to_tokens(encode_prompt(b["prompt"], tokenizer)[0].tolist())
    print(f"e.g. clean {a['prompt']!r} -> {a['answer']}, corrupted {b['prompt']!r} -> {b['answer']}")
    print(f"block_output patched clean -> corrupted, mean over {len(chosen)} pairs (1 = clean answer restored):")
    print("  layer " + "".join(f"{t:>9}" for t in tokens))
    for layer, row in enumerate(mean):
        print(f"  {layer:>5} " + "".join(f"{v:9.2f}" for v in row))
    last_subject = a["subject_token_positions"][-1]
    diff, top = one_cell_with_pyvene_interface(model, tokenizer, a, b, 0, last_subject)
    print(
        f"pyvene-style call, layer 0 at the subject's last token: the model now answers {top!r} "
        f"(logit difference {diff:.2f})"
    )
    if out is not None:
        print("heatmap:", save_picture(mean, tokens, len(chosen), out))
    return {"mean": mean, "pairs": chosen, "tables": tables}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--out", default="jaxvene-output/activation_patching", help="folder for the picture")
    args = ap.parse_args()
    main(args.pairs, out=args.out)
