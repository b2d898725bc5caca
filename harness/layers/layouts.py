"""What kernels get wrong about their inputs: the same values in other layouts, and inputs that
need no gradient. A layer's method is run on its inputs and grad_outputs as given (contiguous),
as non-contiguous views (column-major copies: every dimension's stride reversed, so no two
leading dimensions merge and a `.view(-1, d)` fails as it does on a transposed tensor), with the
leading rows folded ((B, T, d) against (B*T, d)) where the layer has rows, and with one input at
a time not requiring a gradient (it must get None, and the Function must return None for it).

A run returns the outputs and gradients in the contiguous shapes, so that every layout is held
against the same truth; an exception is re-raised naming the Function and the layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..methods.function import FunctionError, _backward_error, _raised_in
from ..record import one_line
from .base import Outputs, Tensors

# the layouts a cell is run in besides its contiguous one
LAYOUTS = ("noncontiguous", "folded", "folded-noncontiguous", "no-grad")
WORDS = {
    "contiguous": "contiguous inputs",
    "noncontiguous": "non-contiguous inputs and grad_output (column-major copies)",
    "folded": "the rows folded as (B, T, ...)",
    "folded-noncontiguous": "the rows folded as (B, T, ...), non-contiguous (column-major copies)",
}


def words(layout: str) -> str:
    """'non-contiguous inputs ...', or 'x not requiring a gradient' for "no-grad:x"."""
    if layout.startswith("no-grad:"):
        return f"{layout.partition(':')[2]} not requiring a gradient"
    return WORDS.get(layout, layout)


def outputs_of(out: Outputs) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def output_names(count: int) -> list[str]:
    return ["y"] if count == 1 else [f"y{i}" for i in range(count)]


def column_major(t: torch.Tensor) -> torch.Tensor:
    """The same values, every stride reversed: a transposed copy transposed back; a vector as
    every other element of one twice as long."""
    if t.dim() >= 2:
        order = list(range(t.dim()))[::-1]
        return t.permute(order).contiguous().permute(order)
    if t.numel() > 1:
        wide = torch.empty(2 * t.numel(), dtype=t.dtype, device=t.device)[::2]
        return wide.copy_(t.reshape(-1)).reshape(t.shape)
    return t.clone()


def fold_of(n: int) -> int | None:
    """B of a (B, T) folding of n rows, B and T >= 2; None when n is 1 or prime."""
    return next((b for b in range(2, int(n**0.5) + 1) if n % b == 0), None)


@dataclass
class Run:
    outputs: tuple[torch.Tensor, ...]  # detached, in the contiguous shapes
    grads: dict[str, torch.Tensor | None]  # .grad of each input after backward
    # (Function's backward, position) of each gradient returned for a tensor that needs none: the
    # frozen input's, or a constant the code under test passes to its Function itself
    stray: list[tuple[str, int]]


def _function_nodes(outputs) -> list:
    """The graph's torch.autograd.Function nodes (those with a forward class)."""
    seen, found, stack = set(), [], [o.grad_fn for o in outputs]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(getattr(node, "_forward_cls", None), type):
            found.append(node)
        stack.extend(fn for fn, _ in getattr(node, "next_functions", ()))
    return found


def run(
    fn: Callable[..., Outputs],
    inputs: Tensors,
    grad_outputs: list[torch.Tensor],
    layout: str = "contiguous",
    rows: tuple[str, ...] = (),
    frozen: str | None = None,
) -> Run:
    """fn's outputs and the gradients of every floating input (but `frozen`) under grad_outputs,
    in `layout`; the inputs and grad_outputs are given contiguous, in the cell's dtype."""
    n = next((inputs[k].shape[0] for k in rows if k in inputs), None)
    shape = "contiguous" if layout.startswith("no-grad:") else layout
    fold = fold_of(n) if n is not None and "folded" in shape else None
    if "folded" in shape and fold is None:
        raise ValueError(f"{n} rows cannot fold as (B, T)")

    def shaped(t: torch.Tensor, has_rows: bool) -> torch.Tensor:
        if fold is not None and has_rows:
            t = t.reshape(fold, t.shape[0] // fold, *t.shape[1:])
        return column_major(t) if "noncontiguous" in shape else t

    leaves = {}
    for k, v in inputs.items():
        t = shaped(v.detach(), k in rows)
        leaves[k] = t.requires_grad_(v.is_floating_point() and k != frozen)
    try:
        out = outputs_of(fn(**leaves))
    except Exception as exc:
        raise _named(exc, "forward", layout) from exc
    # an output has rows when its first dimension is n (a per-row value), as its grad_output does
    has_rows = [n is not None and g.dim() >= 1 and g.shape[0] == n for g in grad_outputs]
    grads_in = [shaped(g, r) for g, r in zip(grad_outputs, has_rows)]
    nodes = _function_nodes(out)
    returned: list[tuple[object, tuple]] = []
    for node in nodes:
        node.register_hook(lambda gi, go, node=node: returned.append((node, gi)))
    try:
        torch.autograd.backward(out, grads_in)
    except Exception as exc:
        error = _backward_error(exc, out[0])
        raise _layout_error(error or exc, layout, exc) from exc
    stray = []
    for node, gi in returned:
        nexts = node.next_functions
        for i, g in enumerate(gi):
            if g is not None and i < len(nexts) and nexts[i][0] is None:
                stray.append((f"{node._forward_cls.__qualname__}.backward", i))

    def back(t: torch.Tensor, has_rows: bool) -> torch.Tensor:
        return t.reshape(-1, *t.shape[2:]) if fold is not None and has_rows else t

    outputs = tuple(back(o.detach(), r) for o, r in zip(out, has_rows))
    grads = {k: (back(v.grad, k in rows) if v.grad is not None else None) for k, v in leaves.items()}
    return Run(outputs, grads, stray)


def _named(exc: Exception, phase: str, layout: str) -> Exception:
    cls = _raised_in(exc)
    if cls is None:
        return _layout_error(exc, layout, exc)
    return _layout_error(FunctionError(f"{cls.__qualname__}.{phase} raised {one_line(exc)}"), layout, exc)


def _layout_error(error: Exception, layout: str, cause: Exception) -> Exception:
    """error, said with the layout it happened in (nothing added for the contiguous one)."""
    if layout == "contiguous":
        return error
    message = str(error) if isinstance(error, FunctionError) else one_line(error)
    return FunctionError(f"with {words(layout)}: {message}", getattr(error, "where", None))
