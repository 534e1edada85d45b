"""Reading a HF checkpoint folder tensor by tensor, slice by slice, straight onto devices.

:class:`Checkpoint` opens `config.json` and the safetensors files of a folder (one
`model.safetensors`, or the shards a `model.safetensors.index.json` lists), checks every
file's header against its size before anything is read (a truncated download is named, not
half-loaded), and reads any slice of any tensor without reading the rest of the file
(safetensors maps the file). :func:`place` builds one device array from a function that reads
the host slice each device needs, so a sharded parameter never exists whole on the host.
No code from the folder is ever run: safetensors holds only tensors, and `.bin` (pickle)
checkpoints are refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import numpy as np

__all__ = ["Checkpoint", "place", "resolve"]

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


def _hub_cache() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def resolve(path: str | os.PathLike, revision: str = "main") -> str:
    """A checkpoint folder: `path` itself, or for a hub name like `"meta-llama/Llama-3.2-1B"`
    that is not a folder, its snapshot in the local HF cache (`HF_HUB_CACHE`, else
    `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), at `revision` (a branch in `refs/` or a
    commit hash). Nothing is downloaded."""
    path = os.fspath(path)
    if os.path.isdir(path) or path.count("/") != 1 or path.startswith((".", "/")):
        return path
    repo = os.path.join(_hub_cache(), "models--" + path.replace("/", "--"))
    ref = os.path.join(repo, "refs", revision)
    commit = revision
    if os.path.isfile(ref):
        with open(ref) as f:
            commit = f.read().strip()
    snapshot = os.path.join(repo, "snapshots", commit)
    if not os.path.isdir(snapshot):
        raise FileNotFoundError(
            f"{path} is neither a folder nor in the local HF cache ({repo} has no snapshot for {revision!r}); "
            "jaxvene does not download: fetch it first (e.g. `huggingface-cli download " + path + "`)"
        )
    return snapshot


class Checkpoint:
    """The tensors of a HF checkpoint folder, by name (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, revision: str = "main"):
        folder = resolve(folder, revision)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} is not a directory (from_pretrained reads a local checkpoint folder)")
        self.folder = folder
        config_path = os.path.join(folder, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"no config.json in {folder}")
        try:
            with open(config_path) as f:
                self.config = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read {config_path}: {err}") from err
        if not isinstance(self.config, dict):
            raise ValueError(f"{config_path} does not hold a JSON object")
        self.files = self._files()
        self.where: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        for path in self.files:
            for name, (dtype, shape) in _header(path).items():
                self.where[name], self.shapes[name], self.dtypes[name] = path, shape, dtype
        self._open: dict[str, object] = {}

    def _files(self) -> list[str]:
        index = os.path.join(self.folder, _INDEX)
        if os.path.isfile(index):
            try:
                with open(index) as f:
                    weight_map = json.load(f)["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise ValueError(f"cannot read the shard index {index}: {err}") from err
            files = sorted({os.path.join(self.folder, name) for name in weight_map.values()})
            missing = [p for p in files if not os.path.isfile(p)]
            if missing:
                raise FileNotFoundError(f"{index} lists {os.path.basename(missing[0])}, which is not in {self.folder}")
            return files
        single = os.path.join(self.folder, _SINGLE)
        if os.path.isfile(single):
            return [single]
        found = sorted(os.path.join(self.folder, n) for n in os.listdir(self.folder) if n.endswith(".safetensors"))
        if found:
            return found
        if any(n.endswith((".bin", ".pt", ".pth")) for n in os.listdir(self.folder)):
            raise ValueError(
                f"{self.folder} holds only PyTorch pickle weights (.bin); jaxvene reads safetensors and never "
                "unpickles. Convert once with transformers: model.save_pretrained(folder, safe_serialization=True)"
            )
        raise FileNotFoundError(f"no safetensors weights in {self.folder}")

    def has(self, name: str) -> bool:
        return name in self.where

    def find(self, suffix: str) -> str | None:
        """The one tensor name ending in `suffix`, preferring the shortest (e.g. the language
        model's `embed_tokens` in a multimodal checkpoint)."""
        hits = sorted((n for n in self.where if n == suffix or n.endswith("." + suffix)), key=len)
        return hits[0] if hits else None

    def read(self, name: str, index: tuple = ()) -> np.ndarray:
        """`tensor[index]` as a host array (bfloat16 as `ml_dtypes.bfloat16`)."""
        from safetensors import safe_open

        path = self.where[name]
        if path not in self._open:
            self._open[path] = safe_open(path, framework="flax")
        with jax.default_device(jax.devices("cpu")[0]):
            return np.asarray(self._open[path].get_slice(name)[index])  # type: ignore[attr-defined]


def _header(path: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from a safetensors header, checked against the file's size."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n <= size - 8:
                raise ValueError("the header length is past the end of the file")
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        entries = {
            k: (str(v["dtype"]), tuple(int(d) for d in v["shape"])) for k, v in header.items() if k != "__metadata__"
        }
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a valid safetensors file: {err}") from err
    if 8 + n + end > size:
        raise ValueError(
            f"{path} is truncated: its header describes {8 + n + end} bytes but the file has {size} "
            "(an interrupted download or copy?)"
        )
    return entries


def place(shape: tuple[int, ...], dtype, sharding, read: Callable[[tuple], np.ndarray]) -> jax.Array:
    """A device array of `shape` with `sharding`, each device's shard read by
    `read(index) -> host array` (`index`: a tuple of slices of the full array)."""
    shape = tuple(int(s) for s in shape)

    def shard(index):
        full = tuple(slice(*s.indices(n)) for s, n in zip(index, shape)) if index else tuple(slice(0, n) for n in shape)
        return np.asarray(read(full)).astype(dtype)

    return jax.make_array_from_callback(shape, sharding, shard)
