"""What a float64 twin's error says: a wrong formula, or a formula computed in a lower precision
somewhere (a `.float()` meant to upcast bfloat16, which downcasts float64; a float32
accumulator).

The size of the error alone cannot tell them apart: a formula off by a relative 1e-5 and float32's
rounding of a sum of 4096 terms (its tolerance 4 (u + u sqrt(L)) = 1.6e-5) are the same size. What
tells them apart is how the twin's gradient answers a move of its inputs by a relative
rho = 2^-27, below half a float32 ulp (2^-25 to 2^-24 of a number): a formula computed in float64
throughout, right or wrong, moves with the reference (its error moves by its own relative size,
1e-5 of the move); a formula that rounds to float32 somewhere does not see the move there (x (1 +
rho) rounds back to x) and what it returns moves by that precision's rounding noise instead, 8 to
64 times the move. So:

1. the twin's error above every lower precision's tolerance (the cell's error model for bfloat16
   with the same condition, harness.tolerance): the formula is wrong;
2. else, the parameters the twin gets wrong moving with the reference (each one's response within
   RESPONSE_TOL of the reference's): the formula is wrong;
3. else the formula computes in the finest lower precision whose tolerance holds the twin's error,
   a mismatch of the finer dtypes only: a float64 user loses precision, a float32 user of a
   formula computing in float32 does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .agreement import Agreement
from .problems.base import Problem, Tensors
from .reference import Reference, reference_grad
from .tolerance import UNIT_ROUNDOFF, tolerance

# the lower precisions a float64 formula may compute in somewhere, finest first: (the finest dtype
# of the level, which it costs the dtypes finer than; the dtype whose tolerance bounds its error).
# Half precision is float16 or bfloat16: bounded by bfloat16's, the wider
LOWER = {"float32": (torch.float32, torch.float32), "half precision": (torch.float16, torch.bfloat16)}
# the relative move of the inputs: below half a float32 ulp (2^-25 of a number at the least), so
# that a float32 copy of the inputs does not move at all; far above float64's roundoff
MOVE = 2.0**-27
# a parameter whose response to the move is off by more than this share of the reference's has
# lost the move: a formula wrong by 1e-5 answers it to about 1e-5, float64's rounding of the
# difference costs u64 sqrt(L) cond / MOVE (4e-6 at L = 65536, cond 1), float32's loses it whole
RESPONSE_TOL = 0.1


@dataclass
class Precision:
    """Where a float64 twin's error lies: `level`, the lower precision it computes in somewhere
    (None: the formula), `tol` that precision's tolerance of the twin, `response` the least
    response error of the parameters the twin gets wrong (None where not moved)."""

    level: str | None
    tol: float
    response: float | None = None

    def binds(self, dtype: torch.dtype) -> bool:
        """A dtype finer than the level loses precision to it: its cell is a mismatch."""
        return self.level is not None and UNIT_ROUNDOFF[dtype] < UNIT_ROUNDOFF[LOWER[self.level][0]]


def rounding(ref: Reference, reduction_length: int) -> dict[str, float]:
    """Each lower precision's tolerance of a twin summing `reduction_length` terms, with the
    condition the cell's own tolerance has."""
    return {
        name: tolerance(dtype, reduction_length) * ref.condition(dtype, reduction_length)
        for name, (_, dtype) in LOWER.items()
    }


def moved(tensors: Tensors, seed: int = 0) -> Tensors:
    """Every floating input times 1 +- MOVE, random signs; integer data (labels) as they are."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, t in tensors.items():
        if t.is_floating_point():
            signs = torch.randint(0, 2, t.shape, generator=gen).to(t.device, t.dtype)
            t = t * signs.mul_(2 * MOVE).add_(1 - MOVE)
        out[k] = t
    return out


def response_errors(
    run64: Callable[[Tensors, Tensors], Tensors],
    problem: Problem,
    params: Tensors,
    data: Tensors,
    multiplier: float,
    keys: list[str],
) -> dict[str, float]:
    """Per parameter in `keys`, |dg - m dref| / |m dref|: how far the method's float64 gradient's
    move, when its inputs move by MOVE, is from the reference's."""
    params2, data2 = moved(params, 1), moved(data, 2)
    g1, g2 = run64(params, data), run64(params2, data2)
    r1, r2 = reference_grad(problem, params, data), reference_grad(problem, params2, data2)
    out = {}
    for k in keys:
        dg = (g2[k].detach().double() - g1[k].detach().double()).cpu()
        dref = multiplier * (r2[k] - r1[k]).cpu()
        out[k] = ((dg - dref).norm() / dref.norm()).item()  # 0/0, no move at all: NaN
    return out


def judge(
    twin: Agreement,
    tolerances: dict[str, float],
    responses: Callable[[list[str]], dict[str, float]],
) -> Precision:
    """Where a twin that disagrees errs; `responses(keys)` moves it (response_errors)."""
    err = twin.rel_err
    level = next((name for name, tol in tolerances.items() if err <= tol), None)
    widest = max(tolerances.values())
    if level is None:
        return Precision(None, widest)
    wrong = [k for k, p in twin.per_param.items() if not p.agree] or list(twin.per_param)
    # one parameter that follows the move is computed in float64 there: its error is a formula's
    known = [r for r in responses(wrong).values() if r == r]  # NaN: neither moved, nothing to tell
    closest = min(known, default=float("nan"))
    if not closest > RESPONSE_TOL:
        return Precision(None, widest, closest)
    return Precision(level, tolerances[level], closest)
