"""A Function whose backward sums where its forward's mean was meant: dJ/dw = 2 X^T r, not 2/N X^T r.
n times the gradient under full; under k equal micro-batches, each micro-batch's rows times."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class SumForMeanBackward(correct.LinearMSE):
    @staticmethod
    def backward(ctx, grad_output):
        X, w, r = ctx.saved_tensors
        g = 2 * r * grad_output  # the bug: 2 / N * r
        return None, X.T @ g, g.sum().reshape(1), None


@register_problem
class LinearSumForMeanBackward(correct.LinearFunction):
    name = "fn_sum_for_mean"

    def function_loss(self, p, data):
        return SumForMeanBackward.apply(data["X"], p["w"], p["b"], data["y"])
