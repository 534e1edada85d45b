"""Sweeps: one intervention over a grid of sites, as one compiled program.

:func:`sweep` patches a component at every (layer, position), (layer, head) or
(layer, head, position) cell and returns a user metric per cell. It does no needless work:

* the clean base run is computed once and cached at every layer; the run for a cell at layer
  `l` starts from the cached input of layer `l` (or of the first layer of its window), so the
  layers below it are never recomputed;
* in a causal decoder a patch at position p leaves every position before p clean: cells are
  grouped by position (`suffix_groups`) and a group recomputes only the positions from its
  first one on, attending to the clean run's cached keys and values before it;
* the source run is computed once, and its activations at every layer are cached;
* the head (final norm and unembedding) runs only at `metric_positions`, and for all cells
  of all layers together at the end (one pass over the unembedding matrix, not one a chunk);
* the layer index is data: one program, compiled once, serves every layer; cells of a layer
  are `vmap`-ed in chunks of `chunk_size` (memory is bounded by the chunk), with a progress bar,
  and the chunks are dispatched without waiting for each other.

Cost: with `L` layers, `C` cells per layer, batch `B` and `T` tokens, the cells run
`B * T * C * sum_l (L - l) ~= B * T * C * L**2 / 2` layer-token evaluations (a naive loop runs
`B * T * C * L * L`, plus one source run per cell), plus `B * K * C * L` head evaluations for
`K` metric positions. Memory: `O(L * B * T * D)` for the caches plus one chunk of cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ..adapters._adapt import layer_stack
from ..adapters._stack import LayerStack
from ..core._locations import broadcast_subspaces, expand_subspaces
from ..core._write import read, write
from ..interventions._basic import Intervention, VanillaIntervention

__all__ = ["sweep", "SweepInputs"]


def _progress(total: int, desc: str, enabled: bool):
    from ._progress import progress_bar  # redraws at most every 0.5 s on a terminal, 10 s in a log

    return progress_bar(total, desc, enabled)


@dataclass
class SweepInputs:
    """Cached clean runs a sweep starts from: the base's hidden state entering every layer
    `(L + 1, B, T, D)`, the source's tap value at the site in every layer `(L, ...)`, and for
    causal suffixes the base's keys and values in every layer (`stack.scan_kv`'s), else None."""

    base: dict
    base_hidden: jax.Array
    source_values: jax.Array | None
    base_kv: object = None


def clean_runs(
    stack: LayerStack, params, base: dict, source: dict | None, site, base_embedding=None, kv: bool = False
) -> SweepInputs:
    """One pass over the base (cached per layer, with its keys and values if `kv`) and one over
    the source (the site per layer)."""
    hs, base_kv, values = _clean_runs(stack, site, kv, params, base, source, base_embedding)
    return SweepInputs(base, hs, values, base_kv)


@eqx.filter_jit
def _clean_runs(stack, site, kv, params, base, source, base_embedding):
    hs, base_kv = (
        stack.scan_kv(params, base, base_embedding) if kv else (stack.scan(params, base, base_embedding)[0], None)
    )
    values = None if source is None else stack.scan(params, source, site=site, record=True)[1]
    return hs, base_kv, values


def auto_suffix_groups(batch: int, length: int, n_positions: int) -> int:
    """How many causal-suffix groups a sweep splits its positions into by default.

    Each group is one more compiled program (its suffix length is a static shape) and splits
    the cells of a layer into smaller chunks; on a short sequence the layers' weights, not the
    tokens, dominate a chunk's cost. Measured on the 2-core CPU (`bench_sweep.py`, 2026-12-06):
    at 12 tokens one group is fastest; at 64 tokens 4 groups beat one warm (0.34 s vs 0.42 s)
    but their compiles cost more than that on a first call (3.65 s vs 2.3 s); from a few
    hundred tokens the suffixes save seconds. So: one group per 64 token rows, at most 4.
    """
    return int(max(1, min(4, n_positions, (batch * length) // 64)))


def _suffix_plan(cell_positions: np.ndarray, groups: int, length: int) -> list[tuple[int, np.ndarray]]:
    """Split cells into at most `groups` runs of contiguous positions with about equal
    recomputed work (cuts that fall together merge):
    `[(start, cell indices)]`, each group recomputing positions `start ..` (its first one)."""
    order = np.argsort(cell_positions, kind="stable")
    unique = np.unique(cell_positions)
    groups = max(1, min(groups, len(unique)))
    # cut the sorted distinct positions where the cumulative work (cells x suffix length) crosses
    # equal shares; each group starts at its smallest position
    work = np.array([np.sum(cell_positions == p) * (length - p) for p in unique], float)
    share = np.cumsum(work) / work.sum()
    bounds = sorted({int(np.searchsorted(share, k / groups, side="left")) for k in range(1, groups)})
    plan = []
    for piece in np.split(unique, [b + 1 for b in bounds if b + 1 < len(unique)]):
        if len(piece):
            cells = order[np.isin(cell_positions[order], piece)]
            plan.append((int(piece[0]), cells))
    return plan


def _cells(unit: str, positions: Sequence[int], heads: Sequence[int]) -> tuple[np.ndarray, tuple[int, ...]]:
    if unit == "pos":
        return np.asarray(positions, np.int32)[:, None], (len(positions),)
    if unit == "h":
        return np.asarray(heads, np.int32)[:, None], (len(heads),)
    grid = np.array([(h, p) for h in heads for p in positions], np.int32)
    return grid, (len(heads), len(positions))


def sweep(
    model,
    base: dict,
    source: dict | None = None,
    *,
    metric: Callable[[jax.Array], jax.Array],
    component: str = "block_output",
    unit: str | None = None,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    intervention: Intervention | None = None,
    window: int = 1,
    metric_positions: Sequence[int] = (-1,),
    chunk_size: int = 32,
    progress: bool = True,
    key: jax.Array | None = None,
    base_embedding: jax.Array | None = None,
    params=None,
    subspaces=None,
    suffix_groups: int | None = None,
) -> np.ndarray:
    """Run `intervention` at every cell of a grid of sites and return `metric` per cell.

    Args:
      model: a decoder whose family has a layer-stack spec (GPT-2, LLaMA, Mistral, Gemma,
        GPT-Neo, GPT-J, OPT, BLOOM, jaxvene's GPT-NeoX).
      base, source: model inputs (`{"input_ids": (B, T)}`, optional `attention_mask`); the
        source must have the base's shape. Source activations are read at the same position
        and head as the patched cell.
      metric: `logits (B, K, V) -> array`, evaluated on the logits at `metric_positions`.
      component: a pyvene component name; `unit` defaults to "pos" (or "h.pos" for head_*).
      layers, positions, heads: the grid (default: all).
      intervention: applied at each cell, default `VanillaIntervention()` (activation patching).
      window: patch layers `[l - window // 2, l - window // 2 + window)`, clipped to the model,
        for the row of layer `l` (ROME's windows; 1 = only layer `l`).
      chunk_size: cells per compiled call; bounds memory.
      key: PRNG key for stochastic interventions (folded with the cell index).
      base_embedding: replaces the base's embeddings (e.g. corrupted ones for causal tracing).
      params: the model's params (default: the model's own), e.g. sharded over a mesh
        (`jv.from_pretrained(..., mesh=, sharding=)`): they are used as they are, never
        gathered or replicated outside the compiled program.
      subspaces: the intervention's subspaces, as for one intervention of `IntervenableModel`:
        a list of indices for every example, or one such list per example.
      suffix_groups: causal decoders (`stack.causal`) with a position in the cell: a patch at
        position p cannot change positions before p, so a cell recomputes only positions from
        its group's first position on, attending to the clean run's cached keys and values
        before it. The positions are split into this many groups (each one compiled program);
        None picks :func:`auto_suffix_groups`, 0 recomputes every position.

    Inputs may be batch-sharded arrays (`jax.device_put` with a `NamedSharding`; on several
    processes the global arrays of `jax.make_array_from_process_local_data`): the cells run
    sharded and the metric's values come back replicated (read on every process).

    Each cell applies the intervention exactly as `IntervenableModel` does at that site
    (:func:`jaxvene.core.write`: the same view, gather, flatten, subspaces and scatter), so a
    cell equals the facade's call there.

    Returns:
      NumPy array of shape `(len(layers), len(positions))` for unit "pos",
      `(len(layers), len(heads))` for "h", `(len(layers), len(heads), len(positions))` for
      "h.pos", followed by the shape of `metric`'s output.
    """
    stack = layer_stack(model, "jaxvene.sweep")
    adapter = stack.adapter
    params = adapter.params if params is None else params
    site = stack.local_site(component)
    unit = unit or ("h.pos" if site.is_head_site else "pos")
    if site.is_head_site == (unit == "pos"):
        raise ValueError(f"unit {unit!r} does not fit component {component!r} (head components take 'h' or 'h.pos')")
    # equinox keeps Intervention's own __init__ (all arguments optional); mypy's dataclass
    # transform synthesises one from the fields instead
    iv = VanillaIntervention() if intervention is None else intervention  # type: ignore[call-arg]
    base_in = adapter.prepare(base)
    adapter.validate(base_in, "base")
    batch, length = base_in["input_ids"].shape
    source_in = None
    if not iv.is_source_constant:
        if source is None:
            raise ValueError(f"{type(iv).__name__} needs a source input")
        source_in = adapter.prepare(source)
        adapter.validate(source_in, "source")
        if source_in["input_ids"].shape != (batch, length):
            raise ValueError(
                f"sweep patches the source at the cell's own position: the source must have the base's "
                f"shape {(batch, length)}, got {tuple(source_in['input_ids'].shape)}"
            )
    L = stack.num_layers
    layers = list(range(L)) if layers is None else [int(l) for l in layers]
    positions = list(range(length)) if positions is None else [int(p) for p in positions]
    n_heads = site.heads or 0
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    _check_range(layers, L, "layer")
    _check_range(positions, length, "position")
    if unit != "pos":
        _check_range(heads, n_heads, "head")
    metric_pos = np.asarray([p % length for p in metric_positions], np.int32)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    subs = None
    if subspaces is not None:
        flat = isinstance(subspaces, (list, tuple)) and all(isinstance(i, (int, np.integer)) for i in subspaces)
        entry = [list(subspaces)] * batch if flat else broadcast_subspaces([subspaces], 1, batch)[0]
        sub_ids = expand_subspaces(entry, batch, iv.subspace_partition, iv.subspace_size, "sweep subspaces")
        subs = None if sub_ids is None else jnp.asarray(sub_ids)

    out_sharding = _replicated_like(base_in["input_ids"])
    cells, grid_shape = _cells(unit, positions, heads)
    # which cells recompute which positions: [(first recomputed position or None, cell indices)]
    causal = bool(getattr(stack, "causal", False)) and unit != "h"
    groups = auto_suffix_groups(batch, length, len(positions)) if suffix_groups is None else int(suffix_groups)
    if groups < 0:
        raise ValueError(f"suffix_groups must be 0 (off), a positive count or None (auto), got {suffix_groups}")
    plan: list[tuple[int | None, np.ndarray]] = [(None, np.arange(len(cells)))]
    if causal and groups > 0:  # a group starting at position 0 recomputes everything: no cache needed
        plan = [(start or None, members) for start, members in _suffix_plan(cells[:, -1], groups, length)]
    uses_kv = any(start is not None for start, _ in plan)
    cached = clean_runs(stack, params, base_in, source_in, site, base_embedding, kv=uses_kv)
    pieces = []  # (start, chunk of cell indices), every chunk `chunk` long (the last padded)
    for start, members in plan:
        chunk = max(1, min(chunk_size, len(members)))
        n = -(-len(members) // chunk)
        padded = np.concatenate([members, np.repeat(members[-1:], n * chunk - len(members))])
        pieces += [(start, padded[c * chunk : (c + 1) * chunk]) for c in range(n)]

    stacked = stack.layer_params(params)
    bar = _progress(len(layers) * len(pieces), f"sweep {component}", progress)
    finals, owners = [], []  # every chunk's final hidden states at the metric positions, and its cells
    for row, layer in enumerate(layers):
        for start, idx in pieces:
            if key is None:
                chunk_keys = None
            else:
                layer_key = jax.random.fold_in(key, layer)
                chunk_keys = jax.vmap(lambda j, k=layer_key: jax.random.fold_in(k, j))(jnp.asarray(idx))
            finals.append(
                _run_chunk(
                    stack,
                    site,
                    unit,
                    window,
                    iv,
                    start,
                    stacked,
                    base_in,
                    cached.base_hidden,
                    cached.base_kv,
                    cached.source_values,
                    jnp.int32(layer),
                    jnp.asarray(cells[idx]),
                    chunk_keys,
                    jnp.asarray(metric_pos),
                    subs,
                )
            )  # dispatched without waiting: the chunks queue on the device
            owners.append(row * len(cells) + idx)
            if bar is not None:
                bar.update(1)
    # the head (final norm, unembedding) and the metric for all cells of all layers at once, in
    # pieces of at most ~2**27 logits: one pass over the unembedding matrix, not one per chunk
    h = jnp.concatenate(finals)
    vocab_rows = batch * len(metric_pos) * max(1, int(getattr(stack.adapter, "vocab_size", 0) or 1))
    per_call = max(1, min(len(h), 2**27 // vocab_rows))
    values = np.concatenate(
        [
            np.asarray(_head_metric(stack, metric, params, h[i : i + per_call], out_sharding))
            for i in range(0, len(h), per_call)
        ]
    )
    out = np.empty((len(layers) * len(cells),) + values.shape[1:], values.dtype)
    out[np.concatenate(owners)] = values  # padded cells repeat a real one: same value
    if bar is not None:
        bar.close()
    return out.reshape((len(layers),) + grid_shape + values.shape[1:])


@eqx.filter_jit
def _head_metric(stack, metric, params, h, out_sharding=None):
    """`metric(head(h))` per cell of `h` `(cells, B, K, D)`. With `out_sharding` the (small)
    metric values are replicated inside the program, so every process can read them even
    when the batch is spread over several processes."""
    out = jax.vmap(lambda x: metric(stack.head(params, x)))(h)
    if out_sharding is None:
        return out
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, out_sharding), out)


@eqx.filter_jit
def _run_chunk(
    stack,
    site,
    unit,
    window,
    iv,
    start,
    stacked,
    base_in,
    hs,
    kv,
    source_values,
    layer,
    cells,
    keys,
    metric_positions,
    subspaces,
):
    """The final hidden states at the metric positions `(cells, B, K, D)` for a chunk of cells
    of one layer; compiled once per sweep configuration (non-array arguments are static,
    arrays, the layer index included, are traced).

    With a suffix `start` (static), every cell's position is `>= start`: only positions
    `start ..` are recomputed, on the clean keys and values `kv` before them (the patch is
    written at its position less `start`; the source is read at its own position)."""
    L = stack.num_layers
    batch = base_in["input_ids"].shape[0]

    def one_cell(cell, cell_key):
        lo = jnp.maximum(layer - window // 2, 0)
        hi = jnp.minimum(layer - window // 2 + window, L)
        shift = 0 if start is None else start
        if unit == "h.pos":
            loc = (jnp.full((batch, 1), cell[0]), jnp.full((batch, 1), cell[1]))
            local = (loc[0], loc[1] - shift)
        else:
            loc = jnp.full((batch, 1), cell[0])
            local = loc if unit == "h" else loc - shift

        def handler(i, name, value):
            if name != site.tap:
                return value
            src = None
            if source_values is not None:  # the source's tap value at layer i, read as the facade reads it
                src = read(site, unit, jax.lax.dynamic_index_in_dim(source_values, i, keepdims=False), loc)
            subkey = None if cell_key is None else jax.random.fold_in(cell_key, i)
            patched, _ = write(site, unit, iv, value, local, src, subspaces, subkey)
            return jnp.where((i >= lo) & (i < hi), patched, value)

        h = jax.lax.dynamic_index_in_dim(hs, lo, keepdims=False)
        if start is None:
            h = stack.run_layers(stacked, h, base_in, lo, handler=handler, taps={site.tap})
        else:  # positions before `start` keep their clean final state
            h = stack.run_suffix(stacked, h[:, start:], base_in, kv, start, lo, handler=handler, taps={site.tap})
            h = jnp.concatenate([hs[-1][:, :start], h], axis=1)
        return h[:, metric_positions]

    return jax.vmap(one_cell)(cells, keys)


def _replicated_like(x) -> NamedSharding | None:
    """A replicated sharding on the mesh `x` is sharded over, or None when `x` is not on a
    mesh of several devices (then nothing needs replicating)."""
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, NamedSharding) and sharding.mesh.size > 1:
        return NamedSharding(sharding.mesh, PartitionSpec())
    return None


def _check_range(values, limit, what):
    bad = [v for v in values if not 0 <= v < limit]
    if bad:
        raise IndexError(f"{what} {bad[0]} is out of range; valid {what}s are 0..{limit - 1}")
