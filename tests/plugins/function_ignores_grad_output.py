"""A Function whose backward ignores its incoming gradient: right when backpropagated alone
(grad_output is 1), k times too large under k micro-batches whose losses are scaled by 1/k."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class IgnoresGradOutput(correct.LinearMSE):
    @staticmethod
    def backward(ctx, grad_output):
        X, _, r = ctx.saved_tensors
        g = r * (2 / X.shape[0])  # grad_output dropped: "it is always 1"
        return None, X.T @ g, g.sum().reshape(1), None


@register_problem
class LinearIgnoresGradOutput(correct.LinearFunction):
    name = "fn_ignores_grad_output"

    def function_loss(self, p, data):
        return IgnoresGradOutput.apply(data["X"], p["w"], p["b"], data["y"])
