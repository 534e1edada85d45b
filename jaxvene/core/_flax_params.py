"""Flax applies without Flax's per-parameter shape re-derivation, and the check that replaces it.

On every `module.apply`, Flax's `Scope.param` re-derives the shape of each parameter that
already exists by tracing its initializer (`jax.eval_shape(init_fn)`), to compare it with the
param passed in. For a HF GPT-2-small that is about 300 abstract traces per apply, measured at
0.9 s of a 2.4 s first intervened call (a source run and a base run: two applies) on the 2-core
CPU. jaxvene applies models to params whose shapes it checks itself, once per trace, against
the model's own (:func:`check_params`), so inside :func:`unchecked_param_shapes` that Flax
check is skipped: only the `eval_shape` called from `Scope.param` is answered with nothing
(no leaves to compare); every other use of `jax` in Flax is untouched. The stand-in for `jax`
in `flax.core.scope` is installed when this module is imported and delegates everything
outside the context. If Flax's internals change (no `flax.core.scope.jax`), nothing is
installed and Flax checks as usual.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import jax

__all__ = ["unchecked_param_shapes", "check_params"]

_state = threading.local()


class _SkipParamShapeCheck:
    """`jax` as `flax.core.scope` sees it, except `eval_shape` called by `Scope.param`."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def eval_shape(self, fn, *args, **kwargs):
        if sys._getframe(1).f_code.co_name == "param" and getattr(_state, "depth", 0):
            return None  # nothing to compare: the params were checked by check_params
        return self._real.eval_shape(fn, *args, **kwargs)


def _install() -> None:
    try:
        import flax.core.scope as scope
    except ImportError:  # pragma: no cover - flax's layout of the day
        return
    if getattr(scope, "jax", None) is jax:
        setattr(scope, "jax", _SkipParamShapeCheck(jax))  # noqa: B010 (a module attribute of flax's)


_install()


@contextlib.contextmanager
def unchecked_param_shapes():
    """Flax applies inside this context skip Flax's re-derivation of param shapes (see the
    module docstring); re-entrant, per thread."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def check_params(params, reference, what: str = "params") -> None:
    """`params` must have the tree and leaf shapes of `reference` (a model's own params):
    Flax's own check is skipped inside :func:`unchecked_param_shapes`. Works on tracers."""
    if params is reference:
        return
    got, tree = jax.tree_util.tree_flatten_with_path(params)
    want, ref_tree = jax.tree_util.tree_flatten_with_path(reference)
    if str(tree) != str(ref_tree):
        have = {jax.tree_util.keystr(p) for p, _ in got}
        need = {jax.tree_util.keystr(p) for p, _ in want}
        missing, extra = sorted(need - have)[:3], sorted(have - need)[:3]
        raise ValueError(
            f"{what} do not have the model's parameter tree: missing {missing or 'none'}, unexpected {extra or 'none'}"
        )
    for (path, a), (_, b) in zip(got, want):
        if tuple(getattr(a, "shape", ())) != tuple(getattr(b, "shape", ())):
            raise ValueError(
                f"{what}: {jax.tree_util.keystr(path)} has shape {tuple(a.shape)}, but the model's has {tuple(b.shape)}"
            )
