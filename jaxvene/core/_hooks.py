"""Taps: how a running model hands its activations to jaxvene.

Two sources of tap events, one handler:

* Flax modules: inside :func:`handling`, `flax.linen.intercept_methods` reports every
  `__call__` of a module whose input or output is wanted, as the taps `"<path>.input"` (the
  first argument) and `"<path>.output"` (the return value, or its first element for tuples).
* Plain JAX code: `jaxvene.tap(name, x)` reports `x` under `name` and returns what the handler
  gives back; outside a handler it returns `x` unchanged and costs nothing.

The handler is entered *inside* the traced function (never around a jitted call), so each
trace sees exactly the interventions it was built for.

What a handler reads must leave the model as a value, never as a Python side effect: a value
stored from inside `jax.checkpoint` (`nn.remat`) or a scan is a tracer of that inner trace and
is dead outside it. Three channels carry reads out:

* at the top level of the traced function, a dict (:func:`keep`);
* inside :func:`scan_layers`, the scan's outputs (one entry per layer);
* inside a Flax module, the `"jaxvene"` variable collection (:data:`READS`): :func:`keep` sows
  the value there, Flax's lifted transforms (`nn.remat`, `nn.jit`, `nn.vmap`) carry the
  collection out, and :func:`flax_apply`, which adapters use instead of `module.apply`, hands
  it back to the handler. A transform that drops the collection (`nn.scan` without it in
  `variable_axes`) gets a clear error instead of a leaked tracer.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import cast

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from ._sites import join_path

__all__ = ["tap", "handling", "scan_layers", "ModuleOverride", "READS", "keep", "flax_apply", "listening"]

#: The Flax variable collection that carries reads out of Flax modules.
READS = "jaxvene"

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


def _modules() -> list:
    """The Flax modules whose methods are running, innermost last (pushed by the interceptor)."""
    if not hasattr(_state, "modules"):
        _state.modules = []
    return _state.modules


def listening() -> bool:
    """Whether a jaxvene run is listening to taps (outside one, taps cost nothing)."""
    return bool(_stack())


def keep(handler, key: tuple, value) -> None:
    """Return `value`, read under `key` (e.g. `("get", 3)`), to `handler` as a value of the pass.

    Inside a Flax module applied by :func:`flax_apply`, the value is sown into the
    :data:`READS` collection, which leaves any lifted transform; elsewhere it goes straight
    into `handler.reads`.
    """
    modules = _modules()
    if modules and bool(getattr(handler, "_flax_reads", 0)):
        module = modules[-1]
        if not module.is_mutable_collection(READS):
            raise NotImplementedError(
                f"a value is read inside the Flax module {join_path(module.path) or type(module).__name__}, "
                f"under a transform that does not carry jaxvene's variable collection {READS!r} out "
                "(nn.scan carries only the collections in its variable_axes / variable_carry). Run stacked "
                "layers with jaxvene.scan_layers, which addresses each layer, or apply the layers unscanned."
            )
        module.sow(READS, f"{key[0]}_{key[1]}", value, init_fn=lambda: None, reduce_fn=lambda _, new: new)
        return
    handler.reads[key] = value


def flax_apply(module, variables, *args, **kwargs):
    """`module.apply(variables, *args, **kwargs)`, with what the listening handler reads inside
    the module carried out in the :data:`READS` collection and handed to `handler.absorb`.

    Adapters call this instead of `module.apply`; outside a jaxvene run it is `module.apply`.
    """
    stack = _stack()
    handler = stack[-1] if stack else None
    if handler is None or not hasattr(handler, "absorb"):
        return module.apply(variables, *args, **kwargs)
    mutable = kwargs.pop("mutable", False)
    extra = [mutable] if isinstance(mutable, str) else list(mutable or ())
    handler._flax_reads = getattr(handler, "_flax_reads", 0) + 1
    try:
        out, mutated = module.apply(variables, *args, mutable=extra + [READS], **kwargs)
    finally:
        handler._flax_reads -= 1
    mutated = dict(mutated)
    found = mutated.pop(READS, {})
    handler.absorb({_parse_key(path[-1]): value for path, value in _flat(found)})
    return out if mutable is False else (out, mutated)


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _parse_key(name: str) -> tuple:
    kind, index = name.rsplit("_", 1)
    return kind, int(index)


def tap(name: str, value: jax.Array) -> jax.Array:
    """Mark `value` as the site `name` in your own JAX code.

    Inside a jaxvene run the value may be read (collected) or replaced (intervened); otherwise
    this returns `value` itself. The value is wrapped in `jax.named_scope(name)` so profiles
    show the site.

    >>> import jax.numpy as jnp, jaxvene as jv
    >>> def f(x):
    ...     h = jv.tap("hidden", jnp.tanh(x))
    ...     return h.sum()
    >>> float(f(jnp.zeros(3)))  # outside a run: the identity
    0.0
    """
    stack = _stack()
    if not stack:
        return value
    with jax.named_scope(name):
        return stack[-1](name, value)


#: the name under which :func:`scan_layers` marks one layer's slice of `xs` (for remat policies)
LAYER_SLICE = "jaxvene_layer_slice"


def scan_layers(body: Callable, init, xs, length: int | None = None, remat: bool = False):
    """`jax.lax.scan` over a stack of layers, with taps jaxvene can address per layer.

    Use it in place of `lax.scan` where a model runs its stacked layers. Taps inside `body`
    then name one site per layer: `IntervenableConfig([{"layer": 3, "component": "mlp"}])`
    acts on iteration 3 only. The layer index is data inside the scan (one traced body serves
    every layer): an intervention is applied as `where(index == layer, patched, value)`, and
    values read inside the scan come out as extra scan outputs, so nothing leaks. Outside a
    jaxvene run this is exactly `lax.scan` (of `jax.checkpoint(body)` with `remat`).

    Inside a run the scan is split where the handler says (`scan_cuts`): before the first
    intervened layer, so that the layers below it are a loop that does not depend on the
    interventions (forward only under `jax.grad`: no residuals); around each intervened
    layer, so that the others do not compute an intervention masked off by `where`; and
    after the last layer read, so that a source run's remaining layers are dead code. Each
    piece is its own trace of `body`, with only the placements of its layers, and indexes
    `xs` itself (no piece copies its slice of the stacked params); `ys` are concatenated back
    over all layers. Under `jax.grad` a layer's slice of `xs` is re-read in the backward pass
    rather than saved; with `remat` the whole layer is recomputed (`jax.checkpoint`), so a
    differentiated layer keeps only its input.
    """
    stack = _stack()
    if not stack:
        return jax.lax.scan(jax.checkpoint(body) if remat else body, init, xs, length=length)
    outer = stack[-1]
    n = length if length is not None else jax.tree_util.tree_leaves(xs)[0].shape[0]
    indexed = getattr(outer, "indexed", None)

    def one_layer(carry, index, span):
        x = jax.tree_util.tree_map(
            lambda a: checkpoint_name(jax.lax.dynamic_index_in_dim(a, index, 0, False), LAYER_SLICE), xs
        )
        reads: dict = {}

        def inner(name, value):
            if indexed is None:
                return outer(name, value)
            return indexed(name, value, index, reads, n, span)

        stack.append(inner)
        try:
            carry, y = body(carry, x)
        finally:
            stack.pop()
        return carry, (y, reads)

    policy = (
        jax.checkpoint_policies.nothing_saveable
        if remat
        else jax.checkpoint_policies.save_anything_except_these_names(LAYER_SLICE)
    )
    cuts = getattr(outer, "scan_cuts", None)
    bounds = [0, *(cuts(n) if cuts is not None else ()), n]
    finish = getattr(outer, "finish_scan", None)
    carry, pieces = init, []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        piece = jax.checkpoint(functools.partial(one_layer, span=(start, stop)), policy=policy)
        carry, (ys, reads) = jax.lax.scan(piece, carry, jnp.arange(start, stop))
        pieces.append(ys)
        if finish is not None:
            finish(reads, start, stop)
    if len(pieces) == 1:
        return carry, pieces[0]
    return carry, jax.tree_util.tree_map(lambda *ys: jnp.concatenate(ys, axis=0), *pieces)


@contextlib.contextmanager
def handling(
    handler: Handler,
    module_taps: Iterable[str] = (),
    overrides: Mapping[str, ModuleOverride] | None = None,
):
    """Route tap events to `handler` while the block runs.

    `module_taps` are the `"<path>.input"` / `"<path>.output"` / `"<path>.output.<k>"` names
    to report from Flax module calls (`None`: every call); `overrides` maps module paths to
    re-implementations of their `__call__`.
    """
    wanted = None if module_taps is None else frozenset(module_taps)
    overrides = dict(overrides or {})
    stack = _stack()
    stack.append(handler)
    try:
        if wanted is None or wanted or overrides:
            with nn.intercept_methods(_interceptor(handler, wanted, overrides)):
                yield
        else:
            yield
    finally:
        stack.pop()


def tap_base(path: str, method: str) -> str:
    """Tap names of a module call: `<path>` for `__call__`, `<path>:<method>` otherwise; the
    taps are that base plus `.input`, `.output` (the first element of a tuple) or `.output.<k>`."""
    base = path if method == "__call__" else f"{path}:{method}"
    return base.lstrip(":")


def _interceptor(outer: Handler, wanted: frozenset | None, overrides: Mapping[str, ModuleOverride]):
    """`wanted=None` reports every module call (used to list a model's sites). Events go to the
    innermost handler listening, so module calls inside :func:`scan_layers` are indexed."""

    def handler(name, value):
        stack = _stack()
        return (stack[-1] if stack else outer)(name, value)

    def intercept(next_fun, args, kwargs, context):
        method = context.method_name
        if method == "setup":
            return next_fun(*args, **kwargs)
        modules = _modules()
        modules.append(context.module)
        try:
            return _call(next_fun, args, kwargs, context, method)
        finally:
            modules.pop()

    def _call(next_fun, args, kwargs, context, method):
        if wanted is not None and method != "__call__" and not _any_method(wanted, method):
            return next_fun(*args, **kwargs)
        base = tap_base(join_path(context.module.path), method)
        prefix = base + "." if base else ""  # a module applied on its own has the path ()
        in_name, out_name = prefix + "input", prefix + "output"
        if wanted is None or in_name in wanted:
            if args or kwargs:
                args, kwargs = _replace_first_argument(args, kwargs, lambda v: handler(in_name, v))
        override = overrides.get(base) if method == "__call__" else None
        if override is None:
            out = next_fun(*args, **kwargs)
        else:
            out = override(context.module, args, kwargs, lambda suffix, v: handler(prefix + suffix, v))
        if wanted is None or out_name in wanted:
            out = _replace_output(out, 0, lambda v: handler(out_name, v))
        if isinstance(out, tuple) and not hasattr(out, "_fields"):
            for k in range(len(out)):
                name = f"{out_name}.{k}"
                if (wanted is None and hasattr(out[k], "shape")) or (wanted is not None and name in wanted):
                    out = _replace_output(out, k, lambda v, name=name: handler(name, v))
        return out

    return intercept


def _any_method(wanted: frozenset, method: str) -> bool:
    marker = f":{method}."
    return any(marker in w or w.startswith(f"{method}.") for w in wanted)


def _replace_first_argument(args, kwargs, fn):
    if args:
        return (fn(args[0]),) + tuple(args[1:]), kwargs
    first = next(iter(kwargs))
    return args, {**kwargs, first: fn(kwargs[first])}


def _replace_output(out, index: int, fn):
    """`out` with element `index` replaced (a bare value is its own element 0)."""
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        if out[index] is None:
            return out
        return out[:index] + (fn(out[index]),) + out[index + 1 :]
    if isinstance(out, Mapping):  # HF ModelOutput: its fields in order
        name = list(out)[index]
        cast(MutableMapping, out)[name] = fn(out[name])
        return out
    if index != 0:
        return out
    return fn(out)
