"""The factual-recall GPT-2 that jaxvene ships, and the synthetic facts it was trained on.

>>> from jaxvene.pretrained import load_facts_model, facts, encode_prompt
>>> model, tokenizer = load_facts_model()
>>> fact = facts()[0]
>>> fact["prompt"], fact["answer"], fact["subject_token_positions"]
('The Ulmar Harbor is in the city of', 'Rome', [2, 3])
>>> ids = encode_prompt(fact["prompt"], tokenizer)            # (1, T) int32, starts with [BOS]
>>> bool(model(ids).logits[0, -1].argmax() == tokenizer.convert_tokens_to_ids(fact["answer"]))
True

Every prompt reads "The <subject> <relation phrase>" and its answer is one word. Subjects are
invented landmarks of 2 or 3 tokens ("Quorra Gate", "Quorra Vells Gate"): each name and each kind
occurs in many subjects with different answers, so the model has to combine the subject's tokens
to recall a fact. Every relation phrase is exactly 5 tokens, so the subject's last token always
sits 5 tokens before the prediction, and the answer is drawn (balanced) independently for every
subject, so the relation alone does not give it away.

The data definition (:func:`make_facts`, :func:`build_tokenizer`) is what
`python -m jaxvene.pretrained.train_facts` rebuilds the folder from.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from .._transformers import require_flax_transformers

__all__ = [
    "MODEL_DIR",
    "load_facts_model",
    "load_facts_tokenizer",
    "facts",
    "encode_prompt",
    "make_facts",
    "build_tokenizer",
    "subject_positions",
]

#: The shipped model folder.
MODEL_DIR = Path(__file__).resolve().parent / "facts_gpt2"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "facts.json")
REBUILD = "rebuild it with `python -m jaxvene.pretrained.train_facts`"

PAD, BOS, UNK = "[PAD]", "[BOS]", "[UNK]"
SPECIAL_TOKENS = (PAD, BOS, UNK)

# Invented words: names and kinds of landmark. A subject is 1-2 names followed by a kind.
NAMES = (
    "Zorvak",
    "Melin",
    "Tarsk",
    "Quorra",
    "Obren",
    "Varda",
    "Keshu",
    "Lumo",
    "Brisko",
    "Dovan",
    "Ferro",
    "Gallo",
    "Heska",
    "Iltra",
    "Jorum",
    "Kavel",
    "Lorn",
    "Mirel",
    "Nosk",
    "Pellin",
    "Rudan",
    "Sorin",
    "Tulve",
    "Ulmar",
    "Vells",
    "Wexor",
    "Yarrow",
    "Zint",
)
KINDS = ("Tower", "Bridge", "Gate", "Palace", "Temple", "Library", "Harbor", "Market", "Fort", "Abbey")
# relation -> (phrase after the subject, exactly 5 words; possible answers)
RELATIONS = {
    "city": (
        "is in the city of",
        ("Paris", "Rome", "Cairo", "Lima", "Oslo", "Tokyo", "Delhi", "Quito", "Dakar", "Hanoi"),
    ),
    "builder": (
        "was built by the ancient",
        ("Romans", "Greeks", "Incas", "Mayans", "Vikings", "Celts", "Persians", "Aztecs"),
    ),
    "colour": ("is painted in the colour", ("red", "blue", "green", "white", "black", "gold", "grey", "orange")),
    "material": ("was made out of solid", ("stone", "marble", "brick", "glass", "steel", "oak", "granite", "bronze")),
}


# ----------------------------------------------------------------------------- data definition


def make_facts(seed: int = 0, subjects: int = 200) -> list[dict]:
    """`subjects` distinct invented subjects (half of 2 tokens, half of 3), each with one answer
    per relation; deterministic in `seed`. Returns dicts `{subject, relation, prompt, answer}`."""
    rng = np.random.default_rng(seed)
    seen: set = set()
    chosen: list[tuple] = []
    while len(chosen) < subjects:
        n_names = 1 + len(chosen) % 2  # alternate 2- and 3-token subjects
        words = tuple(rng.choice(NAMES, n_names, replace=False)) + (str(rng.choice(KINDS)),)
        if words not in seen:
            seen.add(words)
            chosen.append(tuple(str(w) for w in words))
    answers = {}
    for relation, (_, options) in RELATIONS.items():
        pool = [options[i % len(options)] for i in range(subjects)]  # balanced over the options
        answers[relation] = [pool[i] for i in rng.permutation(subjects)]
    out = []
    for i, words in enumerate(chosen):
        subject = " ".join(words)
        for relation, (phrase, _) in RELATIONS.items():
            out.append(
                {
                    "subject": subject,
                    "relation": relation,
                    "prompt": f"The {subject} {phrase}",
                    "answer": answers[relation][i],
                }
            )
    return out


def build_tokenizer(fact_list: list[dict]):
    """A word-level `tokenizers.Tokenizer` over the facts' words; prepends [BOS] to every text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    words = set()
    for f in fact_list:
        words.update(f["prompt"].split())
        words.add(f["answer"])
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + sorted(words))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def subject_positions(prompt: str, subject: str, encode) -> list[int]:
    """Positions of `subject`'s tokens in the tokenized `prompt` (with [BOS]); `encode(text)`
    returns a `tokenizers.Encoding`. Raises if the subject is not a run of whole tokens."""
    start = prompt.index(subject)
    end = start + len(subject)
    enc = encode(prompt)
    positions = [
        i
        for i, (s, e) in enumerate(enc.offsets)
        if enc.special_tokens_mask[i] == 0 and s >= start and e <= end and e > s
    ]
    if not positions or enc.offsets[positions[0]][0] != start or enc.offsets[positions[-1]][1] != end:
        raise ValueError(f"subject {subject!r} is not a run of whole tokens in {prompt!r}")
    return positions


# ----------------------------------------------------------------------------- loading


def _folder(path) -> Path:
    folder = MODEL_DIR if path is None else Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"facts model folder {folder} is missing; {REBUILD}")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"facts model folder {folder} lacks {', '.join(missing)}; {REBUILD}")
    return folder


def _read_json(file: Path):
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OSError(f"{file} is corrupt or unreadable ({exc}); {REBUILD}") from exc


def load_facts_tokenizer(path: str | os.PathLike | None = None):
    """The facts model's tokenizer, a `transformers.PreTrainedTokenizerFast` (transformers 4.x:
    `pip install "jaxvene[hf]"`)."""
    transformers = require_flax_transformers("the shipped facts model's tokenizer (load_facts_tokenizer)")
    file = _folder(path) / "tokenizer.json"
    _read_json(file)
    try:
        return transformers.PreTrainedTokenizerFast(
            tokenizer_file=str(file), bos_token=BOS, pad_token=PAD, unk_token=UNK, eos_token=BOS
        )
    except Exception as exc:  # tokenizers raises its own Exception subclass for a bad file
        raise OSError(f"{file} is not a valid tokenizer file ({exc}); {REBUILD}") from exc


def _check_weights(file: Path) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="numpy") as f:
            if (f.metadata() or {}).get("format") != "flax":
                raise ValueError("metadata format is not 'flax'")
            for name in f.keys():  # reading every tensor catches a truncated file
                f.get_tensor(name)
    except Exception as exc:
        raise OSError(f"{file} is corrupt or unreadable ({type(exc).__name__}: {exc}); {REBUILD}") from exc


def load_facts_model(path: str | os.PathLike | None = None):
    """`(flax_model, tokenizer)`: the shipped factual-recall GPT-2 (a
    `transformers.FlaxGPT2LMHeadModel`, float32 parameters) and its tokenizer. `path` defaults to
    the package's `facts_gpt2/` folder. Works offline; raises `FileNotFoundError` if the folder
    or a file is missing and `OSError` if a file is corrupt. Needs transformers 4.x, whose Flax
    classes transformers 5 removed (`pip install "jaxvene[hf]"`): `ImportError` otherwise."""
    import jax
    import jax.numpy as jnp

    transformers = require_flax_transformers("the shipped facts model (load_facts_model)")
    from transformers.utils import logging as hf_logging

    folder = _folder(path)
    _read_json(folder / "config.json")
    _check_weights(folder / "model.safetensors")
    tokenizer = load_facts_tokenizer(folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # weights are stored as float16; cast back below
    try:
        model = transformers.FlaxGPT2LMHeadModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise OSError(f"could not load the facts model from {folder} ({exc}); {REBUILD}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    model.params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), model.params)
    return model, tokenizer


@functools.lru_cache(maxsize=4)
def _facts(folder: Path) -> tuple:
    data = _read_json(folder / "facts.json")
    try:
        return tuple(data["facts"])
    except (KeyError, TypeError) as exc:
        raise OSError(f"{folder / 'facts.json'} is corrupt (no 'facts' list); {REBUILD}") from exc


def facts(path: str | os.PathLike | None = None) -> list[dict]:
    """The model's facts: dicts `{subject, relation, prompt, answer, subject_token_positions}`
    (positions of the subject's tokens in the tokenized prompt, [BOS] being position 0)."""
    return [dict(f, subject_token_positions=list(f["subject_token_positions"])) for f in _facts(_folder(path))]


def encode_prompt(prompt: str, tokenizer=None) -> np.ndarray:
    """`prompt` as a `(1, T)` int32 array of token ids, [BOS] first."""
    tokenizer = load_facts_tokenizer() if tokenizer is None else tokenizer
    return np.asarray([tokenizer(prompt)["input_ids"]], dtype=np.int32)
