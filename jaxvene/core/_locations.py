"""pyvene's `unit_locations`, `subspaces` and `sources` arguments, turned into checked arrays.

Everything here runs on concrete Python/NumPy values before tracing: inside `jit` JAX clamps
out-of-range gathers and drops out-of-range scatters, so a bad position would silently give a
wrong answer. Each check names the value, the limit and what to do.

`unit_locations` forms (pyvene's, with `n` interventions and `B` examples):

* canonical: `{"sources->base": (SRC, BASE)}`; SRC and BASE have one entry per intervention:
  `None` (the whole activation), `B x U` nested lists of positions (unit "pos") or heads
  ("h"), or `[B x Uh heads, B x Up positions]` (unit "h.pos");
* `{"base": BASE}`: base locations only, for interventions that need no source run;
* shortcuts: an int `p` (position p everywhere), a tuple `(a, b)` (source position a into base
  position b), `(None, b)` / `(a, None)`, a flat list of positions (all of them, everywhere).

Wherever a nested list of ints is accepted, an integer NumPy or JAX array of the same nesting is
accepted too (it is read as that list; tuples stay pairs). Locations and subspaces must be
integers: a float (`2.0` as much as `2.5`) or a bool is refused, never truncated.

Deliberate difference from pyvene: a bare *list* of exactly two ints is rejected. pyvene reads
`[3, 5]` as "source 3 -> base 5" but `[1, 2, 3]` as "positions 1, 2, 3", a trap its own
tutorials fell into; write `(3, 5)` or `[[[3, 5]] * B]` to say which one you mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import jax
import numpy as np

__all__ = ["broadcast_unit_locations", "locations_to_arrays", "broadcast_subspaces", "broadcast_sources"]


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _depth(x) -> int:
    """Nesting depth, the deepest entry's (pyvene's `get_list_depth`): `[None, [[1]]]` is 3."""
    if isinstance(x, np.ndarray):
        return x.ndim
    if isinstance(x, (list, tuple)):
        return 1 + max((_depth(v) for v in x), default=0)
    return 0


def as_lists(value, what: str):
    """`value` with integer NumPy/JAX arrays turned into nested lists of Python ints (0-d arrays
    into ints; tuples stay tuples, so pairs keep their meaning). Floats and bools are refused
    with an error that says so; anything else is left for the shape checks."""
    if value is None or _is_int(value):
        return value
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{what} must be concrete integers, not traced values: they are checked before tracing "
            "(pass them as NumPy arrays or lists, or call jaxvene.core.run for traced locations)"
        )
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be integers (positions, heads or subspace ids), got the bool {value!r}")
    if isinstance(value, (float, np.floating)):
        raise TypeError(
            f"{what} must be integers (positions, heads or subspace ids), got the float {value!r}; "
            "a float is never rounded or truncated here, pass an int"
        )
    if isinstance(value, (np.ndarray, jax.Array)):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.integer):
            kind = "bool" if arr.dtype == bool else str(arr.dtype)
            raise TypeError(f"{what} must be integers (positions, heads or subspace ids), got an array of dtype {kind}")
        return arr.tolist()
    if isinstance(value, tuple):
        return tuple(as_lists(v, what) for v in value)
    if isinstance(value, list):
        return [as_lists(v, what) for v in value]
    return value


def _shortcut(value, n: int, batch: int, base_only: bool):
    """pyvene's broadcasting shortcuts; returns `(SRC, BASE)` lists or None if `value` is canonical."""

    def fill(p):
        return [[[p]] * batch] * n

    if _is_int(value):
        return (None if base_only else fill(value)), fill(value)
    if isinstance(value, tuple) and len(value) == 2 and all(v is None or _is_int(v) for v in value):
        if base_only and value[0] is not None:
            raise ValueError(
                f"unit_locations {{'base': {value!r}}}: a (source, base) pair needs the "
                "'sources->base' key; for base positions only write {'base': position}."
            )
        a, b = value
        return (None if a is None else fill(a)), (None if b is None else fill(b))
    if isinstance(value, list) and value and _depth(value) == 1 and all(_is_int(v) for v in value):
        if len(value) == 2:
            raise ValueError(
                f"unit_locations {list(value)!r} is ambiguous: pyvene reads a list of two ints as "
                f"(source position {value[0]} -> base position {value[1]}) but longer lists as "
                f"positions. Write the tuple ({value[0]}, {value[1]}) for source -> base, or "
                f"[[[{value[0]}, {value[1]}]] * batch_size] for both positions."
            )
        positions = [int(v) for v in value]
        per = [[positions] * batch] * n
        return (None if base_only else per), per
    return None


def broadcast_unit_locations(unit_locations, n: int, batch: int, keys: Sequence[str]) -> dict:
    """Expand pyvene's shortcuts: `{key: (SRC, BASE)}` for each key in `keys`.

    `keys` are the keys this mode accepts ("sources->base" in parallel mode; in serial mode
    "source_0->source_1", ..., "source_{G-1}->base"). In parallel mode "base" is accepted too.
    """
    if unit_locations is None:
        return {k: ([None] * n, [None] * n) for k in keys}
    if not isinstance(unit_locations, dict):
        raise TypeError(
            f"unit_locations must be a dict like {{'sources->base': (source_locs, base_locs)}}, "
            f"got {type(unit_locations).__name__}"
        )
    accepted = list(keys) + (["base"] if keys == ["sources->base"] else [])
    out = {}
    for key, value in unit_locations.items():
        if key not in accepted:
            raise ValueError(f"unknown unit_locations key {key!r}; this model accepts {', '.join(map(repr, accepted))}")
        value = as_lists(value, f"unit_locations[{key!r}]")
        base_only = key == "base"
        target = "sources->base" if base_only else key
        if target in out:
            raise ValueError("give unit_locations under 'sources->base' or 'base', not both")
        pair = _shortcut(value, n, batch, base_only)
        if pair is None:
            if base_only:
                pair = (None, value)
            elif isinstance(value, (tuple, list)) and len(value) == 2:
                pair = (value[0], value[1])
            else:
                raise ValueError(
                    f"unit_locations[{key!r}] must be (source_locations, base_locations), one list "
                    f"entry per intervention; got {value!r}"
                )
        out[target] = pair
    for k in keys:
        out.setdefault(k, ([None] * n, [None] * n))
    return out


def _entry(side, index: int, count: int, what: str):
    if side is None:
        return None
    if not isinstance(side, (list, tuple)):
        raise ValueError(
            f"{what} locations must be a list (or an integer array) with one entry per intervention, "
            f"got {type(side).__name__}"
        )
    if len(side) != count:
        raise ValueError(
            f"{what} locations have {len(side)} entries but there are {count} interventions here; "
            "give one entry (or None) per intervention, in config order."
        )
    return side[index]


def _int_matrix(value, batch: int, limit: int, what: str, axis_name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError:
        arr = None
    if arr is None or arr.dtype == object:
        raise ValueError(f"{what}: every example must list the same number of {axis_name}s; got {value!r}")
    if arr.dtype.kind in "fcb":
        raise TypeError(f"{what}: {axis_name}s must be integers, got {value!r} (dtype {arr.dtype})")
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: expected a (batch x units) nested list of ints, one row per example, got {value!r}")
    if arr.shape[0] != batch:
        raise ValueError(f"{what}: {arr.shape[0]} rows of {axis_name}s for a batch of {batch} examples")
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        bad = int(arr.max()) if arr.max() >= limit else int(arr.min())
        raise IndexError(f"{what}: {axis_name} {bad} is out of range; valid {axis_name}s are 0..{limit - 1}")
    return arr.astype(np.int32)


def locations_to_arrays(value, unit: str, batch: int, seq_len: int, heads: int | None, what: str):
    """One placement's locations as int arrays, checked against the batch, length and heads."""
    if value is None:
        return None
    if unit == "pos":
        return _int_matrix(value, batch, seq_len, what, "position")
    # units "h" and "h.pos" live on head sites, which always have a head count
    if unit == "h":
        return _int_matrix(value, batch, cast(int, heads), what, "head")
    if unit == "h.pos":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(
                f"{what}: unit 'h.pos' takes [heads, positions], each a (batch x units) nested list; got {value!r}"
            )
        return (
            _int_matrix(value[0], batch, cast(int, heads), what, "head"),
            _int_matrix(value[1], batch, seq_len, what, "position"),
        )
    raise ValueError(f"unknown unit {unit!r}")


def placement_locations(pair, index: int, count: int, unit: str, shapes, heads, what: str):
    """`(source, base)` arrays for the `index`-th of `count` placements under one key.

    `shapes` is `((source_batch, source_len), (base_batch, base_len))`.
    """
    src, base = pair
    (sb, sl), (bb, bl) = shapes
    return (
        locations_to_arrays(_entry(src, index, count, what + " source"), unit, sb, sl, heads, f"{what} source"),
        locations_to_arrays(_entry(base, index, count, what + " base"), unit, bb, bl, heads, f"{what} base"),
    )


def broadcast_subspaces(subspaces, n: int, batch: int) -> list:
    """pyvene's subspace shortcuts: an int or flat list of ints applies to every example and
    intervention; otherwise one entry (or None) per intervention, e.g. `[None, [[1]] * batch]`."""
    subspaces = as_lists(subspaces, "subspaces")
    if subspaces is None:
        return [None] * n
    if _is_int(subspaces):
        return [[[int(subspaces)]] * batch] * n
    if isinstance(subspaces, (list, tuple)) and subspaces and all(_is_int(s) for s in subspaces):
        return [[list(subspaces)] * batch] * n
    if not isinstance(subspaces, (list, tuple)) or len(subspaces) != n:
        raise ValueError(
            f"subspaces must be an int, a flat list, or one entry per intervention ({n}); got {subspaces!r}"
        )
    return list(subspaces)


def expand_subspaces(entry, batch: int, partition, size: int | None, what: str) -> np.ndarray | None:
    """Per-example subspace ids -> `(B, K)` int indices (through the partition), `-1` padded."""
    entry = as_lists(entry, what)
    if entry is None:
        return None
    if not isinstance(entry, (list, tuple)) or len(entry) != batch:
        raise ValueError(f"{what}: subspaces need one list per example ({batch}); got {entry!r}")
    rows = []
    for row in entry:
        ids = [row] if _is_int(row) else list(np.asarray(row, dtype=object).reshape(-1).tolist())
        indices = []
        for s in ids:
            if not _is_int(s):
                raise TypeError(f"{what}: subspace ids must be integers, got {s!r}")
            if partition is not None:
                if not 0 <= s < len(partition):
                    raise IndexError(
                        f"{what}: subspace {s} is out of range; the subspace_partition has "
                        f"{len(partition)} subspaces (0..{len(partition) - 1})"
                    )
                indices.extend(partition[s])
            else:
                indices.append(int(s))
        if size is not None and any(not 0 <= i < size for i in indices):
            bad = next(i for i in indices if not 0 <= i < size)
            raise IndexError(f"{what}: subspace index {bad} is out of range for a representation of width {size}")
        rows.append(indices)
    width = max((len(r) for r in rows), default=0)
    out = np.full((batch, max(width, 1)), -1, np.int32)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


def broadcast_sources(sources, groups: int) -> list:
    """One source input (or None) per group; a single source feeds every group."""
    if groups == 0:
        return []
    if sources is None:
        return [None] * groups
    if isinstance(sources, dict):
        return [sources] * groups
    sources = list(sources)
    if len(sources) == 1 and groups > 1:
        return sources * groups
    if len(sources) != groups:
        raise ValueError(
            f"{len(sources)} sources were given for {groups} source groups; pass one source per "
            "group (each representation is its own group unless they share a group_key), or one "
            "source for all."
        )
    return sources
