"""Planted: a reduction='none' Function whose backward reads one grad_output (the first row's) for
every row, as kernels that expect a scalar do. Right when every row's weight is the same."""

import torch

from harness import register_problem
from harness.problems.softmax import ChunkedLinearCrossEntropy, Softmax


class OneGradOutput(ChunkedLinearCrossEntropy):
    @staticmethod
    def backward(ctx, grad_output):
        # the bug: grad_output[0] for every row, where row i's gradient needs grad_output[i]
        return ChunkedLinearCrossEntropy.backward(ctx, grad_output[0].expand_as(grad_output))


@register_problem
class ReadsOneGradOutput(Softmax):
    name = "tok_one_grad_output"
    datasets = (*Softmax.datasets, "uniform")  # weighted, every weight 1

    def make(self, gen):
        if self.data != "uniform":
            return super().make(gen)
        params, data = type(self)(n=self.n, d=self.d, c=self.c, data="weighted").make(gen)
        return params, {**data, "w": torch.ones_like(data["w"])}

    def function_loss(self, p, data):
        per_row = OneGradOutput.apply(data["X"], p["W"], p["b"], data["y"], "none")
        return (data["w"] * per_row).sum() / data["w"].sum()
