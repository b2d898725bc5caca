"""Softmax regression, the shape of a language model's head: logits X W + b over c classes,
mean cross-entropy against integer labels. Its `function_loss` is a chunked fused linear +
cross-entropy Function, the memory-saving technique of Liger-Kernel's FusedLinearCrossEntropy."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import Problem, normal, register_problem, uniform


@register_problem
class Softmax(Problem):
    """z = X W + b, X of n x d, W of d x c; J = mean cross-entropy of softmax(z) against labels y."""

    name = "softmax"
    sizes = ("n", "d", "c")
    batched = ("X", "y")
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
        return params, {"X": X, "y": torch.cat(labels)}

    def output(self, p, data):
        return torch.addmm(p["b"], data["X"], p["W"])

    def loss(self, p, data):
        return F.cross_entropy(torch.addmm(p["b"], data["X"], p["W"]), data["y"])

    # P = softmax(X W + b), Y = onehot(y);  dJ/dW = X^T (P - Y) / N;  dJ/db = sum_rows (P - Y) / N
    def manual_grad(self, p, data):
        X, y = data["X"], data["y"]
        G = torch.softmax(torch.addmm(p["b"], X, p["W"]), dim=1)
        G[torch.arange(len(y), device=y.device), y] -= 1
        G /= X.shape[0]
        return {"W": X.T @ G, "b": G.sum(0)}

    def numpy_grad(self, p, data):
        X, y = data["X"], data["y"]
        z = X @ p["W"] + p["b"]
        G = np.exp(z - z.max(1, keepdims=True))
        G /= G.sum(1, keepdims=True)
        G[np.arange(len(y)), y] -= 1
        G /= X.shape[0]
        return {"W": X.T @ G, "b": G.sum(0)}

    def function_loss(self, p, data):
        return ChunkedLinearCrossEntropy.apply(data["X"], p["W"], p["b"], data["y"])

    # each sample's gradient is an outer product, x_i r_i^T for W and r_i for b (r_i = p_i - y_i),
    # so sum_i |x_i r_i^T|^2 = sum_i |x_i|^2 |r_i|^2: one pass over the residuals, not n x d x c numbers
    def per_sample_sumsq(self, p, data):
        X, y = data["X"], data["y"]
        R = torch.softmax(torch.addmm(p["b"], X, p["W"]), dim=1)
        R[torch.arange(len(y), device=y.device), y] -= 1
        r2 = (R * R).sum(1)
        return {"W": ((X * X).sum(1) * r2).sum(), "b": r2.sum()}

    def min_bytes(self, itemsize):
        # one read of X, W and b in the cell's dtype, and of the int64 labels
        return (self.n * self.d + self.d * self.c + self.c) * itemsize + 8 * self.n


def block_rows(n: int, d: int, c: int) -> int:
    """Rows per block: a block's logits about as many numbers as X holds (n x d), a power of 2,
    the rule of Liger-Kernel's FusedLinearCrossEntropy: memory near the inputs', and blocks
    few enough that accumulating dW across them stays cheap. At least MIN_BLOCK_ROWS: below,
    the ten or so ops a block costs are the time (8 blocks of 64 rows took 2.5 ms where autograd's
    whole step took 1 ms, n = 512, d = 32, c = 256 on the CPU)."""
    return min(n, max(MIN_BLOCK_ROWS, 2 ** max(0, math.ceil(math.log2(max(1.0, n * d / c))))))


MIN_BLOCK_ROWS = 256


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean cross-entropy(X W + b, y), block of rows by block. The forward computes each block's
    logits, its loss, and its gradients, frees the logits, and keeps only the gradients; the
    n x c probabilities are never whole. `backward` scales them by its incoming gradient."""

    @staticmethod
    def forward(ctx, X, W, b, y):
        n, d = X.shape
        c = W.shape[1]
        # half types accumulate in float32, as their matmuls do inside
        acc = torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else X.dtype
        want_X, want_W, want_b = ctx.needs_input_grad[:3]
        grad_X = torch.empty_like(X) if want_X else None
        grad_W = torch.zeros(W.shape, dtype=acc, device=W.device) if want_W else None
        grad_b = torch.zeros(b.shape, dtype=acc, device=b.device) if want_b else None
        total = torch.zeros((), dtype=acc, device=X.device)
        rows = block_rows(n, d, c)
        for a in range(0, n, rows):
            x, labels = X[a : a + rows], y[a : a + rows]
            z = torch.addmm(b, x, W).to(acc)
            lse = torch.logsumexp(z, dim=1)
            total += (lse - z.gather(1, labels[:, None]).squeeze(1)).sum()
            # dJ/dz = (softmax(z) - onehot(y)) / n, made in place over the block's logits
            g = z.sub_(lse[:, None]).exp_()
            g[torch.arange(len(labels), device=g.device), labels] -= 1
            g = g.mul_(1 / n).to(X.dtype)
            if want_W and acc == X.dtype:
                grad_W.addmm_(x.T, g)  # in place: no d x c temporary per block
            elif want_W:
                grad_W += x.T @ g  # the half-type product, summed across blocks in float32
            if want_b:
                grad_b += g.sum(0, dtype=acc)
            if want_X:
                grad_X[a : a + rows] = g @ W.T
        ctx.save_for_backward(*(t.to(X.dtype) if t is not None else None for t in (grad_X, grad_W, grad_b)))
        return (total / n).to(X.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad_X, grad_W, grad_b = ctx.saved_tensors
        scaled = [g * grad_output if g is not None else None for g in (grad_X, grad_W, grad_b)]
        return *scaled, None
