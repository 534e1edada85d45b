"""Compiled programs shared by structure, and JAX's persistent compilation cache.

A jitted function keeps one compiled program per distinct set of static arguments and input
shapes. If every `IntervenableModel` jitted its own closure, each new instance would compile
again, even for a config of the same shape as the last one (pyvene's tutorials build one
instance per layer and position). Instead, the programs here are module-level jitted functions
that take the model as a :class:`Structure`: a hashable stand-in whose equality is the model's
*structure* (its architecture and config, never its weights), so two instances whose model
structure, plan and input shapes are equal run the same compiled program.

* The model's params are always an argument of the program, never closed over: models with
  different weights but the same structure share a program and get their own numbers.
* A :class:`Structure` refers to its adapter weakly, so a compiled program kept in JAX's cache
  does not keep the model (or its params) alive.
* An adapter says what its structure is with a `structure_key()` method (a hashable value that
  is equal exactly when `apply` computes the same function of `params` and `inputs`);
  :class:`~jaxvene.HFFlaxAdapter` and the native decoders have one. An adapter without one is
  its own key (compared by identity): safe, but only the same model object shares programs.

:func:`enable_compilation_cache` turns on JAX's cache of compiled programs on disk, so that a
new process does not compile again what an earlier one compiled.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import threading
import weakref
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["Structure", "structure_key", "identity", "traces", "count_trace", "enable_compilation_cache"]

_tokens: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_counter = itertools.count()
_lock = threading.Lock()
_traces = 0


def structure_key(adapter: Any) -> Any:
    """A hashable key, equal for two adapters exactly when their programs may be shared.

    The adapter's own `structure_key()` where it has one (with its class), else a token unique
    to the adapter object (never reused, unlike `id`)."""
    own = getattr(adapter, "structure_key", None)
    if callable(own):
        return (type(adapter), own())
    with _lock:
        try:
            token = _tokens.get(adapter)
            if token is None:
                token = _tokens[adapter] = next(_counter)
            return (type(adapter), "object", token)
        except TypeError:  # not weak-referenceable: the key holds the object itself
            return (type(adapter), "object", _ByIdentity(adapter))


def identity(obj: Any) -> Any:
    """A part of a structure key that stands for `obj` itself (a function, a family table):
    equal only to the same object, and holding it weakly where it can, so that a key kept in
    JAX's cache does not keep `obj` (or what a closure captured) alive."""
    try:
        return _WeakIdentity(obj)
    except TypeError:
        return _ByIdentity(obj)


class _WeakIdentity:
    __slots__ = ("_ref", "_hash")

    def __init__(self, obj):
        self._ref = weakref.ref(obj)
        self._hash = id(obj)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if not isinstance(other, _WeakIdentity):
            return False
        mine = self._ref()
        return other is self or (mine is not None and other._ref() is mine)


class _ByIdentity:
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other) -> bool:
        return isinstance(other, _ByIdentity) and other.obj is self.obj


class _Held:
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __call__(self):
        return self.obj


class Structure:
    """An adapter as a static argument of a shared jitted program.

    Hashes and compares by :func:`structure_key`; `.adapter` gives the adapter back while it
    is alive (during a call, the caller holds it). JAX keeps the static arguments of the
    programs it has compiled: this holds the adapter weakly, so those do not keep models and
    their params alive.
    """

    __slots__ = ("key", "_ref", "__weakref__")

    def __init__(self, adapter: Any):
        self.key = structure_key(adapter)
        ref: Callable[[], Any]
        try:
            ref = weakref.ref(adapter)
        except TypeError:  # not weak-referenceable: held (its key holds it anyway)
            ref = _Held(adapter)
        self._ref = ref

    @property
    def adapter(self) -> Any:
        adapter = self._ref()
        if adapter is None:  # pragma: no cover - a program is only traced during a call
            raise RuntimeError("the model of this program was deleted")
        return adapter

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, Structure) and other.key == self.key

    def __repr__(self) -> str:
        return f"Structure({self.key[0].__name__})"


def count_trace() -> None:
    """Called inside a shared program's Python body: once per trace (= per compilation)."""
    global _traces
    with _lock:
        _traces += 1


def traces() -> int:
    """How many times the shared programs (intervened calls, generation) have been traced in
    this process; a call that found its program compiled adds nothing."""
    return _traces


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    *,
    min_compile_time_secs: float = 0.5,
    min_entry_size_bytes: int = 0,
) -> pathlib.Path:
    """Keep compiled programs on disk, so a new process loads them instead of compiling.

    JAX's persistent compilation cache (`jax_compilation_cache_dir`), with jaxvene's defaults:
    programs that took at least `min_compile_time_secs` to compile (JAX's default is 1 s;
    a 12-layer GPT-2's intervened call takes about 2-3 s on a laptop CPU) and of any size.
    The cache is keyed by the program (HLO), the JAX version and the device, so a stale entry
    is never used. Call it early, before the first compilation: JAX reads the setting once,
    when it first compiles (this function resets JAX's cache state so a later call takes
    effect too).

    Args:
      path: the directory; default `$JAXVENE_CACHE_DIR`, else `~/.cache/jaxvene/xla`.
      min_compile_time_secs: store only programs that took at least this long to compile.
      min_entry_size_bytes: store only programs at least this large.

    Returns:
      The directory used.
    """
    if path is None:
        path = os.environ.get("JAXVENE_CACHE_DIR") or pathlib.Path.home() / ".cache" / "jaxvene" / "xla"
    directory = pathlib.Path(path).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    # JAX replaces 0 by its own minimum when the cache starts; -1 means "no minimum"
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes) or -1)
    try:  # JAX initialises its cache once, at the first compilation: start it again
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):  # pragma: no cover - a JAX without this private hook
        pass
    return directory
