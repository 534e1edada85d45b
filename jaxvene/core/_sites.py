"""Sites: where an activation lives in a model, and the view an intervention takes of it.

A *tap* is a named value that the model exposes while it runs: a Flax module's input or
output (`"transformer.h.3.mlp.output"`, `"model.layers.0.self_attn.o_proj.input"`) or a value
marked with :func:`jaxvene.tap` in plain JAX code. A :class:`Site` is a tap plus a view:

* `part=(i, n)` takes the i-th of n equal slices of the last axis (GPT-2's fused q/k/v);
* `heads=H` splits the last axis into H heads and moves heads before positions, so the view
  of a `(B, S, H * Dh)` value is `(B, H, S, Dh)` (pyvene's layout for head units).

Views are pure reshapes and slices, so writing a changed view back is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Array

__all__ = ["Site"]


@dataclass(frozen=True)
class Site:
    """One intervenable activation: `tap` names the value, `part` and `heads` the view.

    `component` and `layer` only make messages readable.
    """

    tap: str
    part: tuple[int, int] | None = None
    heads: int | None = None
    component: str = ""
    layer: int | None = None
    #: the tap is inside `jaxvene.scan_layers`: act only on iteration `layer`
    indexed: bool = False

    @property
    def is_head_site(self) -> bool:
        return self.heads is not None

    def describe(self) -> str:
        if self.layer is not None and self.component:
            return f"{self.component} at layer {self.layer}"
        return self.component or self.tap

    def view_shape(self, tap_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the view of a tap value of shape `tap_shape` (`(B, S, F)`)."""
        *lead, width = tap_shape
        if len(lead) == 1 and self.heads is None:
            lead = [lead[0], 1]  # a (batch, width) value is one position
        if self.part is not None:
            width //= self.part[1]
        if self.heads is None:
            return (*lead, width)
        if len(lead) != 2:
            raise ValueError(f"{self.describe()}: head views need a (batch, seq, width) value, got {tap_shape}")
        return (lead[0], self.heads, lead[1], width // self.heads)

    def check_tap_shape(self, tap_shape: tuple[int, ...]) -> None:
        width = tap_shape[-1]
        if self.part is not None and width % self.part[1]:
            raise ValueError(f"{self.describe()}: width {width} does not split into {self.part[1]} parts")
        if self.heads is not None:
            part_width = width // (self.part[1] if self.part else 1)
            if part_width % self.heads:
                raise ValueError(f"{self.describe()}: width {part_width} does not split into {self.heads} heads")

    def view(self, value: Array) -> Array:
        if value.ndim == 2 and self.heads is None:
            value = value[:, None, :]
        if self.part is not None:
            index, count = self.part
            width = value.shape[-1] // count
            value = value[..., index * width : (index + 1) * width]
        if self.heads is not None:
            b, s, d = value.shape
            value = value.reshape(b, s, self.heads, d // self.heads).transpose(0, 2, 1, 3)
        return value

    def unview(self, value: Array, view: Array) -> Array:
        """The tap value with its view replaced by `view`."""
        if self.heads is not None:
            b, h, s, dh = view.shape
            view = view.transpose(0, 2, 1, 3).reshape(b, s, h * dh)
        if value.ndim == 2 and view.ndim == 3:
            view = view[:, 0, :]
        if self.part is None:
            return view.astype(value.dtype)
        index, count = self.part
        width = value.shape[-1] // count
        return value.at[..., index * width : (index + 1) * width].set(view.astype(value.dtype))


def join_path(path: tuple[str, ...]) -> str:
    return ".".join(str(p) for p in path)


def normalise_path(text: str) -> str:
    """pyvene writes module paths as `h[0].mlp`; taps use dots only: `h.0.mlp`."""
    return text.replace("[", ".").replace("]", "").replace("..", ".").strip(".")
