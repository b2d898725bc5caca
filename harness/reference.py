"""The float64 truth of a family, and what its condition allows: the reference gradient and loss,
the sizes their rounding error scales with, the tolerances they give (by harness.tolerance's
error model), the float64 twin's inputs.

The reference is autograd of the problem's plain `loss` in float64, from the cell's inputs
already rounded to its dtype and then upcast, so that what is measured is the error of the
computation alone, not of rounding the inputs (which alone is 1.3e-3 in bfloat16). A user's own
Function never computes it: a wrong backward would be its own judge.

A float64 copy of the data doubles (or quadruples, for half types) their memory: at n = 1e8,
d = 64 that is 51 GB beside 25.6 GB of float32. For a problem whose loss is a mean over its
samples (`batched` data), the gradient over N rows is the weighted sum of the gradients of row
chunks,

    grad J = sum_i (I_i / I) grad J_i,        J_i the mean loss over chunk i, which holds I_i of
                                              the I items the loss is a mean over (Problem.items:
                                              its n_i rows by default),

the uneven pattern's own algebra, so only one chunk is ever in float64 and memory stays near the
cell's own data; a chunk with no items (all padding) adds nothing. Problems without a sample
axis are small and take one piece. Integer data (class labels) are never rounded nor upcast:
they are indices, not numbers to round.

`Truth.of` is what a family builds once; `harness.agreement` compares a gradient with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .problems.base import Problem, Tensors, items_of
from .tolerance import FORMULA_TOL, condition, ratio, tolerance

# float64 numbers per chunk of rows: 2^26 (512 MiB, 2x that with autograd's saved tensors) is
# 2^20 rows of d = 64, small against any device that holds the data, large enough that the
# Python loop over chunks is cheap (100 chunks at n = 1e8, d = 64)
CHUNK_NUMBERS = 2**26
# the float64 twin of a method (the formula check) runs on at most this many rows: a formula
# that is wrong is wrong on any sample, and a twin at n = 1e8 would need the float64 copy whole
TWIN_ROWS = 2**16

# relative move of the inputs that input_sensitivity measures the gradient's response to: far
# above float64's roundoff, small enough for the response to be linear
SENSITIVITY_RHO = 2.0**-30

# per-sample gradients are taken this many numbers at a time: on the CPU 2^21 (float64: 16 MB,
# near the caches); on CUDA 2^27 (1 GiB), as each chunk costs tens of kernel launches: at 2^21,
# n = 1e8 and d = 64 took 3,000 chunks and 5 to 9 s of a family's set-up on an H200
_TERMS_CHUNK = {"cpu": 2**21, "cuda": 2**27}


# -- the reference -----------------------------------------------------------------------------


def upcast(tensors: Tensors, dtype: torch.dtype) -> Tensors:
    """Rounded to `dtype` (a no-op when they are already), then float64; integer tensors (labels)
    as they are."""
    return {
        k: v.detach().to(dtype).to(torch.float64) if v.is_floating_point() else v.detach()
        for k, v in tensors.items()
    }


def rows_of(problem: Problem, data: Tensors, start: int, stop: int) -> Tensors:
    """Rows start:stop of the batched data (views), the rest whole."""
    return problem.rows_of(data, start, stop)


def chunk_rows_of(problem: Problem) -> int:
    """Rows per float64 chunk: CHUNK_NUMBERS over the numbers a sample holds."""
    return max(1, CHUNK_NUMBERS // max(1, problem.row_width()))


def row_chunks(problem: Problem, data: Tensors, chunk_rows: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) of the chunks of rows; one piece, (0, rows), for a problem with no sample
    axis or data that fit one chunk."""
    rows = problem.rows(data)
    chunk_rows = chunk_rows or chunk_rows_of(problem)
    if not problem.batched or rows <= chunk_rows:
        return [(0, rows)]
    return [(a, min(a + chunk_rows, rows)) for a in range(0, rows, chunk_rows)]


def _pieces(problem: Problem, data: Tensors, chunks: list[tuple[int, int]]):
    """(float64 piece, weight I_i / I) of each chunk that holds items (Problem.items)."""
    if len(chunks) == 1:
        yield upcast(data, torch.float64), 1.0
        return
    total = items_of(problem, data)
    for a, b in chunks:
        piece = rows_of(problem, data, a, b)
        held = items_of(problem, piece)
        if held:  # a chunk of padding alone: its mean is 0/0, its share of the loss nothing
            yield upcast(piece, torch.float64), held / total


def reference(
    problem: Problem, params: Tensors, data: Tensors, chunk_rows: int | None = None
) -> tuple[torch.Tensor, Tensors]:
    """(loss, d loss / d params) in float64, by autograd of the plain `loss`, from `params` and
    `data` as given (their dtype's rounding kept), on their device, chunk by chunk of rows where
    the loss is a mean over samples."""
    p64 = {k: v.detach().to(torch.float64).requires_grad_(True) for k, v in params.items()}
    keys = list(p64)
    total: dict[str, torch.Tensor] = {}
    value = None
    for piece, weight in _pieces(problem, data, row_chunks(problem, data, chunk_rows)):
        loss = problem.loss(p64, piece)
        grads = torch.autograd.grad(loss, [p64[k] for k in keys])
        value = loss.detach() * weight if value is None else value + loss.detach() * weight
        for k, g in zip(keys, grads):
            total[k] = total[k].add_(g, alpha=weight) if k in total else g * weight
    return value, total


def reference_grad(
    problem: Problem, params: Tensors, data: Tensors, chunk_rows: int | None = None
) -> Tensors:
    """d loss / d params in float64 (see `reference`)."""
    return reference(problem, params, data, chunk_rows)[1]


# -- the sizes its rounding error scales with --------------------------------------------------


def term_spread(problem: Problem, params: Tensors, data: Tensors, grad: Tensors) -> dict[str, float]:
    """Per parameter, sqrt(sum over entries and samples of t^2), t = each sample's term of the
    gradient (items_i grad loss_i / I: its own gradient weighted by its share of the items the
    loss is a mean over, 1 / n for a mean over rows), from `data` as given (upcast chunk by
    chunk, on their device). A problem with no sample axis sums no terms: its spread is its
    gradient's norm. A problem that knows its per-sample sum of squares in closed form
    (`Problem.per_sample_sumsq`: outer products, for a model linear in its inputs) gives it at
    the cost of about one gradient; the rest take per-sample gradients with torch.func,
    n x |params| numbers."""
    own = {k: g.norm().item() for k, g in grad.items()}
    if not problem.batched:
        return own
    device = next(iter(grad.values())).device
    p64 = upcast(params, torch.float64)
    sumsq = {k: torch.zeros((), dtype=torch.float64, device=device) for k in grad}
    try:
        if problem.has_per_sample_sumsq():
            for piece, _ in _pieces(problem, data, row_chunks(problem, data)):
                for k, s in problem.per_sample_sumsq(p64, piece).items():
                    sumsq[k] += s
        else:
            _per_sample_sumsq(problem, p64, data, grad, sumsq, device)
        total = {k: s.item() for k, s in sumsq.items()}  # one synchronization at the end
    except Exception:  # a loss torch.func cannot batch: the normwise tolerance alone
        return own
    items = items_of(problem, data)
    return {k: math.sqrt(s) / items for k, s in total.items()}


def _batched_rows(problem: Problem, data: Tensors, start: int, stop: int) -> Tensors:
    """Rows start:stop of the batched data in float64, each a batch of one (for vmap)."""
    return upcast(
        {k: v[start:stop].unsqueeze(1) for k, v in data.items() if k in problem.batched}, torch.float64
    )


def _row_items(problem: Problem, fixed: Tensors):
    """A vmap-ed function of rows giving each row's items (Problem.items of the row alone), or
    None where each row is one item (a mean over rows)."""
    if not problem.has_items():
        return None
    return torch.func.vmap(lambda row: torch.as_tensor(problem.items({**fixed, **row}), dtype=torch.float64))


def _weighted_by_items(per_row: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
    """per_row (a number per row) times items_i^2, 0 for a row without items (whose own loss,
    a mean over nothing, is NaN)."""
    if items is None:
        return per_row
    return torch.where(items > 0, per_row * items * items, torch.zeros_like(per_row))


def _per_sample_sumsq(problem, p64, data, grad, sumsq, device) -> None:
    fixed = upcast({k: v for k, v in data.items() if k not in problem.batched}, torch.float64)
    grad_fn = torch.func.grad(problem.loss)
    per_sample = torch.func.vmap(lambda p, row: grad_fn(p, {**fixed, **row}), in_dims=(None, 0))
    row_items = _row_items(problem, fixed)
    numbers = _TERMS_CHUNK.get(device.type, _TERMS_CHUNK["cpu"])
    if device.type == "cuda":  # at most 1/64 of the device's memory in float64, with room for its copies
        numbers = min(numbers, torch.cuda.get_device_properties(device).total_memory // (8 * 64))
    chunk = max(1, numbers // max(1, sum(g.numel() for g in grad.values())))
    for start, stop in row_chunks(problem, data, chunk):
        piece = _batched_rows(problem, data, start, stop)
        items = row_items(piece) if row_items is not None else None
        for k, g in per_sample(p64, piece).items():
            per_row = (g * g).reshape(g.shape[0], -1).sum(1)
            # on the device: one synchronization at the end, not one a chunk
            sumsq[k] += _weighted_by_items(per_row, items).sum()


def loss_spread(problem: Problem, params: Tensors, data: Tensors, loss: float) -> float:
    """sqrt(sum over samples of (items_i l_i / I)^2), l_i each sample's own loss (1 / n for a
    mean over rows): what the loss's long sum rounds, as term_spread for the gradient; |loss|
    when the problem has no sample axis or torch.func cannot batch its loss."""
    if not problem.batched:
        return abs(loss)
    p64 = upcast(params, torch.float64)
    fixed = upcast({k: v for k, v in data.items() if k not in problem.batched}, torch.float64)
    per_sample = torch.func.vmap(lambda p, row: problem.loss(p, {**fixed, **row}), in_dims=(None, 0))
    total = 0.0
    try:
        row_items = _row_items(problem, fixed)
        for start, stop in row_chunks(problem, data):
            piece = _batched_rows(problem, data, start, stop)
            items = row_items(piece) if row_items is not None else None
            total += _weighted_by_items(per_sample(p64, piece) ** 2, items).sum().item()
    except Exception:
        return abs(loss)
    return math.sqrt(total) / items_of(problem, data)


def input_sensitivity(
    problem: Problem, params: Tensors, data: Tensors, grad: Tensors, loss: float | None = None, draws: int = 3
) -> tuple[dict[str, float], float]:
    """Per parameter, |g(inputs (1 + rho e)) - g| / rho, e random signs, root mean square over
    `draws`: how much the float64 gradient moves when every input moves by a relative rho; and
    the same of the loss. Rounding a residual r = Xw - y whose terms are large (a good fit) moves
    it by u |Xw| + u |y|, not u |r|: what `term_spread` misses, this sees. Chunked by rows as
    the reference is; integer data (labels) are not moved."""
    device = next(iter(grad.values())).device
    gen = torch.Generator(device).manual_seed(0)

    def moved(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point():
            return t
        # drawn as int8 (a quarter of the time of float64 draws on the CPU), then 1 +- rho
        signs = torch.randint(0, 2, t.shape, generator=gen, device=t.device, dtype=torch.int8)
        return t * signs.to(t.dtype).mul_(2 * SENSITIVITY_RHO).add_(1 - SENSITIVITY_RHO)

    keys, sumsq, loss_sumsq = list(grad), dict.fromkeys(grad, 0.0), 0.0
    chunks = row_chunks(problem, data)
    for _ in range(draws):
        p = {k: moved(v).requires_grad_(True) for k, v in upcast(params, torch.float64).items()}
        total = {k: torch.zeros_like(g) for k, g in grad.items()}
        value = torch.zeros((), dtype=torch.float64, device=device)
        for piece, weight in _pieces(problem, data, chunks):
            out = problem.loss(p, {k: moved(v) for k, v in piece.items()})
            for k, g in zip(keys, torch.autograd.grad(out, [p[k] for k in keys])):
                total[k] += g * weight
            value += out.detach() * weight
        for k in keys:
            sumsq[k] += ((total[k] - grad[k]).norm().item() / SENSITIVITY_RHO) ** 2
        if loss is not None:
            loss_sumsq += ((value.item() - loss) / SENSITIVITY_RHO) ** 2
    return {k: math.sqrt(v / draws) for k, v in sumsq.items()}, math.sqrt(loss_sumsq / draws)


@dataclass
class Reference:
    """The float64 gradient and loss, and per parameter the sizes their rounding error scales
    with.

    `terms`: the root sum of squares of the terms the gradient sums (term_spread): the partial
    sums a long reduction rounds are this large where the terms cancel. `moved`: how far the
    gradient moves per unit relative move of the inputs (input_sensitivity): what rounding the
    inputs and the short sums inside each term costs. Both are as large as the gradient when
    nothing cancels, and far larger near an optimum, where the gradient is tiny and its terms
    are not. `loss_terms` and `loss_moved` are the same sizes of the loss."""

    grad: Tensors
    terms: dict[str, float]
    moved: dict[str, float]
    loss: float = math.nan
    loss_terms: float = 0.0
    loss_moved: float = 0.0

    def _ratio(self, sizes: dict[str, float], keys) -> float:
        norm = math.sqrt(sum(self.grad[k].double().norm().item() ** 2 for k in keys))
        return ratio(math.sqrt(sum(sizes[k] ** 2 for k in keys)), norm)

    def condition(self, dtype: torch.dtype, reduction_length: int, keys=None) -> float:
        """What the tolerance of a well-conditioned gradient is multiplied by (tolerance.condition)."""
        keys = list(self.grad) if keys is None else list(keys)
        c_moved, c_terms = self._ratio(self.moved, keys), self._ratio(self.terms, keys)
        return condition(dtype, reduction_length, c_moved, c_terms)

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

    def loss_tolerance(self, dtype: torch.dtype, reduction_length: int) -> float:
        """The tolerance of the loss a Function's forward returns, on its relative error: the
        gradient's model with the loss's own condition."""
        loss = abs(self.loss)
        c_moved, c_terms = ratio(self.loss_moved, loss), ratio(self.loss_terms, loss)
        return tolerance(dtype, reduction_length) * condition(dtype, reduction_length, c_moved, c_terms)


def reference_of(
    problem: Problem,
    params: Tensors,
    data: Tensors,
    chunk_rows: int | None = None,
    of_loss: bool = True,
) -> Reference:
    """The reference of these params and data (in the cell's dtype, on its device) with the sizes
    its rounding error scales with; those of the loss only `of_loss` (a family that checks a
    Function's forward: the per-sample losses are one more pass over the data)."""
    loss, grad = reference(problem, params, data, chunk_rows)
    value = loss.item()
    moved, loss_moved = input_sensitivity(problem, params, data, grad, value if of_loss else None)
    return Reference(
        grad=grad,
        terms=term_spread(problem, params, data, grad),
        moved=moved,
        loss=value,
        loss_terms=loss_spread(problem, params, data, value) if of_loss else 0.0,
        loss_moved=loss_moved,
    )


# -- the float64 twin --------------------------------------------------------------------------


def twin_inputs(
    problem: Problem, params: Tensors, data: Tensors, multiple: int = 1, rows: int | None = None
) -> tuple[Problem, Tensors, Tensors]:
    """(problem, params64, data64) for a method's float64 twin: the whole data when they are
    small, else their first rows (a multiple of `multiple`, the pattern's k, so that equal
    micro-batches stay equal) as a problem of that many samples."""
    rows = TWIN_ROWS if rows is None else rows
    rows -= rows % multiple
    if problem.batched and problem.rows(data) > rows:
        data = rows_of(problem, data, 0, rows)
        problem = problem.with_rows(rows)
    return problem, upcast(params, torch.float64), upcast(data, torch.float64)


@dataclass
class Truth:
    """What a family's checks are held against, built once: the reference and its tolerances,
    the float64 twin's inputs and their reference."""

    reference: Reference
    tol: float  # of all parameters at once; per parameter in param_tol
    param_tol: dict[str, float]
    condition: float  # what cancellation multiplied the tolerance by
    formula_tol: float  # of the float64 twin
    formula_param_tol: dict[str, float]
    loss_tol: float | None  # of the loss a Function's forward returns (where the family checks one)
    twin: tuple[Problem, Tensors, Tensors]
    twin_reference: Tensors

    @classmethod
    def of(
        cls,
        problem: Problem,
        params: Tensors,
        data: Tensors,
        dtype: torch.dtype,
        multiple: int = 1,
        of_loss: bool = False,
    ) -> Truth:
        """The truth of a family in `dtype`; `multiple` is the pattern's k where it splits samples,
        `of_loss` whether a method of the family returns a loss of its own to check."""
        ref = reference_of(problem, params, data, of_loss=of_loss)
        length = problem.reduction_length()
        tol, param_tol = ref.tolerances(dtype, length)
        formula_tol, formula_param_tol = ref.formula_tolerances()
        twin = twin_inputs(problem, params, data, multiple=multiple)
        return cls(
            reference=ref,
            tol=tol,
            param_tol=param_tol,
            condition=tol / tolerance(dtype, length),
            formula_tol=formula_tol,
            formula_param_tol=formula_param_tol,
            loss_tol=ref.loss_tolerance(dtype, length) if of_loss else None,
            twin=twin,
            # on the whole data, the twin's reference is the reference, up to float64 rounding
            twin_reference=ref.grad if twin[0] is problem else reference_grad(*twin),
        )
