"""What rounding costs a correct gradient: the error model of a long sum in each dtype, the
calibrated tolerance, and the condition that scales it where the sums cancel. The float64 truth
these are held against is harness.reference; the comparison, harness.agreement.
"""

from __future__ import annotations

import math

import torch

# Unit roundoff u = 2^-p of each dtype (p = significand bits).
UNIT_ROUNDOFF = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.float16: 2.0**-11,
    torch.bfloat16: 2.0**-8,
}

# Tolerance on the normwise relative error: TOL_FACTOR[dtype] * (u + u_acc sqrt(L)), L the
# problem's longest reduction, for a gradient whose terms do not cancel (Reference.condition
# scales it where they do). Rounding each result to the dtype costs about u; summing L
# terms errs by about sqrt(L) u_acc times the size of the partial sums when the rounding errors
# are independent, where u_acc is the roundoff of the accumulator: float16 and bfloat16 sums and
# matmuls accumulate in float32 on the CPU (and by default in cuBLAS), so their error does not
# grow with L.
# Factors from benchmarks/calibrate_tolerances.py (docs/agreement.md): each is about 4x the
# worst correct gradient measured over every problem x method x pattern, 3 seeds, n up to 1e6,
# correct gradients written unusually and at the least-squares optimum included. The cap keeps
# every planted bug (relative errors of 0.5 and up) a failure in every dtype away from an
# optimum. The loss a user's Function returns is held to the same model, its own condition.
TOL_FACTOR = {
    torch.float64: 4.0,
    torch.float32: 4.0,
    torch.float16: 8.0,
    torch.bfloat16: 6.0,
}
TOL_CAP = 0.05

# A float64 gradient written by hand must match the reference to this (times the condition),
# or its formula is wrong.
FORMULA_TOL = 1e-10


def error_model(dtype: torch.dtype, reduction_length: int) -> float:
    """The rounding error expected of a correct gradient, before the safety factor."""
    u = UNIT_ROUNDOFF[dtype]
    u_acc = min(u, UNIT_ROUNDOFF[torch.float32])
    length = max(1, reduction_length)
    model = u + u_acc * math.sqrt(length)
    # A mean's backward scales by 1/L in the dtype itself. Below the smallest normal number
    # (float16: 1/L < 6.1e-5, L > 16384) 1/L is subnormal, with absolute spacing 2 u tiny: a
    # systematic relative error of up to u tiny L in every term (measured: 1.3e-2 for
    # autograd at L = 1e6 in float16, where the manual gradient, scaling r first, had 1.9e-4).
    tiny = torch.finfo(dtype).tiny
    if 1 / length < tiny:
        model += u * tiny * length
    return model


def tolerance(dtype: torch.dtype, reduction_length: int) -> float:
    """The tolerance of a well-conditioned gradient (Reference.tolerances scales it)."""
    return min(TOL_CAP, TOL_FACTOR[dtype] * error_model(dtype, reduction_length))


def ratio(size: float, norm: float) -> float:
    """How many times larger than the result the quantities its rounding scales with are."""
    if size == 0:
        return 1.0
    return max(1.0, size / norm) if norm > 0 else math.inf


def condition(dtype: torch.dtype, reduction_length: int, c_moved: float, c_terms: float) -> float:
    """error_model with each part scaled by its own size over the result's: the roundoff u by
    c_moved, the reduction's u_acc sqrt(L) by c_terms, a subnormal 1/L (an error in every term)
    by the larger of the two; over error_model itself."""
    u, model = UNIT_ROUNDOFF[dtype], error_model(dtype, reduction_length)
    reduction = min(u, UNIT_ROUNDOFF[torch.float32]) * math.sqrt(max(1, reduction_length))
    subnormal = model - u - reduction
    return (u * c_moved + reduction * c_terms + subnormal * max(c_moved, c_terms)) / model
