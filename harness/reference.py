"""The float64 reference gradient, computed where the cell's data live, in chunks of rows.

The reference is autograd in float64 from the cell's inputs already rounded to its dtype and
then upcast, so that what is measured is the error of the computation alone, not of rounding the
inputs (which alone is 1.3e-3 in bfloat16). A float64 copy of the data doubles (or quadruples, for
half types) their memory: at n = 1e8, d = 64 that is 51 GB beside 25.6 GB of float32. For a
problem whose loss is a mean over its samples (`batched` data), the gradient over N rows is the
weighted sum of the gradients of row chunks,

    grad J = sum_i (n_i / N) grad J_i,        J_i the mean loss over chunk i of n_i rows,

the uneven pattern's own algebra, so only one chunk is ever in float64 and memory stays near the
cell's own data. Problems without a sample axis are small and take one piece.
"""

from __future__ import annotations

import torch

from .problems.base import Problem, Tensors

# rows per float64 chunk: 2^20 rows of d = 64 are 512 MiB in float64, 2x that with autograd's
# saved tensors; small against any device that holds the data, large enough that the Python
# loop over chunks is cheap (100 chunks at n = 1e8)
CHUNK_ROWS = 2**20
# the float64 twin of a method (the formula check) runs on at most this many rows: a formula
# that is wrong is wrong on any sample, and a twin at n = 1e8 would need the float64 copy whole
TWIN_ROWS = 2**16


def upcast(tensors: Tensors, dtype: torch.dtype) -> Tensors:
    """Rounded to `dtype` (a no-op when they are already), then float64."""
    return {k: v.detach().to(dtype).to(torch.float64) for k, v in tensors.items()}


def rows_of(problem: Problem, data: Tensors, start: int, stop: int) -> Tensors:
    """Rows start:stop of the batched data (views), the rest whole."""
    return {k: (v[start:stop] if k in problem.batched else v) for k, v in data.items()}


def reference_grad(problem: Problem, params: Tensors, data: Tensors, chunk_rows: int = CHUNK_ROWS) -> Tensors:
    """d loss / d params in float64 from `params` and `data` as given (their dtype's rounding
    kept), on their device, chunk by chunk of rows where the loss is a mean over samples."""
    p64 = {k: v.detach().to(torch.float64).requires_grad_(True) for k, v in params.items()}
    keys = list(p64)
    rows = problem.rows(data)
    chunks = [(a, min(a + chunk_rows, rows)) for a in range(0, rows, chunk_rows)] if problem.batched else []
    if len(chunks) <= 1:
        chunks = [(0, rows)]
    total: dict[str, torch.Tensor] = {}
    for a, b in chunks:
        piece = upcast(rows_of(problem, data, a, b) if len(chunks) > 1 else data, torch.float64)
        grads = torch.autograd.grad(problem.loss(p64, piece), [p64[k] for k in keys])
        weight = (b - a) / rows if len(chunks) > 1 else 1.0
        for k, g in zip(keys, grads):
            total[k] = total[k].add_(g, alpha=weight) if k in total else g * weight
    return total


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
