"""What a problem is, and the registry that built-in and user problems share.

A problem is one small class: seeded data and initial parameters, the loss, and right beside it
the hand-written gradient with its formula. The harness never looks inside: every method gets
its gradient from `loss` (autograd, func, compiled) or from `manual_grad` / `numpy_grad`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..registry import Registry
from ..schema import SIZE_NAMES

Tensors = dict[str, torch.Tensor]
Arrays = dict[str, np.ndarray]


class Problem:
    """One regression problem at fixed sizes.

    Subclasses set `name`, `sizes` (which of n, d, h, c they take) and `batched` (the data keys whose
    first dimension is the sample axis, split by micro-batch patterns; empty when the loss is
    not a mean over samples), and write `make`, `loss` and `manual_grad`. A loss that is a mean over
    something else than rows (the valid targets of a token loss, a weighted mean) says so with
    `items`.
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
    # the time of a gradient over the forward's that its arithmetic predicts, and why; reports
    # draw it beside the cheap-gradient bound of 5
    expected_cost_ratio: ClassVar[float | None] = None
    expected_cost_ratio_why: ClassVar[str] = ""

    # what a user's Function (`function_loss`) runs in and on: a Triton kernel has no float64, and
    # runs on CUDA only. None: every dtype the cell may have. The method `function` skips the
    # others with the reason, and a Function without float64 has its float64 twin skipped.
    # the data key of a weighted mean's per-sample weights (J = sum_i w_i l_i / sum_i w_i), if any:
    # a backward that reads one grad_output for every row gives the unweighted loss's gradient
    sample_weights: ClassVar[str | None] = None
    function_dtypes: ClassVar[tuple[str, ...] | None] = None
    function_devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(
        self,
        n: int | None = None,
        d: int | None = None,
        h: int | None = None,
        c: int | None = None,
        data: str = "random",
    ):
        check_sizes(f"problem {self.name!r}", self.sizes, {"n": n, "d": d, "h": h, "c": c})
        if data not in self.datasets:
            raise ValueError(f"problem {self.name!r} has data sets {self.datasets}, not {data!r}")
        self.n, self.d, self.h, self.c, self.data = n, d, h, c, data

    # -- to write in a subclass --------------------------------------------------------------
    def make(self, gen: torch.Generator) -> tuple[Tensors, Tensors]:
        """(params, data) as float32 tensors drawn from `gen`, a generator seeded by the harness on
        the cell's device: make them there (`device=gen.device`), so that data of any size never
        pass through the host. Fixed data may be made anywhere: the harness moves them."""
        raise NotImplementedError

    def output(self, params: Tensors, data: Tensors) -> torch.Tensor:
        """The model's output before the loss (predictions); the record previews it."""
        raise NotImplementedError

    def loss(self, params: Tensors, data: Tensors) -> torch.Tensor:
        """A 0-d tensor; a mean over the samples (or over its `items`) when `batched` is not empty."""
        raise NotImplementedError

    def items(self, data: Tensors) -> int | float | torch.Tensor:
        """What the loss is a mean over in these data, as a number or a 0-d tensor left on the
        device: the valid targets of a token loss (labels other than ignore_index), the total
        weight of a weighted mean; rows by default. Patterns that split samples weight micro-batch
        i by items_i / items (the transformers fix's `num_items_in_batch`), and one with no items
        adds nothing; the reference, its tolerance and the float64 twin follow the same weights."""
        return self.rows(data)

    def manual_grad(self, params: Tensors, data: Tensors) -> Tensors:
        """d loss / d params written by hand with torch operations, no autograd."""
        raise NotImplementedError

    def numpy_grad(self, params: Arrays, data: Arrays) -> Arrays:
        """The same gradient in numpy, for the `numpy` method; optional."""
        raise NotImplementedError

    def function_loss(self, params: Tensors, data: Tensors) -> torch.Tensor:
        """The same loss as `loss`, computed through the user's torch.autograd.Function(s), for
        the `function` method; optional. Its gradient and the value it returns are both judged
        against autograd of the plain `loss` in float64, never against itself."""
        raise NotImplementedError

    def per_sample_sumsq(self, params: Tensors, data: Tensors) -> Tensors:
        """Per parameter, the sum over samples and entries of the squared per-sample gradient,
        sum_i |items_i grad loss_i|^2 (loss_i the loss of sample i alone, items_i its items: 1 per
        row by default, 0 for a row that holds none), as a 0-d float64 tensor, from float64 inputs;
        optional. The tolerance's term spread needs it; without it, the harness
        takes per-sample gradients (n x |params| numbers). A model linear in its inputs has
        outer products for terms, whose sum of squares costs about one gradient."""
        raise NotImplementedError

    def min_bytes(self, itemsize: int) -> int | None:
        """Bytes any gradient must read at least (the bandwidth floor); None when unknown."""
        return None

    def flops(self) -> int | None:
        """Floating-point operations of one gradient step, counted for a problem whose work grows
        faster than its bytes (softmax: n d c products against n d + d c numbers read); reports fit
        its time per flop rather than per byte. None: the bytes say it (linear, logistic)."""
        return None

    # -- derived ---------------------------------------------------------------------------
    @classmethod
    def has_numpy(cls) -> bool:
        return cls.numpy_grad is not Problem.numpy_grad

    @classmethod
    def has_function(cls) -> bool:
        return cls.function_loss is not Problem.function_loss

    @classmethod
    def has_items(cls) -> bool:
        return cls.items is not Problem.items

    @classmethod
    def has_per_sample_sumsq(cls) -> bool:
        return cls.per_sample_sumsq is not Problem.per_sample_sumsq

    def with_rows(self, n: int) -> Problem:
        """The same problem at n samples (the float64 twin's subsample)."""
        return type(self)(n=n, d=self.d, h=self.h, c=self.c, data=self.data)

    def row_width(self) -> int:
        """The numbers one sample holds and makes on its way to the loss, about: what the float64
        reference's chunks of rows are sized by (d for linear regression, d + c for softmax)."""
        return sum(getattr(self, s) for s in self.sizes if s != "n") or 1

    def rows(self, data: Tensors) -> int:
        """Samples along the batch axis: what micro-batch patterns split."""
        return data[self.batched[0]].shape[0] if self.batched else 1

    def rows_of(self, data: Tensors, start: int, stop: int) -> Tensors:
        """Rows start:stop of the batched data (views), the rest whole."""
        return {k: (v[start:stop] if k in self.batched else v) for k, v in data.items()}

    def reduction_length(self) -> int:
        """The longest sum a gradient of this problem takes: what rounding error grows with."""
        return max(s for s in (self.n, self.d, self.h, self.c) if s is not None) if self.sizes else 1

    @classmethod
    def declared(cls) -> dict:
        """What reports need to know of it, as plain data (kept in a run's manifest)."""
        doc = (cls.__doc__ or "").strip().splitlines()
        return {
            "doc": doc[0] if doc else cls.name,
            "sizes": list(cls.sizes),
            "expected_cost_ratio": cls.expected_cost_ratio,
            "expected_cost_ratio_why": cls.expected_cost_ratio_why,
            "function": cls.has_function(),
            "items": cls.has_items(),
        }


PROBLEMS: Registry[type[Problem]] = Registry("problem")


def check_sizes(what: str, sizes: tuple[str, ...], given: dict[str, int | None]) -> None:
    """A ValueError naming `what` (a problem, a layer) unless exactly its `sizes` are given, each >= 1."""
    for size in SIZE_NAMES:
        value = given[size]
        if size in sizes:
            if value is None or value < 1:
                raise ValueError(f"{what} needs {size} >= 1, got {value}")
        elif value is not None:
            raise ValueError(f"{what} takes sizes {sizes}, not {size}")


def sized_subclass_check(base: type):
    """What a registry checks of a class registered under `base` (a Problem, a Layer): a subclass
    with a `name` and `sizes` drawn from SIZE_NAMES; a one-line TypeError otherwise."""

    def check(cls: type) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} needs a class attribute name = '...'")
        if not issubclass(cls, base):
            raise TypeError(f"{cls.__qualname__} must subclass harness.{base.__name__}")
        bad = set(cls.sizes) - set(SIZE_NAMES)
        if bad:
            raise TypeError(f"{cls.__qualname__}.sizes may hold only {SIZE_NAMES}, not {sorted(bad)}")

    return check


# `@register_problem` or `@register_problem(replace=True)`: make a Problem runnable by its `name`
register_problem = PROBLEMS.decorator(sized_subclass_check(Problem))


def get_problem(name: str) -> type[Problem]:
    return PROBLEMS.get(name)


def problem_names() -> list[str]:
    return PROBLEMS.names()


def items_of(problem: Problem, data) -> float:
    """problem.items(data) as a Python number (one synchronization where it is a device tensor)."""
    return float(problem.items(data))


def normal(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float32, device=gen.device)


def uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, dtype=torch.float32, device=gen.device)
