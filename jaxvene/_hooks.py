"""Taps: how a running model hands its activations to jaxvene.

Two sources of tap events, one handler:

* Flax modules: inside :func:`handling`, `flax.linen.intercept_methods` reports every
  `__call__` of a module whose input or output is wanted, as the taps `"<path>.input"` (the
  first argument) and `"<path>.output"` (the return value, or its first element for tuples).
* Plain JAX code: `jaxvene.tap(name, x)` reports `x` under `name` and returns what the handler
  gives back; outside a handler it returns `x` unchanged and costs nothing.

The handler is entered *inside* the traced function (never around a jitted call), so each
trace sees exactly the interventions it was built for.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterable, Mapping, Optional

import flax.linen as nn
import jax

from ._sites import join_path

__all__ = ["tap", "handling", "ModuleOverride"]

Handler = Callable[[str, jax.Array], jax.Array]
# An override re-implements a module's __call__ to expose values that are not module calls
# (an activation function applied inline, say). It gets the bound module, the call's args and
# kwargs, and `emit(suffix, value) -> value`, which reports the tap "<path>.<suffix>".
ModuleOverride = Callable[..., object]

_state = threading.local()


def _stack() -> list:
    if not hasattr(_state, "handlers"):
        _state.handlers = []
    return _state.handlers


def tap(name: str, value: jax.Array) -> jax.Array:
    """Mark `value` as the site `name` in your own JAX code.

    Inside a jaxvene run the value may be read (collected) or replaced (intervened); otherwise
    this returns `value` itself. The value is wrapped in `jax.named_scope(name)` so profiles
    show the site.

    >>> def f(x):
    ...     h = jaxvene.tap("hidden", jnp.tanh(x))
    ...     return h.sum()
    """
    stack = _stack()
    if not stack:
        return value
    with jax.named_scope(name):
        return stack[-1](name, value)


@contextlib.contextmanager
def handling(
    handler: Handler,
    module_taps: Iterable[str] = (),
    overrides: Optional[Mapping[str, ModuleOverride]] = None,
):
    """Route tap events to `handler` while the block runs.

    `module_taps` are the `"<path>.input"` / `"<path>.output"` names to report from Flax module
    calls; `overrides` maps module paths to re-implementations of their `__call__`.
    """
    wanted = frozenset(module_taps)
    overrides = dict(overrides or {})
    stack = _stack()
    stack.append(handler)
    try:
        if wanted or overrides:
            with nn.intercept_methods(_interceptor(handler, wanted, overrides)):
                yield
        else:
            yield
    finally:
        stack.pop()


def _interceptor(handler: Handler, wanted: frozenset, overrides: Mapping[str, ModuleOverride]):
    def intercept(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        path = join_path(context.module.path)
        prefix = path + "." if path else ""  # a module applied on its own has the path ()
        in_name, out_name = prefix + "input", prefix + "output"
        if in_name in wanted:
            args, kwargs = _replace_first_argument(args, kwargs, lambda v: handler(in_name, v))
        override = overrides.get(path)
        if override is None:
            out = next_fun(*args, **kwargs)
        else:
            out = override(context.module, args, kwargs, lambda suffix, v: handler(prefix + suffix, v))
        if out_name in wanted:
            out = _replace_first_output(out, lambda v: handler(out_name, v))
        return out

    return intercept


def _replace_first_argument(args, kwargs, fn):
    if args:
        return (fn(args[0]),) + tuple(args[1:]), kwargs
    if not kwargs:
        raise ValueError("cannot read the input of a module called without arguments")
    first = next(iter(kwargs))
    return args, {**kwargs, first: fn(kwargs[first])}


def _replace_first_output(out, fn):
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return (fn(out[0]),) + out[1:]
    if isinstance(out, Mapping):  # HF ModelOutput: the first field
        first = next(iter(out))
        out[first] = fn(out[first])
        return out
    return fn(out)
