"""Softmax regression, the shape of a language model's head: logits X W + b over c classes,
cross-entropy against integer labels, a mean over the valid targets (labels other than
ignore_index). Its `function_loss` is a chunked fused linear + cross-entropy Function, the
memory-saving technique of Liger-Kernel's FusedLinearCrossEntropy.

Data sets: `random`, every label valid; `padded`, a language model's batch of sequences sorted by
length, ignore_index on the last quarter of the rows (padding) and on a random tenth of the rest
(prompt tokens), so that microbatch:4 has a micro-batch with no target at all; `weighted`, a
random positive weight per row, J = sum_i w_i l_i / sum_i w_i, whose Function returns one loss per
row (reduction='none') and takes one grad_output per row in its backward."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import Problem, normal, register_problem, uniform

IGNORE_INDEX = -100  # F.cross_entropy's default: a target that is not one (padding, prompt)
PROMPT = 0.1  # the share of the unpadded rows whose targets are masked


@register_problem
class Softmax(Problem):
    """z = X W + b, X of n x d, W of d x c; J = mean cross-entropy of softmax(z) against labels y."""

    name = "softmax"
    sizes = ("n", "d", "c")
    batched = ("X", "y", "w")
    datasets = ("random", "padded", "weighted")
    sample_weights = "w"  # of the weighted data set
    # the forward is one n x d x c product; the gradient adds X^T (P - Y), a second one
    expected_cost_ratio, expected_cost_ratio_why = 2.0, "the gradient adds a second n x d x c product"

    def make(self, gen):
        X = normal(gen, self.n, self.d)
        # labels drawn from a teacher of the same shape (Gumbel-max, a block of rows at a time so
        # that no n x c array is ever made): the model's probabilities are neither uniform nor one-hot
        W_true = 2 * normal(gen, self.d, self.c) / math.sqrt(self.d)
        rows = max(1, 2**24 // self.c)
        labels = []
        for a in range(0, self.n, rows):
            z = X[a : a + rows] @ W_true
            gumbel = -torch.log(-torch.log(uniform(gen, *z.shape).clamp_min(1e-20)))
            labels.append((z + gumbel).argmax(1))
        params = {"W": normal(gen, self.d, self.c) / math.sqrt(self.d), "b": 0.5 * normal(gen, self.c)}
        data = {"X": X, "y": torch.cat(labels)}
        if self.data == "padded":  # drawn after the random set's numbers, which stay as they were
            y, kept = data["y"], self.n - self.n // 4
            y[kept:] = IGNORE_INDEX
            y[:kept][uniform(gen, kept) < PROMPT] = IGNORE_INDEX
        elif self.data == "weighted":
            data["w"] = 0.1 + uniform(gen, self.n)
        return params, data

    def output(self, p, data):
        return torch.addmm(p["b"], data["X"], p["W"])

    def loss(self, p, data):
        z = torch.addmm(p["b"], data["X"], p["W"])
        if "w" in data:
            return (data["w"] * F.cross_entropy(z, data["y"], reduction="none")).sum() / data["w"].sum()
        return F.cross_entropy(z, data["y"], ignore_index=IGNORE_INDEX)

    def items(self, data):
        """The valid targets; the total weight of a weighted mean."""
        if "w" in data:
            return data["w"].sum(dtype=torch.float64)
        return (data["y"] != IGNORE_INDEX).sum()

    def shares(self, data) -> torch.Tensor:
        """Each row's share of the loss, a_i: 1 / items for a valid target and 0 for an ignored
        one; w_i / sum w in a weighted mean. In float32 at least: 1 / items is below float16's
        smallest normal from 16384 items, as a mean's 1/n is (harness.tolerance)."""
        dtype = torch.promote_types(data["X"].dtype, torch.float32)
        held = data["w"].to(dtype) if "w" in data else (data["y"] != IGNORE_INDEX).to(dtype)
        return held / held.sum()

    # P = softmax(X W + b), Y = onehot(y), a_i each row's share of the mean (shares):
    # dJ/dW = X^T diag(a) (P - Y);  dJ/db = sum_rows diag(a) (P - Y)
    def manual_grad(self, p, data):
        X, y = data["X"], data["y"]
        G = torch.softmax(torch.addmm(p["b"], X, p["W"]), dim=1)
        G[torch.arange(len(y), device=y.device), y.clamp_min(0)] -= 1  # an ignored row is zeroed next
        G *= self.shares(data)[:, None]
        return {"W": X.T @ G, "b": G.sum(0)}

    def numpy_grad(self, p, data):
        X, y = data["X"], data["y"]
        z = X @ p["W"] + p["b"]
        G = np.exp(z - z.max(1, keepdims=True))
        G /= G.sum(1, keepdims=True)
        G[np.arange(len(y)), np.maximum(y, 0)] -= 1
        if "w" in data:
            a = data["w"] / data["w"].sum()
        else:
            valid = (y != IGNORE_INDEX).astype(X.dtype)
            a = valid / valid.sum()
        G *= a[:, None]
        return {"W": X.T @ G, "b": G.sum(0)}

    def function_loss(self, p, data):
        if "w" in data:  # one loss per row, and one grad_output per row in the backward
            per_row = ChunkedLinearCrossEntropy.apply(data["X"], p["W"], p["b"], data["y"], "none")
            return (data["w"] * per_row).sum() / data["w"].sum()
        return ChunkedLinearCrossEntropy.apply(data["X"], p["W"], p["b"], data["y"])

    # each sample's gradient is an outer product, x_i r_i^T for W and r_i for b (r_i = p_i - y_i),
    # scaled by its items (1, or 0 for an ignored target; w_i when weighted), so
    # sum_i |x_i r_i^T|^2 = sum_i |x_i|^2 |r_i|^2: one pass over the residuals, not n x d x c numbers
    def per_sample_sumsq(self, p, data):
        X, y = data["X"], data["y"]
        R = torch.softmax(torch.addmm(p["b"], X, p["W"]), dim=1)
        R[torch.arange(len(y), device=y.device), y.clamp_min(0)] -= 1
        held = data["w"] if "w" in data else (y != IGNORE_INDEX).to(X.dtype)
        r2 = (R * R).sum(1) * held * held
        return {"W": ((X * X).sum(1) * r2).sum(), "b": r2.sum()}

    def min_bytes(self, itemsize):
        # one read of X, W and b in the cell's dtype, and of the int64 labels (and weights)
        weights = self.n * itemsize if self.data == "weighted" else 0
        return (self.n * self.d + self.d * self.c + self.c) * itemsize + 8 * self.n + weights

    def flops(self):
        # the logits X W (2 n d c) and dJ/dW = X^T G (2 n d c); the softmax and b are O(n c)
        return 4 * self.n * self.d * self.c


def block_rows(n: int, d: int, c: int) -> int:
    """Rows per block: a block's logits about as many numbers as X holds (n x d), a power of 2,
    the rule of Liger-Kernel's FusedLinearCrossEntropy: memory near the inputs', and blocks
    few enough that accumulating dW across them stays cheap. At least MIN_BLOCK_ROWS: below,
    the ten or so ops a block costs are the time (8 blocks of 64 rows took 2.5 ms where autograd's
    whole step took 1 ms, n = 512, d = 32, c = 256 on the CPU)."""
    return min(n, max(MIN_BLOCK_ROWS, 2 ** max(0, math.ceil(math.log2(max(1.0, n * d / c))))))


MIN_BLOCK_ROWS = 256


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """cross-entropy(X W + b, y), block of rows by block, targets equal to ignore_index left out.

    reduction 'mean' (a mean over the valid targets): the forward computes each block's logits,
    its loss and its gradients, frees the logits, and keeps only the gradients; the n x c
    probabilities are never whole, and `backward` scales the gradients by its incoming gradient.
    A block with no valid target adds zeros, never 0/0.

    reduction 'none' (one loss per row, 0 for an ignored target): the gradient of row i must be
    scaled by its own grad_output[i], unknown in the forward, so the forward keeps each row's
    log-sum-exp alone and `backward` computes the blocks' logits again."""

    @staticmethod
    def forward(ctx, X, W, b, y, reduction="mean"):
        n, d = X.shape
        c = W.shape[1]
        # half types accumulate in float32, as their matmuls do inside
        acc = torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else X.dtype
        rows = block_rows(n, d, c)
        ctx.reduction, ctx.acc, ctx.rows = reduction, acc, rows
        if reduction == "none":
            lse = torch.empty(n, dtype=acc, device=X.device)
            losses = torch.empty(n, dtype=acc, device=X.device)
            for a in range(0, n, rows):
                z = torch.addmm(b, X[a : a + rows], W).to(acc)
                lse[a : a + rows], losses[a : a + rows] = _block_losses(z, y[a : a + rows])
            ctx.save_for_backward(X, W, b, y, lse)
            return losses.to(X.dtype)
        want_X, want_W, want_b = ctx.needs_input_grad[:3]
        grad_X = torch.empty_like(X) if want_X else None
        grad_W = torch.zeros(W.shape, dtype=acc, device=W.device) if want_W else None
        grad_b = torch.zeros(b.shape, dtype=acc, device=b.device) if want_b else None
        total = torch.zeros((), dtype=acc, device=X.device)
        count = (y != IGNORE_INDEX).sum()  # the items: ignored targets are not counted
        share = 1 / count.clamp_min(1).to(acc)  # each valid row's share of the mean
        for a in range(0, n, rows):
            x, labels = X[a : a + rows], y[a : a + rows]
            z = torch.addmm(b, x, W).to(acc)
            lse, losses = _block_losses(z, labels)
            total += losses.sum()
            # dJ/dz = (softmax(z) - onehot(y)) / count for a valid row, 0 for an ignored one,
            # made in place over the block's logits
            g = _block_grad(z, lse, labels, (labels != IGNORE_INDEX).to(acc) * share).to(X.dtype)
            _accumulate(g, x, W, a, grad_X, grad_W, grad_b, acc)
        ctx.save_for_backward(*(t.to(X.dtype) if t is not None else None for t in (grad_X, grad_W, grad_b)))
        return (total / count).to(X.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.reduction == "none":
            return *_backward_per_row(ctx, grad_output), None, None
        grad_X, grad_W, grad_b = ctx.saved_tensors
        scaled = [g * grad_output if g is not None else None for g in (grad_X, grad_W, grad_b)]
        return *scaled, None, None


def _block_losses(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-sum-exp, loss) of each row of a block of logits; the loss 0 for an ignored target."""
    lse = torch.logsumexp(z, dim=1)
    picked = z.gather(1, labels.clamp_min(0)[:, None]).squeeze(1)
    return lse, (lse - picked) * (labels != IGNORE_INDEX)


def _block_grad(z, lse, labels, scale) -> torch.Tensor:
    """(softmax(z) - onehot(y)) * scale per row, in place over z (the block's logits)."""
    g = z.sub_(lse[:, None]).exp_()
    g[torch.arange(len(labels), device=g.device), labels.clamp_min(0)] -= 1
    return g.mul_(scale[:, None])


def _accumulate(g, x, W, a, grad_X, grad_W, grad_b, acc) -> None:
    """A block's dJ/dz into dW and db (summed in `acc`) and dX (its rows)."""
    if grad_W is not None and acc == x.dtype:
        grad_W.addmm_(x.T, g)  # in place: no d x c temporary per block
    elif grad_W is not None:
        grad_W += x.T @ g  # the half-type product, summed across blocks in float32
    if grad_b is not None:
        grad_b += g.sum(0, dtype=acc)
    if grad_X is not None:
        grad_X[a : a + len(g)] = g @ W.T


def _backward_per_row(ctx, grad_output: torch.Tensor):
    """reduction 'none': row i's gradient scaled by grad_output[i], the logits made again block by
    block from the saved log-sum-exp."""
    X, W, b, y, lse = ctx.saved_tensors
    acc, rows = ctx.acc, ctx.rows
    want_X, want_W, want_b = ctx.needs_input_grad[:3]
    grad_X = torch.empty_like(X) if want_X else None
    grad_W = torch.zeros(W.shape, dtype=acc, device=W.device) if want_W else None
    grad_b = torch.zeros(b.shape, dtype=acc, device=b.device) if want_b else None
    for a in range(0, X.shape[0], rows):
        x, labels = X[a : a + rows], y[a : a + rows]
        z = torch.addmm(b, x, W).to(acc)
        scale = grad_output[a : a + rows].to(acc) * (labels != IGNORE_INDEX)
        g = _block_grad(z, lse[a : a + rows], labels, scale).to(X.dtype)
        _accumulate(g, x, W, a, grad_X, grad_W, grad_b, acc)
    return tuple(t.to(X.dtype) if t is not None else None for t in (grad_X, grad_W, grad_b))
