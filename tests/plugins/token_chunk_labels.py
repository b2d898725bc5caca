"""Planted: a chunked cross-entropy Function that slices each chunk's labels by the chunk's index
where its first row was meant (y[i : i + ROWS] for y[a : a + ROWS]). Right in one chunk."""

import torch

from harness import register_problem
from harness.problems.softmax import IGNORE_INDEX, Softmax

ROWS = 256


class ChunkLabels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, W, b, y):
        count = (y != IGNORE_INDEX).sum()
        total, grad_W, grad_b = 0.0, torch.zeros_like(W), torch.zeros_like(b)
        for i, a in enumerate(range(0, X.shape[0], ROWS)):
            x, labels = X[a : a + ROWS], y[i : i + len(X[a : a + ROWS])]  # the bug: y[a : a + ROWS]
            valid = (labels != IGNORE_INDEX).to(X.dtype)
            z = torch.addmm(b, x, W)
            lse = torch.logsumexp(z, dim=1)
            total = total + ((lse - z.gather(1, labels.clamp_min(0)[:, None]).squeeze(1)) * valid).sum()
            g = torch.softmax(z, dim=1)
            g[torch.arange(len(labels)), labels.clamp_min(0)] -= 1
            g *= valid[:, None] / count
            grad_W += x.T @ g
            grad_b += g.sum(0)
        ctx.save_for_backward(grad_W, grad_b)
        return total / count

    @staticmethod
    def backward(ctx, grad_output):
        grad_W, grad_b = ctx.saved_tensors
        return None, grad_W * grad_output, grad_b * grad_output, None


@register_problem
class SlicesLabelsWrongly(Softmax):
    name = "tok_chunk_labels"

    def function_loss(self, p, data):
        return ChunkLabels.apply(data["X"], p["W"], p["b"], data["y"])
