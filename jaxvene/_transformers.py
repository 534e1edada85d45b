"""transformers as an optional dependency: jaxvene's core needs none.

HuggingFace's Flax model classes (`FlaxGPT2LMHeadModel`, `FlaxLlamaForCausalLM`, ...) and
their output dataclasses exist in transformers 4.x only: transformers 5 removed them. The code
that needs them (the HF Flax adapter's families, the shipped facts GPT-2, the demo) imports
them through :func:`require_flax_transformers` or :func:`import_flax_module`, when called,
never at import time, so `import jaxvene` works with no transformers or with transformers 5,
and a path that does need them fails with an error that says what to install.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

__all__ = [
    "HF_EXTRA",
    "FlaxTransformersMissing",
    "flax_transformers_installed",
    "import_flax_module",
    "require_flax_transformers",
]

#: What to install for the HF Flax models.
HF_EXTRA = "pip install 'jaxvene[hf]' (transformers>=4.45,<5)"


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def flax_transformers_installed() -> bool:
    """Whether the installed transformers (by its package metadata; nothing is imported) is a
    4.x, which has the Flax classes."""
    try:
        return _major(importlib.metadata.version("transformers")) < 5
    except importlib.metadata.PackageNotFoundError:
        return False


class FlaxTransformersMissing(ImportError):
    """Something needs transformers 4.x's Flax classes, and the installed transformers (none,
    or 5.x) has none."""


def _missing(what: str, found: str) -> ImportError:
    return FlaxTransformersMissing(
        f"{what} needs transformers 4.x's Flax classes (transformers 5 removed them): {HF_EXTRA}; {found}."
    )


def require_flax_transformers(what: str) -> ModuleType:
    """`transformers`, when it is a 4.x; otherwise a :class:`FlaxTransformersMissing` (an
    `ImportError`) saying that `what` needs it and what to install.

    Example::

        transformers = require_flax_transformers("load_facts_model()")
        model = transformers.FlaxGPT2LMHeadModel.from_pretrained(folder)
    """
    try:
        import transformers
    except ImportError as exc:
        raise _missing(what, f"importing transformers failed ({exc})") from exc
    version = str(getattr(transformers, "__version__", "0"))
    if _major(version) >= 5:
        raise _missing(what, f"transformers {version} is installed")
    return transformers


def import_flax_module(name: str, what: str) -> ModuleType:
    """The transformers module `name` (e.g. `"transformers.modeling_flax_outputs"`), which
    only transformers 4.x has; otherwise the error :func:`require_flax_transformers` raises."""
    require_flax_transformers(what)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise _missing(what, f"importing {name} failed ({exc})") from exc
