"""What a layer is, and the registry that built-in and user layers share.

A layer is a torch.autograd.Function beside its plain-torch reference: RMSNorm, SwiGLU, a
rotary embedding. Unlike a problem it has no loss: it is judged by its vector-Jacobian product
under a seeded random grad_output, every floating input differentiated (the inputs as much as
the weights), and by the value its forward returns. One small class: its sizes, `make` (the
named inputs), `function` (the code under test) and `reference` (the truth, in plain torch).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..problems.base import PROBLEMS, check_sizes, sized_subclass_check
from ..registry import Registry

Tensors = dict[str, torch.Tensor]
Outputs = torch.Tensor | tuple[torch.Tensor, ...]


class Layer:
    """One layer at fixed sizes.

    Subclasses set `name` and `sizes` (which of n, d, h, c they take) and write `make`,
    `function` and `reference`. `rows` are the inputs whose leading dimension is rows, which may
    be folded as (B, T, ...) against (B*T, ...); the outputs are taken to have rows too whenever
    an input does.
    """

    name: ClassVar[str]
    sizes: ClassVar[tuple[str, ...]] = ("n", "d")
    rows: ClassVar[tuple[str, ...]] = ("x",)
    # what the Function runs in and on: a Triton kernel has no float64, and runs on CUDA only.
    # None: every dtype. The method `function` skips the others with the reason, and a Function
    # without float64 has its float64 twin skipped.
    function_dtypes: ClassVar[tuple[str, ...] | None] = None
    function_devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    # per input (and "y" for the outputs), the size whose sum its gradient (its value) takes,
    # when it is not the longest of the sizes: RMSNorm's dx and y sum over d, its dg over n
    reductions: ClassVar[dict[str, str]] = {}

    def __init__(
        self, n: int | None = None, d: int | None = None, h: int | None = None, c: int | None = None
    ):
        check_sizes(f"layer {self.name!r}", self.sizes, {"n": n, "d": d, "h": h, "c": c})
        self.n, self.d, self.h, self.c = n, d, h, c

    # -- to write in a subclass --------------------------------------------------------------
    def make(self, gen: torch.Generator) -> Tensors:
        """The named inputs, float32, drawn from `gen` on its device (`device=gen.device`)."""
        raise NotImplementedError

    def function(self, **inputs: torch.Tensor) -> Outputs:
        """The code under test: a torch.autograd.Function's apply, on the inputs in the cell's
        dtype; a tensor or a tuple of tensors."""
        raise NotImplementedError

    def reference(self, **inputs: torch.Tensor) -> Outputs:
        """The same in plain torch: autograd of it in float64 is the truth."""
        raise NotImplementedError

    def min_bytes(self, itemsize: int) -> int | None:
        """Bytes a forward and backward must move at least (the bandwidth floor); None: unknown."""
        return None

    def flops(self) -> float | None:
        """Floating-point operations of a forward and backward; None: unknown."""
        return None

    # -- derived ---------------------------------------------------------------------------
    def size(self, name: str) -> int | None:
        return getattr(self, name)

    def reduction_length(self, name: str | None = None) -> int:
        """The longest sum in the gradient of input `name` (or in the outputs, "y"): the size
        `reductions` names for it, else the longest of the sizes. What rounding error grows with."""
        size = self.reductions.get(name) if name is not None else None
        if size is not None:
            return getattr(self, size) or 1
        return max((getattr(self, s) or 1 for s in self.sizes), default=1)

    @classmethod
    def declared(cls) -> dict:
        """What reports need to know of it, as plain data (kept in a run's manifest)."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "doc": doc[0] if doc else cls.name,
            "kind": "layer",
            "sizes": list(cls.sizes),
            "rows": list(cls.rows),
            "function_dtypes": list(cls.function_dtypes) if cls.function_dtypes is not None else None,
            "function_devices": list(cls.function_devices),
        }


LAYERS: Registry[type[Layer]] = Registry("layer")
LAYERS.share_names(PROBLEMS)  # a config names a problem or a layer by its name alone


# `@register_layer` or `@register_layer(replace=True)`: make a Layer runnable by its `name`
register_layer = LAYERS.decorator(sized_subclass_check(Layer))


def get_layer(name: str) -> type[Layer]:
    return LAYERS.get(name)


def layer_names() -> list[str]:
    return LAYERS.names()


def is_layer(name: str) -> bool:
    return name in LAYERS
