"""What a problem is, and the registry that built-in and user problems share.

A problem is one small class: seeded data and initial parameters, the loss, and right beside it
the hand-written gradient with its formula. The harness never looks inside: every method gets
its gradient from `loss` (autograd, func, compiled) or from `manual_grad` / `numpy_grad`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

Tensors = dict[str, torch.Tensor]
Arrays = dict[str, np.ndarray]

SIZE_NAMES = ("n", "d", "h")


class Problem:
    """One regression problem at fixed sizes.

    Subclasses set `name`, `sizes` (which of n, d, h they take) and `batched` (the data keys whose
    first dimension is the sample axis, split by micro-batch patterns; empty when the loss is
    not a mean over samples), and write `make`, `loss` and `manual_grad`.
    """

    name: ClassVar[str]
    sizes: ClassVar[tuple[str, ...]] = ("n",)
    batched: ClassVar[tuple[str, ...]] = ()
    # Data sets that exist besides "random": "post" is the seed post's exact numbers.
    datasets: ClassVar[tuple[str, ...]] = ("random",)
    # Parameters grouped by layer, input side first, where the gradient of one layer is
    # backpropagated through the next (an MLP's W1, b1 before W2, b2): a diagnosis then says
    # where an error enters. Empty: the parameters are siblings (w and b).
    layers: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(
        self, n: int | None = None, d: int | None = None, h: int | None = None, data: str = "random"
    ):
        given = {"n": n, "d": d, "h": h}
        for size in SIZE_NAMES:
            value = given[size]
            if size in self.sizes:
                if value is None or value < 1:
                    raise ValueError(f"problem {self.name!r} needs {size} >= 1, got {value}")
            elif value is not None:
                raise ValueError(f"problem {self.name!r} takes sizes {self.sizes}, not {size}")
        if data not in self.datasets:
            raise ValueError(f"problem {self.name!r} has data sets {self.datasets}, not {data!r}")
        self.n, self.d, self.h, self.data = n, d, h, data

    # -- to write in a subclass --------------------------------------------------------------
    def make(self, gen: torch.Generator) -> tuple[Tensors, Tensors]:
        """(params, data) as float32 CPU tensors, drawn from `gen` (seeded by the harness)."""
        raise NotImplementedError

    def output(self, params: Tensors, data: Tensors) -> torch.Tensor:
        """The model's output before the loss (predictions); the record previews it."""
        raise NotImplementedError

    def loss(self, params: Tensors, data: Tensors) -> torch.Tensor:
        """A 0-d tensor; a mean over the samples when `batched` is not empty."""
        raise NotImplementedError

    def manual_grad(self, params: Tensors, data: Tensors) -> Tensors:
        """d loss / d params written by hand with torch operations, no autograd."""
        raise NotImplementedError

    def numpy_grad(self, params: Arrays, data: Arrays) -> Arrays:
        """The same gradient in numpy, for the `numpy` method; optional."""
        raise NotImplementedError

    def min_bytes(self, itemsize: int) -> int | None:
        """Bytes any gradient must read at least (the bandwidth floor); None when unknown."""
        return None

    # -- derived ---------------------------------------------------------------------------
    @classmethod
    def has_numpy(cls) -> bool:
        return cls.numpy_grad is not Problem.numpy_grad

    def rows(self, data: Tensors) -> int:
        """Samples along the batch axis: what micro-batch patterns split."""
        return data[self.batched[0]].shape[0] if self.batched else 1

    def reduction_length(self) -> int:
        """The longest sum a gradient of this problem takes: what rounding error grows with."""
        return max(s for s in (self.n, self.d, self.h) if s is not None) if self.sizes else 1

    def describe(self) -> str:
        doc = (type(self).__doc__ or "").strip().splitlines()
        return doc[0] if doc else self.name


_PROBLEMS: dict[str, type[Problem]] = {}


def register_problem(cls: type[Problem]) -> type[Problem]:
    """Class decorator: make a Problem subclass runnable by its `name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...'")
    if not issubclass(cls, Problem):
        raise TypeError(f"{cls.__qualname__} must subclass harness.Problem")
    bad = set(cls.sizes) - set(SIZE_NAMES)
    if bad:
        raise TypeError(f"{cls.__qualname__}.sizes may hold only {SIZE_NAMES}, not {sorted(bad)}")
    _PROBLEMS[name] = cls
    return cls


def get_problem(name: str) -> type[Problem]:
    try:
        return _PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; known: {', '.join(sorted(_PROBLEMS))}") from None


def problem_names() -> list[str]:
    return sorted(_PROBLEMS)


def normal(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float32)
