"""Is a gradient right? Normwise errors against the float64 reference (reference.py), the sizes
its rounding error scales with, calibrated tolerances, a verdict. The sentence naming a likely
bug is `harness.diagnosis`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .problems.base import Problem, Tensors
from .reference import CHUNK_ROWS, rows_of, upcast

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
# Factors from benchmarks/calibrate_tolerances.py (README, "Tolerances"): each is about 4x the
# worst correct gradient measured over every problem x method x pattern, 3 seeds, n up to 1e6,
# correct gradients written unusually and at the least-squares optimum included. The cap keeps
# every planted bug (relative errors of 0.5 and up) a failure in every dtype away from an
# optimum.
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

# relative move of the inputs that input_sensitivity measures the gradient's response to: far
# above float64's roundoff, small enough for the response to be linear
SENSITIVITY_RHO = 2.0**-30

# per-sample gradients are taken this many numbers at a time: on the CPU 2^21 (float64: 16 MB,
# near the caches); on CUDA 2^27 (1 GiB), as each chunk costs tens of kernel launches: at 2^21,
# n = 1e8 and d = 64 took 3,000 chunks and 5 to 9 s of a family's set-up on an H200
_TERMS_CHUNK = {"cpu": 2**21, "cuda": 2**27}


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


@dataclass
class Reference:
    """The float64 gradient, and per parameter the sizes its rounding error scales with.

    `terms`: the root sum of squares of the terms the gradient sums (term_spread): the partial
    sums a long reduction rounds are this large where the terms cancel. `moved`: how far the
    gradient moves per unit relative move of the inputs (input_sensitivity): what rounding the
    inputs and the short sums inside each term costs. Both are as large as the gradient when
    nothing cancels, and far larger near an optimum, where the gradient is tiny and its terms
    are not."""

    grad: Tensors
    terms: dict[str, float]
    moved: dict[str, float]

    def _ratio(self, sizes: dict[str, float], keys) -> float:
        norm = math.sqrt(sum(self.grad[k].double().norm().item() ** 2 for k in keys))
        size = math.sqrt(sum(sizes[k] ** 2 for k in keys))
        if size == 0:
            return 1.0
        return max(1.0, size / norm) if norm > 0 else math.inf

    def condition(self, dtype: torch.dtype, reduction_length: int, keys=None) -> float:
        """What the tolerance of a well-conditioned gradient is multiplied by: each part of
        error_model scaled by its own size over the gradient's, the roundoff u by c_moved, the
        reduction's u_acc sqrt(L) by c_terms, a subnormal 1/L (an error in every term) by the
        larger of the two."""
        keys = list(self.grad) if keys is None else list(keys)
        u, model = UNIT_ROUNDOFF[dtype], error_model(dtype, reduction_length)
        reduction = min(u, UNIT_ROUNDOFF[torch.float32]) * math.sqrt(max(1, reduction_length))
        c_moved, c_terms = self._ratio(self.moved, keys), self._ratio(self.terms, keys)
        subnormal = model - u - reduction
        return (u * c_moved + reduction * c_terms + subnormal * max(c_moved, c_terms)) / model

    def tolerances(self, dtype: torch.dtype, reduction_length: int) -> tuple[float, dict[str, float]]:
        """The tolerance of all parameters at once, and of each."""
        base = tolerance(dtype, reduction_length)
        return (
            base * self.condition(dtype, reduction_length),
            {k: base * self.condition(dtype, reduction_length, [k]) for k in self.grad},
        )

    def formula_tolerances(self) -> tuple[float, dict[str, float]]:
        """FORMULA_TOL scaled the same way, for a float64 twin."""

        def scaled(keys):
            return FORMULA_TOL * max(self._ratio(self.moved, keys), self._ratio(self.terms, keys))

        return scaled(list(self.grad)), {k: scaled([k]) for k in self.grad}


def _row_chunks(problem: Problem, data: Tensors, chunk_rows: int) -> list[tuple[int, int]]:
    rows = problem.rows(data)
    return [(a, min(a + chunk_rows, rows)) for a in range(0, rows, chunk_rows)] if problem.batched else []


def term_spread(problem: Problem, params: Tensors, data: Tensors, grad: Tensors) -> dict[str, float]:
    """Per parameter, sqrt(sum over entries and samples of t^2), t = each sample's term of the
    gradient (its own gradient over n, the loss being a mean over samples), from `data` as
    given (upcast chunk by chunk, on their device). A problem with no sample axis sums no
    terms: its spread is its gradient's norm."""
    own = {k: g.norm().item() for k, g in grad.items()}
    if not problem.batched:
        return own
    rows = problem.rows(data)
    fixed = upcast({k: v for k, v in data.items() if k not in problem.batched}, torch.float64)
    p64 = upcast(params, torch.float64)
    grad_fn = torch.func.grad(problem.loss)
    per_sample = torch.func.vmap(lambda p, row: grad_fn(p, {**fixed, **row}), in_dims=(None, 0))
    device = next(iter(grad.values())).device
    numbers = _TERMS_CHUNK.get(device.type, _TERMS_CHUNK["cpu"])
    if device.type == "cuda":  # at most 1/64 of the device's memory in float64, with room for its copies
        numbers = min(numbers, torch.cuda.get_device_properties(device).total_memory // (8 * 64))
    chunk = max(1, numbers // max(1, sum(g.numel() for g in grad.values())))
    sumsq = {k: torch.zeros((), dtype=torch.float64, device=device) for k in grad}
    try:
        for start, stop in _row_chunks(problem, data, chunk):
            piece = upcast({k: data[k][start:stop].unsqueeze(1) for k in problem.batched}, torch.float64)
            for k, g in per_sample(p64, piece).items():
                sumsq[k] += (g * g).sum()  # on the device: one synchronization at the end, not one a chunk
        total = {k: s.item() for k, s in sumsq.items()}
    except Exception:  # a loss torch.func cannot batch: the normwise tolerance alone
        return own
    return {k: math.sqrt(s) / rows for k, s in total.items()}


def input_sensitivity(
    problem: Problem, params: Tensors, data: Tensors, grad: Tensors, draws: int = 3
) -> dict[str, float]:
    """Per parameter, |g(inputs (1 + rho e)) - g| / rho, e random signs, root mean square over
    `draws`: how much the float64 gradient moves when every input moves by a relative rho.
    Rounding a residual r = Xw - y whose terms are large (a good fit) moves it by u |Xw| + u |y|,
    not u |r|: what `term_spread` misses, this sees. Chunked by rows as the reference is."""
    device = next(iter(grad.values())).device
    gen = torch.Generator(device).manual_seed(0)

    def moved(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point():
            return t
        signs = torch.randint(0, 2, t.shape, generator=gen, device=t.device, dtype=t.dtype) * 2 - 1
        return t * (1 + SENSITIVITY_RHO * signs)

    keys, sumsq = list(grad), dict.fromkeys(grad, 0.0)
    rows = problem.rows(data)
    chunks = _row_chunks(problem, data, CHUNK_ROWS) or [(0, rows)]
    for _ in range(draws):
        p = {k: moved(v).requires_grad_(True) for k, v in upcast(params, torch.float64).items()}
        total = {k: torch.zeros_like(g) for k, g in grad.items()}
        for a, b in chunks:
            piece = data if len(chunks) == 1 else rows_of(problem, data, a, b)
            piece = {k: moved(v) for k, v in upcast(piece, torch.float64).items()}
            for k, g in zip(keys, torch.autograd.grad(problem.loss(p, piece), [p[k] for k in keys])):
                total[k] += g * ((b - a) / rows if len(chunks) > 1 else 1.0)
        for k in keys:
            sumsq[k] += ((total[k] - grad[k]).norm().item() / SENSITIVITY_RHO) ** 2
    return {k: math.sqrt(v / draws) for k, v in sumsq.items()}


def reference_of(problem: Problem, params: Tensors, data: Tensors, grad: Tensors) -> Reference:
    """The reference `grad` (reference.reference_grad of these params and data, in the cell's
    dtype on its device) with the sizes its rounding error scales with."""
    return Reference(
        grad, term_spread(problem, params, data, grad), input_sensitivity(problem, params, data, grad)
    )


@dataclass
class Part:
    """The errors of one parameter's gradient against its reference."""

    rel_err: float
    scale: float  # |g| / |expected|
    cosine: float  # <g, expected> / (|g| |expected|): -1 is a sign error
    sine: float  # |g off the line of expected| / |g|: 0 for a pure scale
    tol: float

    @property
    def agree(self) -> bool:
        return self.rel_err <= self.tol  # NaN compares False: a NaN gradient never agrees

    @property
    def aligned(self) -> bool:
        """On the reference's line within rounding: what is wrong, if anything, is a scale."""
        return self.sine <= self.tol


@dataclass
class Agreement:
    """All parameters at once, each parameter, and the same method's float64 twin."""

    rel_err: float
    max_abs_err: float
    scale: float  # |g| / |expected|
    cosine: float  # <g, expected> / (|g| |expected|): -1 is a sign error
    tol: float
    per_param: dict[str, Part] = field(default_factory=dict)
    twin: Agreement | None = None  # the method run in float64: its formula, without rounding
    diagnosis: str | None = None
    sine: float = math.nan  # |g off the line of expected| / |g|; unknown: from the cosine

    def __post_init__(self):
        if math.isnan(self.sine):
            self.sine = math.sqrt(max(0.0, 1 - self.cosine**2))

    @property
    def aligned(self) -> bool:
        return self.sine <= self.tol

    @property
    def within_tol(self) -> bool:
        return self.rel_err <= self.tol

    @property
    def formula_wrong(self) -> bool:
        return self.twin is not None and not self.twin.within_tol

    @property
    def agree(self) -> bool:
        """Within this dtype's tolerance, and the formula right in float64 where it was run."""
        return self.within_tol and not self.formula_wrong


def _flat(g: Tensors, keys) -> torch.Tensor:
    return torch.cat([g[k].detach().to("cpu", torch.float64).reshape(-1) for k in keys])


def _errors(g: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float, float]:
    """(rel_err, scale, cosine, sine) of g against ref."""
    tiny = torch.finfo(torch.float64).tiny
    ref_norm, g_norm = ref.norm().item(), g.norm().item()
    along = (g @ ref).item() / max(ref_norm, tiny)
    off = (g - along * ref / max(ref_norm, tiny)).norm().item()
    return (
        ((g - ref).norm() / max(ref_norm, tiny)).item(),
        g_norm / max(ref_norm, tiny),
        along / max(g_norm, tiny),
        off / max(g_norm, tiny),
    )


def compare(
    grads: Tensors, reference: Tensors, multiplier: float, tol: float, param_tol: dict | None = None
) -> Agreement:
    """Errors of `grads` against multiplier x `reference`, over all parameters at once and per
    parameter (each against `param_tol[k]`, default `tol`)."""
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
    param_tol = param_tol or {}
    per_param = {
        k: Part(*_errors(_flat(grads, [k]), multiplier * _flat(reference, [k])), tol=param_tol.get(k, tol))
        for k in keys
    }
    rel_err, scale, cosine, sine = _errors(g, ref)
    return Agreement(
        rel_err=rel_err,
        scale=scale,
        cosine=cosine,
        sine=sine,
        tol=tol,
        max_abs_err=(g - ref).abs().max().item() if g.numel() else 0.0,
        per_param=per_param,
    )
