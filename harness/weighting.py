"""Which weighting of its micro-batches a split step's gradient follows, in float64: to tell a step
weighted wrongly (by the harness's drive, for a loss that is not the mean it looks like, or by a
user's own accumulation loop) from a wrong formula.

A step that splits N rows into micro-batches of n_i rows, holding I_i of the loss's I items
(Problem.items), accumulates sum_i w_i grad J_i, J_i the mean loss over micro-batch i. Only

    w_i = I_i / I                                           (items: the loss's own mean)

gives grad J. The weightings a gradient may follow instead, each a known bug:

    w_i = n_i / N    rows: right only for a mean over rows; for a token loss the bias of
                     micro-batches with unequal valid targets
    w_i = 1 / k      a mean of micro-batch means: the transformers gradient-accumulation bug
                     of 2024, where the loss is a mean over tokens

Each is computed from the float64 gradients of the micro-batches the step evaluates, and a
gradient is named by the one it matches. A micro-batch whose own float64 gradient is not finite
is a mean over nothing (0/0): padding alone, in a loss that does not say what it is a mean over.

Within one batch, a weighted mean J = sum_i w_i l_i / sum_i w_i (Problem.sample_weights) computed
by a Function with one loss per row (reduction='none') hands row i the grad_output w_i / sum w; a
backward that reads one grad_output for every row gives the unweighted loss's gradient, scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .agreement import WeightingFinding, compare
from .patterns import Pattern
from .problems.base import Problem, Tensors, items_of
from .reference import reference_grad


@dataclass
class Weighted:
    """The float64 gradient of one step under each weighting, and what its micro-batches held."""

    grads: dict[str, Tensors]
    rows: list[tuple[int, int]]  # (start, stop) of each micro-batch the step evaluates
    held: list[float]  # items of every micro-batch of the pattern's plan, empty ones too
    items: float
    nonfinite: list[int]  # micro-batches (0-based, in `rows`) whose own gradient is not finite


def weigh(problem: Problem, params: Tensors, data: Tensors, pattern: Pattern) -> Weighted:
    """Each weighting's gradient of a step of `pattern` over these data (in their dtype's rounding,
    upcast), over the micro-batches its drive evaluates."""
    drive = pattern.drive(problem, data)
    rows = problem.rows(data)
    bounds = [(a, b) for a, b, _ in drive.plan]
    parts = [reference_grad(problem, params, problem.rows_of(data, a, b)) for a, b in bounds]
    nonfinite = [i for i, g in enumerate(parts) if not all(torch.isfinite(v).all() for v in g.values())]
    weights = {
        "items": [items_of(problem, problem.rows_of(data, a, b)) / drive.items for a, b in bounds],
        "rows": [(b - a) / rows for a, b in bounds],
        "1/k": [1 / pattern.k] * len(bounds),
    }
    grads = {
        name: {k: sum(w * g[k] for w, g in zip(ws, parts)) for k in parts[0]} for name, ws in weights.items()
    }
    return Weighted(grads, bounds, list(drive.held), drive.items, nonfinite)


def find(
    grads: Tensors,
    weighted: Weighted,
    truth: Tensors,
    tol: float,
    declared_items: bool,
) -> WeightingFinding | None:
    """The weighting `grads` follows when it is not the loss's own, or a micro-batch that makes
    every weighting non-finite; None when the weighting is not the cause. Without declared items,
    the items weighting is the rows one."""
    finite = all(torch.isfinite(v).all() for v in grads.values())
    if not finite:
        if not weighted.nonfinite:
            return None
        i = weighted.nonfinite[0]
        return WeightingFinding(None, math.inf, declared_items, batch=weighted.rows[i], held=weighted.held)
    for name in ("items", "1/k", "rows") if declared_items else ("rows", "1/k"):
        off = compare(weighted.grads[name], truth, 1, tol).rel_err
        if off > tol and compare(grads, weighted.grads[name], 1, tol).rel_err <= tol:
            return WeightingFinding(name, off, declared_items, held=weighted.held)
    return None


def unweighted(
    problem: Problem, params: Tensors, data: Tensors, grads: Tensors, tol: float
) -> WeightingFinding | None:
    """A gradient along the unweighted loss's (every sample weight 1: Problem.sample_weights) where
    the weights are not uniform: what a Function with one loss per row (reduction='none') gives
    when its backward reads one grad_output for every row instead of row i's own."""
    key = problem.sample_weights
    if key is None or key not in data:
        return None
    plain = reference_grad(problem, params, {**data, key: torch.ones_like(data[key])})
    along = compare(grads, plain, 1, tol)
    if along.aligned and along.cosine > 0:
        return WeightingFinding("unweighted", along.rel_err, problem.has_items(), scale=along.scale)
    return None
