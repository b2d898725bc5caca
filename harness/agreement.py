"""Is a gradient right? Normwise errors against the float64 reference (reference.py),
calibrated tolerances, a diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .problems.base import Tensors

# Unit roundoff u = 2^-p of each dtype (p = significand bits).
UNIT_ROUNDOFF = {
    torch.float64: 2.0**-53,
    torch.float32: 2.0**-24,
    torch.float16: 2.0**-11,
    torch.bfloat16: 2.0**-8,
}

# Tolerance on the normwise relative error: TOL_FACTOR * (u + u_acc sqrt(L)), L the problem's
# longest reduction. Rounding each result to the dtype costs about u; summing L terms errs by
# about sqrt(L) u_acc when the rounding errors are independent (L u_acc at worst), where u_acc
# is the roundoff of the accumulator: float16 and bfloat16 sums and matmuls accumulate in
# float32 on the CPU (and by default in cuBLAS), so their error does not grow with L.
# Measured with benchmarks/calibrate_tolerances.py (every problem x method x pattern, 3 seeds,
# n up to 4096; and n = 1e6 for the large problems): the worst correct gradient reached 1.4
# (float64), 0.7 (float32), 1.9 (float16) and 2.0 (bfloat16) times the model, that is 0.05,
# 0.02, 0.06 and 0.16 of the tolerance. The cap keeps every planted bug (relative errors of
# 0.5 and up) a failure in every dtype; it is what bfloat16 gets at every size.
TOL_FACTOR = 32.0
TOL_CAP = 0.05

# A float64 gradient written by hand must match the reference to this, or its formula is wrong.
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
    return min(TOL_CAP, TOL_FACTOR * error_model(dtype, reduction_length))


@dataclass
class Agreement:
    rel_err: float
    max_abs_err: float
    scale: float  # |g| / |expected|
    cosine: float  # <g, expected> / (|g| |expected|): -1 is a sign error
    tol: float
    per_param: dict[str, float] = field(default_factory=dict)  # rel_err of each parameter
    diagnosis: str | None = None

    @property
    def agree(self) -> bool:
        return self.rel_err <= self.tol  # NaN compares False: a NaN gradient never agrees


def _flat(g: Tensors, keys) -> torch.Tensor:
    return torch.cat([g[k].detach().to("cpu", torch.float64).reshape(-1) for k in keys])


def compare(grads: Tensors, reference: Tensors, multiplier: float, tol: float) -> Agreement:
    """Errors of `grads` against multiplier x `reference`, over all parameters at once."""
    keys = list(reference)
    missing = [k for k in keys if k not in grads]
    if missing:
        raise ValueError(f"the gradient has no entry for {', '.join(missing)}")
    for k in keys:
        if tuple(grads[k].shape) != tuple(reference[k].shape):
            raise ValueError(
                f"gradient of {k} has shape {tuple(grads[k].shape)}, "
                f"the parameter {tuple(reference[k].shape)}"
            )
    g, ref = _flat(grads, keys), multiplier * _flat(reference, keys)
    ref_norm = ref.norm().item()
    tiny = torch.finfo(torch.float64).tiny
    per_param = {}
    for k in keys:
        gk, rk = _flat(grads, [k]), multiplier * _flat(reference, [k])
        per_param[k] = ((gk - rk).norm() / max(rk.norm().item(), tiny)).item()
    g_norm = g.norm().item()
    return Agreement(
        rel_err=((g - ref).norm() / max(ref_norm, tiny)).item(),
        max_abs_err=(g - ref).abs().max().item() if g.numel() else 0.0,
        scale=g_norm / max(ref_norm, tiny),
        cosine=(g @ ref).item() / max(g_norm * ref_norm, tiny),
        tol=tol,
        per_param=per_param,
    )


def _near(x: float, m: int) -> bool:
    return abs(x - m) <= 1e-3 * m


def _factor_causes(m: int, n: int | None, k: int) -> list[str]:
    causes = []
    if n is not None and n == m:
        causes.append(f"a sum where a mean over n={n} was meant")
    if k == m and k > 1:
        causes.append(f"k={k} accumulations not zeroed or not scaled by 1/k")
    if m == 2:
        causes.append("a second backward through a retained graph, or a doubled term")
    return causes or [f"a stray factor {m}"]


def _inverse_causes(m: int, n: int | None, k: int) -> list[str]:
    causes = []
    if m == 2:
        causes.append("a missing factor 2 (d/dr r^2 = 2r)")
    if n is not None and n == m:
        causes.append(f"a mean over n={n} taken twice")
    if k == m and k > 1:
        causes.append(f"micro-batches scaled by 1/k={k} where the loss was already a mean")
    return causes or [f"a stray factor 1/{m}"]


def diagnose(a: Agreement, n: int | None, k: int, formula_err: float | None = None) -> str | None:
    """A sentence naming the likely bug when a gradient disagrees; None when it agrees."""
    if a.agree:
        return None
    if not math.isfinite(a.rel_err) or not math.isfinite(a.scale):
        return "non-finite gradient: overflow, or a NaN in the data or the formula"
    tail = ""
    if formula_err is not None and formula_err > FORMULA_TOL:
        tail = f"; wrong in float64 too (rel_err {formula_err:.1e}): the formula, not rounding"
    aligned = a.cosine > 1 - 1e-6
    m = round(a.scale)
    if aligned and m >= 2 and _near(a.scale, m):
        return f"{a.scale:.3f}x the reference: {' or '.join(_factor_causes(m, n, k))}?{tail}"
    if aligned and a.scale > 0:
        inv = round(1 / a.scale)
        if inv >= 2 and _near(1 / a.scale, inv):
            return f"{a.scale:.3f}x the reference: {' or '.join(_inverse_causes(inv, n, k))}?{tail}"
    if a.cosine < -1 + 1e-6:
        return f"opposite sign ({-a.scale:.3f}x the reference): a flipped sign, ascent for descent?{tail}"
    if aligned and abs(a.scale - 1) < 10 * a.tol:
        return f"rel_err {a.rel_err:.1e} over the tolerance {a.tol:.1e}: rounding beyond calibration?{tail}"
    bad = [k for k, e in a.per_param.items() if not e <= a.tol]
    good = [k for k in a.per_param if k not in bad]
    text = f"wrong direction (cosine {a.cosine:.4f}): disagrees in {', '.join(bad)}"
    text += " (" + ", ".join(f"{k} {a.per_param[k]:.1e}" for k in bad) + ")"
    if good:
        text += f"; agrees in {', '.join(good)}: the error is upstream of those"
    return text + tail
