"""A user's own torch.autograd.Function: the problem's `function_loss`, then `.backward()`.

Patterns drive it as training code does: the loss is scaled before `backward()` (1/k for equal
micro-batches, n_i/N for uneven ones), so the Function's backward receives that scale as its
incoming gradient, and one that ignores it is wrong under accumulation. Its gradient and the
loss its forward returns are judged against autograd of the plain `loss` in float64
(harness.reference); an exception from its forward or backward is its record's error, naming
the Function.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ..record import one_line
from .autograd import Autograd
from .base import DEVICE_WORDS, register_method


class FunctionError(RuntimeError):
    """An exception from a user's torch.autograd.Function, with the Function named; `where` is
    its source line when the error came from autograd's engine rather than its own code."""

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.where = where


@register_method
class Function(Autograd):
    """The problem's `function_loss` (a user's torch.autograd.Function), then `.backward()`."""

    name = "function"
    hand_written = True
    custom_function = True
    order, color, marker = 5, "#d62728", "*"

    @classmethod
    def skip_reason(cls, problem, dtype, device):
        if not problem.has_function():
            return f"problem {problem.name!r} has no function_loss"
        kind = torch.device(device).type
        if kind not in problem.function_devices:
            where = " and ".join(DEVICE_WORDS.get(d, d) for d in problem.function_devices)
            return f"the Function of {problem.name!r} runs on {where} only (function_devices)"
        named = str(dtype).removeprefix("torch.")
        if problem.function_dtypes is not None and named not in problem.function_dtypes:
            dtypes = ", ".join(problem.function_dtypes)
            return f"the Function of {problem.name!r} runs in {dtypes} only (function_dtypes)"
        return super().skip_reason(problem, dtype, device)

    @classmethod
    def twin_skip_reason(cls, problem):
        if problem.function_dtypes is not None and "float64" not in problem.function_dtypes:
            return (
                f"the Function has no float64 (function_dtypes: {', '.join(problem.function_dtypes)}): "
                "judged in the cell's dtype alone"
            )
        return None

    def loss(self, params, batch):
        try:
            return self.problem.function_loss(params, batch)
        except Exception as exc:
            named = _raised_in(exc)
            if named is None:
                raise
            raise FunctionError(f"{named.__qualname__}.forward raised {one_line(exc)}") from exc

    def accumulate(self, batch, weight=1.0):
        self.evaluate(batch, weight)

    def evaluate(self, batch, weight=1.0):
        loss = self.loss(self.params, batch)
        try:
            (loss * weight if weight != 1 else loss).backward()
        except Exception as exc:
            error = _backward_error(exc, loss)
            if error is None:
                raise
            raise error from exc
        return loss.detach()

    def retained(self, batch, k):
        loss = self.loss(self.params, batch)
        try:
            for i in range(k):
                loss.backward(retain_graph=i < k - 1)
        except Exception as exc:
            error = _backward_error(exc, loss)
            if error is None:
                raise
            raise error from exc


def _raised_in(exc: BaseException) -> type | None:
    """The Function whose forward or backward raised exc: the innermost frame of its traceback
    with a `ctx` that belongs to a Function (the context autograd passes to both)."""
    named, tb = None, exc.__traceback__
    while tb is not None:
        cls = getattr(tb.tb_frame.f_locals.get("ctx"), "_forward_cls", None)
        if isinstance(cls, type):
            named = cls
        tb = tb.tb_next
    return named


def _functions(loss: torch.Tensor) -> list[type]:
    """The torch.autograd.Function classes in the loss's graph, nearest the loss first."""
    seen, found, stack = set(), [], [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        cls = getattr(node, "_forward_cls", None)
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
        stack.extend(fn for fn, _ in getattr(node, "next_functions", ()))
    return found


def _source_line(cls: type) -> str | None:
    """`file.py:42` of a Function's backward."""
    try:
        fn = inspect.unwrap(cls.backward)
        return f"{Path(inspect.getsourcefile(fn)).name}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return None


def _backward_error(exc: BaseException, loss: torch.Tensor) -> FunctionError | None:
    """exc as one line naming the Function whose backward raised it: the one whose frame raised
    it (a saved tensor modified in place, an error in its code), else the one the engine names
    ("function FooBackward returned an incorrect number of gradients", "output 0 of
    FooBackward"), else the graph's only one; None when the graph has no Function of a user's."""
    named, where = _raised_in(exc), None
    if named is None:
        found = _functions(loss)
        text = str(exc)
        named = next((f for f in found if f"{f.__name__}Backward" in text), None)
        if named is None and len(found) == 1:
            named = found[0]
        where = _source_line(named) if named is not None else None
    if named is None:
        return None
    return FunctionError(f"{named.__qualname__}.backward raised {one_line(exc)}", where)
