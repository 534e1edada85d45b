"""A checkpoint's tokenizer, without requiring transformers.

:func:`load_tokenizer` returns transformers' `AutoTokenizer` for the folder when transformers
is installed (any version: tokenizers are not Flax; a folder with a `tokenizer.json` but no
`tokenizer_config.json` gets that file as it is), else a `tokenizers.Tokenizer` read from the
folder's `tokenizer.json` (call `.encode(text).ids`).
"""

from __future__ import annotations

import os

from ._checkpoint import resolve

__all__ = ["load_tokenizer"]


def load_tokenizer(path: str | os.PathLike):
    """The tokenizer of a checkpoint folder (or a hub name in the local HF cache)."""
    folder = resolve(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a directory")
    file = os.path.join(folder, "tokenizer.json")
    try:
        import transformers
    except ImportError:
        pass
    else:
        if not os.path.isfile(os.path.join(folder, "tokenizer_config.json")) and os.path.isfile(file):
            # a bare tokenizer.json: AutoTokenizer would guess a class from config.json's model_type
            # and add that family's special tokens; take the file as it is
            return transformers.PreTrainedTokenizerFast(tokenizer_file=file)
        return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    from tokenizers import Tokenizer

    if not os.path.isfile(file):
        raise FileNotFoundError(f"no tokenizer.json in {folder} (without transformers, jaxvene reads only that file)")
    return Tokenizer.from_file(file)
