"""Interventions on HF's PyTorch decoders written with forward hooks: the reference for the
families pyvene 0.1.8 does not register (Qwen3, Gemma 3, Phi-3, OLMo 2), checked against pyvene
on the ones it does (`test_interventions.py::test_hook_reference_equals_pyvene`).

A site is `(layer, component, unit, source_locations, base_locations)` as in pyvene: unit "pos"
takes `[[positions] per example]`, unit "h.pos" takes `([[heads] per example], [[positions] per
example])`. :func:`vanilla_patch` runs the source once without hooks that write, records each
site's value at its source locations, then runs the base with each value written at its base
locations (pyvene's VanillaIntervention, all sites in one group).

Where each component lives (pyvene's names, `model.model.layers[i]` = `L`):

=============================  ====================================================
block_input / block_output     L's input / output
attention_input / _output      L.self_attn's `hidden_states` input / output[0]
attention_value_output         L.self_attn.o_proj's input (per query head: head_attention_...)
query/key/value_output         L.self_attn.{q,k,v}_proj output, before rotary and q/k norms;
                               Phi-3: the three slices of L.self_attn.qkv_proj's output
mlp_input / mlp_output         L.mlp's input / output (before any post-feedforward norm)
mlp_activation                 L.mlp.act_fn's output, act(gate(x)) (Phi-3: mlp.activation_fn)
=============================  ====================================================

Attention probabilities (:func:`attention_probs`) are read and written where HF's eager
attention hands them to `torch.nn.functional.dropout(attn_weights, p=0.0)` right after the
softmax (transformers 4.57 and 5 alike): the module attribute is swapped for a wrapper while
the chosen layer's `self_attn` runs, and the wrapper maps the (B, heads, T_q, T_k) tensor. The
value returned is what multiplies the values, so replacing it is a patch of the probabilities.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

_ATTN_PROJ = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}


def _layer(model, i):
    return model.model.layers[i]


def _dims(model):
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_attention_heads, c.num_key_value_heads, head_dim


def locate(model, layer: int, component: str):
    """`(module, "input" | "output", slice or None, heads or None)` for a pyvene component."""
    h, kv, dh = _dims(model)
    block = _layer(model, layer)
    attn, mlp = block.self_attn, block.mlp
    fused = hasattr(attn, "qkv_proj")  # Phi-3
    name = component.removeprefix("head_")
    heads = None
    if component.startswith("head_"):
        heads = kv if name in ("key_output", "value_output") else h
    if name == "block_input":
        return block, "input", None, heads
    if name == "block_output":
        return block, "output", None, heads
    if name == "attention_input":
        return attn, "input", None, heads
    if name == "attention_output":
        return attn, "output", None, heads
    if name == "attention_value_output":
        return attn.o_proj, "input", None, heads
    if name == "mlp_input":
        return mlp, "input", None, heads
    if name == "mlp_output":
        return mlp, "output", None, heads
    if name == "mlp_activation":
        return (mlp.activation_fn if hasattr(mlp, "activation_fn") else mlp.act_fn), "output", None, heads
    kind = name.removesuffix("_output")
    if kind in _ATTN_PROJ:
        if fused:
            start = {"query": 0, "key": h * dh, "value": (h + kv) * dh}[kind]
            width = (h if kind == "query" else kv) * dh
            return attn.qkv_proj, "output", slice(start, start + width), heads
        return getattr(attn, _ATTN_PROJ[kind]), "output", None, heads
    raise KeyError(component)


def _get(args, kwargs, output, where):
    if where == "output":
        return output[0] if isinstance(output, tuple) else output
    if args:
        return args[0]
    return kwargs["hidden_states"]


def _put(args, kwargs, output, where, value):
    if where == "output":
        return (value, *output[1:]) if isinstance(output, tuple) else value
    if args:
        return (value, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": value}


def _index(unit, locs, b):
    """(positions, heads or None) of example b."""
    if unit == "pos":
        return list(locs[b]), None
    heads, positions = locs
    return list(positions[b]), list(heads[b])


def _view(x, sl, heads):
    """The component's (B, T, D) value, or (B, T, heads, dh): a view of x that writes through."""
    v = x if sl is None else x[..., sl]
    return v if heads is None else v.unflatten(-1, (heads, -1))


def _read(x, sl, heads, unit, locs):
    v = _view(x, sl, heads)
    out = []
    for b in range(v.shape[0]):
        pos, hs = _index(unit, locs, b)
        out.append(v[b, pos].clone() if hs is None else v[b, pos][:, hs].clone())
    return out


def _write(x, sl, heads, unit, locs, values):
    x = x.clone()
    v = _view(x, sl, heads)
    for b in range(v.shape[0]):
        pos, hs = _index(unit, locs, b)
        if hs is None:
            v[b, pos] = values[b]
        else:
            for j, p in enumerate(pos):
                v[b, p, hs] = values[b][j]
    return x


@contextlib.contextmanager
def _hooks(model, sites, fn):
    """`fn(site_index, tensor) -> tensor or None` on each site's value, input or output."""
    handles = []
    try:
        for k, (layer, component, *_rest) in enumerate(sites):
            module, where, sl, heads = locate(model, layer, component)
            if where == "input":

                def pre(mod, args, kwargs, k=k):
                    new = fn(k, _get(args, kwargs, None, "input"))
                    return None if new is None else _put(args, kwargs, None, "input", new)

                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            else:

                def post(mod, args, output, k=k):
                    new = fn(k, _get(args, None, output, "output"))
                    return None if new is None else _put(args, None, output, "output", new)

                handles.append(module.register_forward_hook(post))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _params(model, site):
    layer, component, unit, *_ = site
    _, _, sl, heads = locate(model, layer, component)
    return sl, heads, unit


def vanilla_patch(model, base_ids, source_ids, sites) -> np.ndarray:
    """Logits of the base run with every site's value taken from the source run."""
    recorded: dict[int, list] = {}

    def record(k, x):
        sl, heads, unit = _params(model, sites[k])
        recorded[k] = _read(x, sl, heads, unit, sites[k][3])

    def write(k, x):
        sl, heads, unit = _params(model, sites[k])
        return _write(x, sl, heads, unit, sites[k][4], recorded[k])

    with torch.no_grad():
        with _hooks(model, sites, lambda k, x: record(k, x)):
            model(torch.tensor(source_ids, dtype=torch.long))
        with _hooks(model, sites, write):
            out = model(torch.tensor(base_ids, dtype=torch.long)).logits
    return out.numpy()


@contextlib.contextmanager
def attention_probs(model, layer: int, fn):
    """While inside, `fn(probs (B, heads, T_q, T_k)) -> probs` maps layer `layer`'s attention
    probabilities (see the module docstring for where)."""
    attn = _layer(model, layer).self_attn
    active = [False]
    original = torch.nn.functional.dropout

    def dropout(x, *args, **kwargs):
        y = original(x, *args, **kwargs)
        if active[0] and y.ndim == 4:
            y = fn(y)
        return y

    def enter(*_args, **_kwargs):
        active[0] = True

    def leave(*_args, **_kwargs):
        active[0] = False

    handles = [attn.register_forward_pre_hook(enter, with_kwargs=True), attn.register_forward_hook(leave)]
    torch.nn.functional.dropout = dropout
    try:
        yield
    finally:
        torch.nn.functional.dropout = original
        for handle in handles:
            handle.remove()


def read_attention_probs(model, ids, layer: int) -> np.ndarray:
    """Layer `layer`'s attention probabilities (B, heads, T, T) as the dropout call sees them."""
    seen = []

    def keep(p):
        seen.append(p.clone())
        return p

    with torch.no_grad(), attention_probs(model, layer, keep):
        model(torch.tensor(ids, dtype=torch.long))
    assert len(seen) == 1, len(seen)
    return seen[0].numpy()


def patch_attention_probs(model, base_ids, source_ids, layer: int, heads, positions, source_positions):
    """Logits of the base run with, per example b, rows (heads[b][i], positions[b][j]) of layer
    `layer`'s probabilities replaced by the source's rows (heads[b][i], source_positions[b][j])."""
    src = torch.tensor(read_attention_probs(model, source_ids, layer))

    def replace(p):
        p = p.clone()
        for b in range(p.shape[0]):
            for h in heads[b]:
                for pb, ps in zip(positions[b], source_positions[b]):
                    p[b, h, pb] = src[b, h, ps]
        return p

    with torch.no_grad(), attention_probs(model, layer, replace):
        out = model(torch.tensor(base_ids, dtype=torch.long)).logits
    return out.numpy()
