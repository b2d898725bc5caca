"""Planted: a chunked cross-entropy Function that takes each chunk's mean, then weighs it by the
chunk's share of the valid targets: a chunk with no target (padding alone) is 0/0, and its NaN
reaches the loss and the gradient. Right on data where every chunk has a target."""

import torch

from harness import register_problem
from harness.problems.softmax import IGNORE_INDEX, Softmax

ROWS = 256


class ChunkMeans(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, W, b, y):
        count = (y != IGNORE_INDEX).sum()
        total, grad_W, grad_b = 0.0, torch.zeros_like(W), torch.zeros_like(b)
        for a in range(0, X.shape[0], ROWS):
            x, labels = X[a : a + ROWS], y[a : a + ROWS]
            valid = (labels != IGNORE_INDEX).to(X.dtype)
            share = valid.sum() / count  # the chunk's share of the mean
            z = torch.addmm(b, x, W)
            lse = torch.logsumexp(z, dim=1)
            # the bug: a mean over the chunk's targets, 0/0 for a chunk with none
            mean = ((lse - z.gather(1, labels.clamp_min(0)[:, None]).squeeze(1)) * valid).sum() / valid.sum()
            total = total + share * mean
            g = torch.softmax(z, dim=1)
            g[torch.arange(len(labels)), labels.clamp_min(0)] -= 1
            g *= valid[:, None] / valid.sum() * share
            grad_W += x.T @ g
            grad_b += g.sum(0)
        ctx.save_for_backward(grad_W, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_W, grad_b = ctx.saved_tensors
        return None, grad_W * grad_output, grad_b * grad_output, None


@register_problem
class NanForEmptyChunk(Softmax):
    name = "tok_chunk_nan"

    def function_loss(self, p, data):
        return ChunkMeans.apply(data["X"], p["W"], p["b"], data["y"])
