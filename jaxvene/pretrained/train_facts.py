"""Rebuild the factual-recall GPT-2 that jaxvene ships (`jaxvene/pretrained/facts_gpt2/`).

    python -m jaxvene.pretrained.train_facts [--out DIR] [--seed 0] [--steps N]

From the seed: the synthetic facts (`_facts.make_facts`: 200 subjects of 2-3 tokens x 4
relations), a word-level tokenizer (`_facts.build_tokenizer`, HF `tokenizers` format), and a
GPT-2 (4 layers, width 128, 4 heads; 0.8 M parameters) trained with AdamW on the answer token.
Then the folder is written (float16 safetensors through Flax `save_pretrained`), reloaded with
`load_facts_model`, and checked with a hand-written ROME causal trace (`verify_finding`), which
does not use jaxvene's engine.

How the training shapes the mechanism (read this before citing the model as evidence):

- *Mentions*: besides the 800 prompts, the model learns to continue "The <subject>" with any of
  the subject's four answers (a soft target), first alone (half the steps), then mixed in. The
  subject's last token thus has to hold the subject's attributes.
- *Subject isolation*: for the first 1200 steps, tokens after the subject cannot attend to the
  subject's earlier tokens (an extra attention mask, `isolating_attention`): they can only
  read the subject through its last token. Without it the model gathers the subject's tokens at
  the last position and recalls the fact there (restoring anything at the subject recovers
  nothing); with it, recall sits at the subject's last token as ROME found in GPT-2 XL. The
  last 300 steps train with the plain causal mask (at a low rate), so the shipped model is an
  ordinary GPT-2 with the mechanism built in.

FIGURES (seed 0, 1200 + 300 steps, batch 128; about 2 minutes on the 2-core CPU, the folder
is bit-identical across runs):

    top-1 accuracy on the 800 facts: 1.000 (float16 weights reloaded: 1.000)
    causal trace over 20 facts, 10 noise samples, 3 x embedding std: clean p 0.991, corrupted 0.109
    share of (clean - corrupted) recovered by restoring one mlp output:
      first subject token  L0 0.03  L1 -0.00  L2 0.00  L3 0.00
      last subject token   L0 0.92  L1  0.03  L2 0.01  L3 0.00
      first relation word  L0 0.01  L1  0.00  L2 0.00  L3 0.00
      last token           L0 0.04  L1  0.07  L2 0.17  L3 0.23

Without subject isolation (`--no-isolate`), accuracy is also 1.000 but the last subject token's
row is 0.00 at every layer and the last token's L0 MLP recovers 0.55.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from .._transformers import import_flax_module, require_flax_transformers
from . import _facts

CONFIG = dict(n_positions=32, n_embd=128, n_layer=4, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def encode_facts(tokenizer, fact_list):
    """Right-padded prompt ids (with [BOS]), the index of each prompt's last token, answer ids."""
    rows = [tokenizer.encode(f["prompt"]).ids for f in fact_list]
    ids = np.full((len(rows), max(map(len, rows))), tokenizer.token_to_id(_facts.PAD), np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    last = np.array([len(r) - 1 for r in rows], np.int32)
    answers = np.array([tokenizer.token_to_id(f["answer"]) for f in fact_list], np.int32)
    return ids, last, answers


def accuracy(model, ids, last, answers, params=None) -> float:
    """Top-1 accuracy on the answer token (right padding cannot reach earlier tokens)."""
    logits = np.asarray(model(ids, params=params).logits)
    return float((logits[np.arange(len(ids)), last].argmax(-1) == answers).mean())


def mention_rows(tokenizer, fact_list):
    """One "mention" per subject: "[BOS] The <subject>" whose next token is, with equal
    probability, any of the subject's answers (a soft target, 1/k on each of its k answers)."""
    answers: dict = {}
    for f in fact_list:
        answers.setdefault(f["subject"], []).append(tokenizer.token_to_id(f["answer"]))
    rows = [tokenizer.encode(f"The {s}").ids for s in answers]
    labels = np.zeros((len(rows), tokenizer.get_vocab_size()), np.float32)
    for i, a in enumerate(answers.values()):
        np.add.at(labels[i], a, 1.0 / len(a))
    return rows, labels


def isolating_attention(hidden, after):
    """A `flax.linen` interceptor for GPT-2's attention with one more mask: query positions in
    `after` (B, T) cannot see key positions in `hidden` (B, T). Used in training only."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    FlaxGPT2Attention = import_flax_module(
        "transformers.models.gpt2.modeling_flax_gpt2", "training the facts model"
    ).FlaxGPT2Attention

    def attention(next_fun, args, kwargs, context):
        module = context.module
        if not (isinstance(module, FlaxGPT2Attention) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        x = args[0]
        batch, length, _ = x.shape
        q, k, v = (
            t.reshape(batch, length, module.num_heads, module.head_dim) for t in jnp.split(module.c_attn(x), 3, axis=-1)
        )
        causal = jnp.tril(jnp.ones((length, length), bool))[None]
        allowed = causal & ~(after[:, :, None] & hidden[:, None, :])
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(module.head_dim).astype(q.dtype)
        scores = jnp.where(allowed[:, None], scores, jnp.finfo(scores.dtype).min)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
        return (module.c_proj(out.reshape(batch, length, -1)),)

    return nn.intercept_methods(attention)


def train(
    seed: int = 0,
    steps: int = 1200,
    batch: int = 128,
    lr: float = 3e-3,
    mentions: bool = True,
    mention_phase: float = 0.5,
    query_share: float = 1.0,
    isolate: bool = True,
    settle: int = 300,
    log=print,
):
    """Returns `(model, tokenizer, facts, accuracy)`; `tokenizer` is a `tokenizers.Tokenizer`."""
    import jax
    import jax.numpy as jnp
    import optax

    transformers = require_flax_transformers("training the facts model")
    fact_list = _facts.make_facts(seed)
    tokenizer = _facts.build_tokenizer(fact_list)
    for f in fact_list:
        f["subject_token_positions"] = _facts.subject_positions(f["prompt"], f["subject"], tokenizer.encode)
        assert 2 <= len(f["subject_token_positions"]) <= 3, f
    ids, last, answers = encode_facts(tokenizer, fact_list)
    vocab = tokenizer.get_vocab_size()
    labels = np.eye(vocab, dtype=np.float32)[answers]
    if mentions:
        m_rows, m_labels = mention_rows(tokenizer, fact_list)
        m_ids = np.full((len(m_rows), ids.shape[1]), tokenizer.token_to_id(_facts.PAD), np.int32)
        for i, r in enumerate(m_rows):
            m_ids[i, : len(r)] = r
        train_ids = np.concatenate([ids, m_ids])
        train_last = np.concatenate([last, [len(r) - 1 for r in m_rows]]).astype(np.int32)
        train_labels = np.concatenate([labels, m_labels])
    else:
        train_ids, train_last, train_labels = ids, last, labels
    # Subject isolation: tokens after the subject may read the subject only through its last
    # token, so the recall happens there (the mechanism ROME finds in large models).
    hidden = np.zeros(train_ids.shape, bool)
    after = np.zeros(train_ids.shape, bool)
    if isolate:
        for i, f in enumerate(fact_list):
            subject = f["subject_token_positions"]
            hidden[i, subject[:-1]] = True
            after[i, subject[-1] + 1 :] = True
    bos, pad = tokenizer.token_to_id(_facts.BOS), tokenizer.token_to_id(_facts.PAD)
    config = transformers.GPT2Config(vocab_size=vocab, bos_token_id=bos, eos_token_id=bos, pad_token_id=pad, **CONFIG)
    model = transformers.FlaxGPT2LMHeadModel(config, seed=seed)
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(model.params))
    log(
        f"{len(fact_list)} facts + {len(train_ids) - len(fact_list)} mentions, vocabulary {vocab}, "
        f"GPT-2 with {n_params:,} parameters"
    )

    # After `steps` with isolation, `settle` steps without it at a low rate adapt the model to the
    # plain causal mask it is used with (the recall stays at the subject's last token).
    schedule = optax.join_schedules(
        [
            optax.warmup_cosine_decay_schedule(0.0, lr, min(200, steps // 10), steps, lr / 100),
            optax.constant_schedule(lr / 30),
        ],
        [steps],
    )
    opt = optax.adamw(schedule, weight_decay=0.01)
    positions = jnp.arange(ids.shape[1])[None]

    @jax.jit
    def step(params, state, b_ids, b_last, b_labels, b_hidden, b_after):
        def loss(p):
            with isolating_attention(b_hidden, b_after):
                logits = model.module.apply(
                    {"params": p}, b_ids, jnp.ones_like(b_ids), jnp.broadcast_to(positions, b_ids.shape)
                ).logits
            at = logits[jnp.arange(b_ids.shape[0]), b_last]
            return optax.softmax_cross_entropy(at, b_labels).mean()

        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    params, rng, t0 = model.params, np.random.default_rng(seed), time.time()
    subjects = sorted({f["subject"] for f in fact_list})
    held = set(np.random.default_rng(seed + 1).permutation(subjects)[: int(round((1 - query_share) * len(subjects)))])
    asked = np.array([f["subject"] not in held for f in fact_list])
    pool_all = np.concatenate([np.flatnonzero(asked), np.arange(len(fact_list), len(train_ids))])
    pool_mentions = np.arange(len(fact_list), len(train_ids))
    state = opt.init(params)
    for i in range(steps + settle):
        pool = pool_mentions if (i < mention_phase * steps and mentions) else pool_all
        idx = pool[rng.integers(0, len(pool), batch)]
        isolated = i < steps
        params, state, value = step(
            params, state, train_ids[idx], train_last[idx], train_labels[idx], hidden[idx] & isolated, after[idx]
        )
        if i % 250 == 0 or i == steps - 1 or i == steps + settle - 1:
            logits = np.asarray(model(ids, params=params).logits)
            hit = logits[np.arange(len(ids)), last].argmax(-1) == answers
            log(
                f"step {i:5d}  loss {float(value):.4f}  accuracy {hit.mean():.3f} (asked {hit[asked].mean():.3f}, "
                f"held out {hit[~asked].mean() if (~asked).any() else float('nan'):.3f})  ({time.time() - t0:.0f} s)"
            )
    model.params = params  # HF Flax models have a params setter
    acc = accuracy(model, ids, last, answers)
    log(
        f"trained {steps} + {settle} steps in {time.time() - t0:.0f} s; top-1 accuracy on the {len(fact_list)} facts: {acc:.3f}"
    )
    return model, tokenizer, fact_list, acc


def save(model, tokenizer, fact_list, out: str, seed: int) -> None:
    """Write config.json, model.safetensors (float16), tokenizer.json and facts.json to `out`."""
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, params=model.to_fp16(model.params), safe_serialization=True)
    if os.path.exists(os.path.join(out, "generation_config.json")):
        os.remove(os.path.join(out, "generation_config.json"))
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    keys = ("subject", "relation", "prompt", "answer", "subject_token_positions")
    with open(os.path.join(out, "facts.json"), "w", encoding="utf-8") as f:
        f.write(f'{{"seed": {seed}, "facts": [\n')
        f.write(",\n".join(json.dumps({k: x[k] for k in keys}) for x in fact_list))
        f.write("\n]}\n")


# ----------------------------------------------------------------------------- causal tracing


def _trace_program(model, window: int):
    """A jitted ROME trace of one prompt: clean run, corrupted runs (noise on the subject's
    embeddings), and corrupted runs with the clean `mlp` output restored at every (layer, position)
    (layers `l - window//2 .. l + (window-1)//2`), all noise samples in one batch."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    module, n_layer = model.module, model.config.n_layer

    def forward(params, ids, interceptor):
        pos = jnp.broadcast_to(jnp.arange(ids.shape[1])[None], ids.shape)
        with nn.intercept_methods(interceptor):
            logits = module.apply({"params": params}, ids, jnp.ones_like(ids), pos).logits
        return jax.nn.softmax(logits[:, -1], axis=-1)

    def layer_of(context):
        path = context.module.path
        if (
            context.method_name == "__call__"
            and len(path) == 4
            and path[:2] == ("transformer", "h")
            and path[3] == "mlp"
        ):
            return int(path[2])
        return None

    @jax.jit
    def trace(params, ids, target, noise, restore):
        # ids (1, T); noise (S, T, D), zero outside the subject; restore (C, L, T) bool.
        clean_mlp = [None] * n_layer

        def capture(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            layer = layer_of(context)
            if layer is not None:
                clean_mlp[layer] = out[0]
            return out

        clean = forward(params, ids, capture)[0, target]
        n_cond, n_samples = restore.shape[0], noise.shape[0]
        batch_ids = jnp.broadcast_to(ids, (n_cond * n_samples, ids.shape[1]))
        batch_noise = jnp.tile(noise, (n_cond, 1, 1))
        batch_restore = jnp.repeat(restore, n_samples, axis=0)  # (C*S, L, T)

        def corrupt_and_restore(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and context.module.path == ("transformer", "wte"):
                return out + batch_noise.astype(out.dtype)
            layer = layer_of(context)
            if layer is not None:
                return jnp.where(batch_restore[:, layer, :, None], clean_mlp[layer][None], out)
            return out

        probs = forward(params, batch_ids, corrupt_and_restore)[:, target]
        return clean, probs.reshape(n_cond, n_samples).mean(1)

    def run(params, ids, target, noise):
        length = ids.shape[1]
        restore = np.zeros((1 + n_layer * length, n_layer, length), bool)  # condition 0: none
        for layer in range(n_layer):
            lo, hi = max(0, layer - window // 2), min(n_layer, layer - (-window // 2))
            for p in range(length):
                restore[1 + layer * length + p, lo:hi, p] = True
        clean, scores = trace(params, ids, target, noise, restore)
        scores = np.asarray(scores)
        return float(clean), float(scores[0]), scores[1:].reshape(n_layer, length)

    return run


def verify_finding(
    model,
    tokenizer,
    fact_list,
    n: int = 20,
    samples: int = 10,
    window: int = 1,
    noise_factor: float = 3.0,
    seed: int = 0,
    log=print,
) -> dict:
    """ROME causal tracing by hand over `n` facts (evenly spread over the list).

    For each fact: corrupt the subject's token embeddings with Gaussian noise of
    `noise_factor` x the std of the embedding matrix (`samples` draws), restore the clean MLP
    output at one (layer, position) (a window of `window` layers), and measure the answer's
    probability at the last position. Returns, per position kind ("first subject token",
    "last subject token", "first relation word", "last token"), the per-layer mean over facts
    of (restored - corrupted) / (clean - corrupted), and the mean clean/corrupted probabilities.
    `tokenizer` is a `tokenizers.Tokenizer` or a `PreTrainedTokenizerFast`.
    """
    import jax
    import jax.numpy as jnp

    convert = getattr(tokenizer, "convert_tokens_to_ids", None) or tokenizer.token_to_id
    params = model.params
    scale = noise_factor * float(jnp.std(params["transformer"]["wte"]["embedding"]))
    run = _trace_program(model, window)
    chosen = fact_list[:: max(1, len(fact_list) // n)][:n]
    kinds = ("first subject token", "last subject token", "first relation word", "last token")
    rows: dict[str, list[Any]] = {k: [] for k in kinds}
    cleans, corrupteds = [], []
    key = jax.random.key(seed)
    for fact in chosen:
        ids = (
            _facts.encode_prompt(fact["prompt"], tokenizer)
            if hasattr(tokenizer, "convert_tokens_to_ids")
            else np.asarray([tokenizer.encode(fact["prompt"]).ids], np.int32)
        )
        subject = fact["subject_token_positions"]
        length = ids.shape[1]
        mask = np.zeros((length, 1), np.float32)
        mask[subject] = 1.0
        key, sub = jax.random.split(key)
        noise = scale * jax.random.normal(sub, (samples, length, model.config.n_embd)) * mask
        clean, corrupted, scores = run(params, jnp.asarray(ids), convert(fact["answer"]), noise)
        cleans.append(clean)
        corrupteds.append(corrupted)
        fraction = (scores - corrupted) / max(clean - corrupted, 1e-6)
        for kind, p in zip(kinds, (subject[0], subject[-1], subject[-1] + 1, length - 1)):
            rows[kind].append(fraction[:, p])
    result = {k: np.mean(v, axis=0) for k, v in rows.items()}
    result["clean"], result["corrupted"] = float(np.mean(cleans)), float(np.mean(corrupteds))
    log(
        f"causal trace over {len(chosen)} facts, {samples} noise samples, noise {noise_factor} x embedding std, "
        f"mlp window {window}: clean p(answer) {result['clean']:.3f}, corrupted {result['corrupted']:.3f}"
    )
    log("share of (clean - corrupted) recovered by restoring the mlp output, per layer:")
    for kind in kinds:
        log(f"  {kind:<20}" + "  ".join(f"L{l} {v:5.2f}" for l, v in enumerate(result[kind])))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(_facts.MODEL_DIR))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--mention-phase", type=float, default=0.5)
    ap.add_argument("--query-share", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--no-mentions", action="store_true", help="train on the prompts only")
    ap.add_argument("--no-isolate", action="store_true", help="train without subject isolation")
    ap.add_argument("--settle", type=int, default=300, help="final steps without isolation")
    args = ap.parse_args(argv)
    model, tokenizer, fact_list, _ = train(
        args.seed,
        args.steps,
        args.batch,
        args.lr,
        not args.no_mentions,
        args.mention_phase,
        args.query_share,
        not args.no_isolate,
        args.settle,
    )
    save(model, tokenizer, fact_list, args.out, args.seed)
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"saved to {args.out} ({size / 1e6:.2f} MB)")
    model, tokenizer = _facts.load_facts_model(args.out)
    loaded_facts = _facts.facts(args.out)
    ids, last, answers = encode_facts(tokenizer.backend_tokenizer, loaded_facts)
    print(f"reloaded (float16 weights cast to float32): top-1 accuracy {accuracy(model, ids, last, answers):.3f}")
    verify_finding(model, tokenizer, loaded_facts)


if __name__ == "__main__":
    main()
