"""Planted: a cross-entropy Function whose mean counts the ignored targets (divides by every row,
padding included), as a fused kernel did until 2025. Right on data without padding."""

import torch

from harness import register_problem
from harness.problems.softmax import IGNORE_INDEX, Softmax


class MeanCountsIgnored(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, W, b, y):
        count = X.shape[0]  # the bug: (y != IGNORE_INDEX).sum(), the valid targets
        valid = (y != IGNORE_INDEX).to(X.dtype)
        z = torch.addmm(b, X, W)
        lse = torch.logsumexp(z, dim=1)
        loss = ((lse - z.gather(1, y.clamp_min(0)[:, None]).squeeze(1)) * valid).sum() / count
        g = torch.softmax(z, dim=1)
        g[torch.arange(len(y)), y.clamp_min(0)] -= 1
        g *= valid[:, None] / count
        ctx.save_for_backward(X.T @ g, g.sum(0))
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_W, grad_b = ctx.saved_tensors
        return None, grad_W * grad_output, grad_b * grad_output, None


@register_problem
class CountsIgnored(Softmax):
    name = "tok_counts_ignored"

    def function_loss(self, p, data):
        return MeanCountsIgnored.apply(data["X"], p["W"], p["b"], data["y"])
