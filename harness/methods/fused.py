"""`fused`: the gradient of linear and logistic regression in one pass over X.

Both are z = X w + b with a loss whose derivative in z is a scale times a link:

    g = s * link(X w + b, y)     linear: s = 2/N, link = z - y;  logistic: s = 1/N, link = sigmoid(z) - y
    dJ/dw = X^T g;   dJ/db = sum g

Eager code, manual or autograd, reads X twice: once for X w, once for X^T g. Both products need
only the rows of one block, so taking X a block of rows at a time, a block small enough to stay
in cache, turns the second read into a cache hit: one pass over memory. On CUDA with Triton, a
kernel holds each tile of rows in registers and does both products on it.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import torch

from .base import Method, register_method

LOW_PRECISION = (torch.float16, torch.bfloat16)

# Bytes of X per block on the CPU: 2 MiB stays within this CPU's 2 MiB L2 per core. Measured on
# the 2-core CPU at N=2^20, D=64 fp32 (quiet machine, 1 or 2 threads alike): 0.5, 1, 2, 4, 8 MiB
# blocks took 21.0, 18.6, 17.7, 18.5, 20.3 ms against 30.9 ms eager. The two gemvs of the blocks
# alone took 17.0 ms: what is left is theirs (X w alone runs at 23 GB/s, a plain sum of X at 44),
# not memory traffic nor the ~7 ops of Python per block.
# Measured again (benchmarks/fused_floor.py, quiet, best of 5): 2 threads, 32 to 33 ms for blocks
# of 1 to 8 MiB, whether each block's X^T g is addmv_, a matmul or addmv_ into a reused buffer,
# against 34 ms eager; 1 thread, about 60 ms for all of them. Against memory's floor (a sum over
# twice the L3: 24 GB/s, 11.4 ms for one read of X and y; a 64 MiB probe had read 50 GB/s from
# the VM's 480 MiB L3) the best blocks, 24 ms, are 2.1x the floor: the gemvs' arithmetic is the
# rest, and a one-pass loop compiled for the CPU is what would close it.
CPU_BLOCK_BYTES = 2 * 2**20
MIN_BLOCK_ROWS = 256  # rows wider than the cache still go in blocks: a loop per row would crawl


@dataclass(frozen=True)
class Link:
    """dJ/dz = (numerator / N) * link(z, y) of one problem."""

    numerator: float
    sigmoid: bool  # link = sigmoid(z) - y; otherwise z - y


# The problems `fused` knows how to do, by name; others are skipped with SKIP_REASON.
LINKS = {"linear": Link(2.0, sigmoid=False), "logistic": Link(1.0, sigmoid=True)}
SKIP_REASON = "fused is written for linear and logistic"


def block_rows(d: int, itemsize: int, device: torch.device) -> int:
    """Rows of X per block: a block of about the cache budget of the device."""
    budget = CPU_BLOCK_BYTES
    if device.type == "cuda":
        # a quarter of L2 (H100: 50 MB): the block and the gemv's own traffic stay resident
        budget = torch.cuda.get_device_properties(device).L2_cache_size // 4
    return max(MIN_BLOCK_ROWS, budget // max(1, d * itemsize))


def _residual(Xb, yb, w, b, link: Link, s: float) -> torch.Tensor:
    """g of one block of rows: the first read of Xb, from memory."""
    gb = torch.addmv(b, Xb, w)  # z
    if link.sigmoid:
        gb.sigmoid_()
    return gb.sub_(yb).mul_(s)  # s before the long sums, as the manual gradient does: float16 stays finite


def blocked_grad(X, y, w, b, link: Link, rows: int | None = None) -> dict[str, torch.Tensor]:
    """{"w": X^T g, "b": sum g} with g = s link(X w + b, y), X read one block of rows at a time."""
    n, d = X.shape
    rows = rows or block_rows(d, X.element_size(), X.device)
    s = link.numerator / n
    if n <= rows:  # X fits in one block: the eager formula already reads it once from memory
        g = _residual(X, y, w, b, link, s)
        return {"w": X.T @ g, "b": g.sum().reshape(1)}
    # float16 and bfloat16 sum the blocks in float32: n/rows roundings of partial sums in the
    # low dtype would add up to more than eager's one
    acc_dtype = torch.float32 if X.dtype in LOW_PRECISION else X.dtype
    dw = torch.zeros(d, dtype=acc_dtype, device=X.device)
    db = torch.zeros((), dtype=acc_dtype, device=X.device)
    for Xb, yb in zip(X.split(rows), y.split(rows)):
        gb = _residual(Xb, yb, w, b, link, s)
        # X^T g of the block: the second read of Xb, from cache
        if acc_dtype == X.dtype:
            dw.addmv_(Xb.T, gb)
        else:
            dw.add_(Xb.T @ gb)
        db.add_(gb.sum(dtype=acc_dtype))
    return {"w": dw.to(X.dtype), "b": db.to(X.dtype).reshape(1)}


def fused_grad(X, y, w, b, link: Link) -> dict[str, torch.Tensor]:
    """The one-pass gradient by the best way the device has: Triton on CUDA, blocks otherwise."""
    if X.device.type == "cuda" and triton_fits(X):
        return triton_grad(X, y, w, b, link)
    return blocked_grad(X, y, w, b, link)


@register_method
class Fused(Method):
    """One pass over X: row blocks that stay in cache (CPU), or a Triton kernel (CUDA)."""

    name = "fused"
    hand_written = True
    order, color, marker = 20, "#8c564b", "X"

    @classmethod
    def skip_reason(cls, problem, dtype, device):
        if problem.name not in LINKS:
            return SKIP_REASON
        return super().skip_reason(problem, dtype, device)

    def __init__(self, problem, params, data):
        super().__init__(problem, params, data)
        self.link = LINKS[problem.name]

    def grads_of(self, batch):
        return fused_grad(batch["X"], batch["y"], self.params["w"], self.params["b"], self.link)


# --- Triton, on CUDA only (or on the CPU under TRITON_INTERPRET=1, for tests) -------------------

TRITON_MAX_D = 1024  # a tile holds whole rows in registers: BLOCK_N x next_pow2(D)
TRITON_TILE = 8192  # elements per tile

# Programs launched per SM, by dtype: each strides over tiles, so enough of them must be in flight
# per SM to hide memory latency. Measured on an H200 (fp32, n = 1e7, d = 64): 1, 2, 4, 8, 16 per SM
# (132 to 2112 programs) took 1.49, 0.92, 0.68, 0.69, 0.68 ms, 4 reaching the plateau at 0.90 of
# the read floor; bf16 at 4 per SM took 0.42 ms, 0.72 of its floor: untuned (the tile's bytes halve
# in bf16, so more programs or a wider tile are the candidates). `benchmarks/fused_floor.py
# --device cuda --n 10000000 --dtypes float32,bfloat16` measures the row of each dtype.
TRITON_PROGRAMS_PER_SM = {torch.float32: 4, torch.bfloat16: 4, torch.float16: 4, torch.float64: 4}


@functools.cache
def triton_available() -> bool:
    # found, not imported: the import is for the first kernel launch
    return importlib.util.find_spec("triton") is not None


def triton_fits(X: torch.Tensor) -> bool:
    return triton_available() and X.dim() == 2 and X.shape[1] <= TRITON_MAX_D and X.stride(1) == 1


triton = tl = None  # imported on first use: `import harness` stays free of triton's import time


@functools.cache
def _kernel():
    # module globals, not locals: Triton resolves (and its interpreter patches) the kernel's
    # names in the module's namespace
    global triton, tl
    import triton
    import triton.language as tl

    @triton.jit
    def glm_grad(
        X, y, w, b, dw_part, db_part, n, d, stride_n,
        SIGMOID: tl.constexpr, ACC_F64: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        # each program strides over tiles of rows; per tile, X is loaded once and used twice:
        # z = x w + b, then dw += x^T link(z, y); unscaled partial sums go to its row of dw_part
        # (the sums are float32 or float64, so s = numerator / n can wait until the end, in the
        # accumulation dtype: a Python float argument would reach the kernel as float32)
        acc_t = tl.float64 if ACC_F64 else tl.float32
        pid = tl.program_id(0)
        cols = tl.arange(0, BLOCK_D)
        cmask = cols < d
        wv = tl.load(w + cols, mask=cmask, other=0.0).to(acc_t)
        bv = tl.load(b).to(acc_t)
        dw = tl.zeros([BLOCK_D], dtype=acc_t)
        db = tl.zeros([BLOCK_N], dtype=acc_t)
        for start in range(pid * BLOCK_N, n, tl.num_programs(0) * BLOCK_N):
            rows = start + tl.arange(0, BLOCK_N)
            rmask = rows < n
            # int64 offsets: at n = 1e8, d = 64, X has 6.4e9 elements, past int32
            offsets = rows.to(tl.int64)[:, None] * stride_n + cols[None, :]
            x = tl.load(X + offsets, mask=rmask[:, None] & cmask[None, :], other=0.0).to(acc_t)
            z = tl.sum(x * wv[None, :], axis=1) + bv
            if SIGMOID:
                z = 1.0 / (1.0 + tl.exp(-z))
            yv = tl.load(y + rows, mask=rmask, other=0.0).to(acc_t)
            g = tl.where(rmask, z - yv, 0.0)
            dw += tl.sum(x * g[:, None], axis=0)
            db += g
        tl.store(dw_part + pid * BLOCK_D + cols, dw, mask=cmask)
        tl.store(db_part + pid, tl.sum(db, axis=0))

    return glm_grad


def triton_grad(X, y, w, b, link: Link, programs: int | None = None) -> dict[str, torch.Tensor]:
    """The one-pass gradient as one Triton kernel plus a sum over its programs' partials."""
    kernel = _kernel()
    n, d = X.shape
    block_d = triton.next_power_of_2(d)
    block_n = max(1, min(256, TRITON_TILE // block_d))
    if programs is None:  # a few programs per SM, each striding over many tiles
        sms = torch.cuda.get_device_properties(X.device).multi_processor_count if X.is_cuda else 4
        programs = TRITON_PROGRAMS_PER_SM.get(X.dtype, 4) * sms
    programs = max(1, min(programs, triton.cdiv(n, block_n)))
    acc_dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    dw_part = torch.empty(programs, block_d, dtype=acc_dtype, device=X.device)
    db_part = torch.empty(programs, dtype=acc_dtype, device=X.device)
    kernel[(programs,)](
        X, y.contiguous(), w.contiguous(), b, dw_part, db_part, n, d, X.stride(0),
        SIGMOID=link.sigmoid, ACC_F64=acc_dtype == torch.float64, BLOCK_N=block_n, BLOCK_D=block_d,
    )  # fmt: skip
    s = link.numerator / n
    dw, db = dw_part[:, :d].sum(0).mul_(s), db_part.sum().mul_(s)
    return {"w": dw.to(X.dtype), "b": db.to(X.dtype).reshape(1)}
