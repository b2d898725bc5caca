"""A Function whose backward returns w's gradient as a column, d x 1, for a parameter of d."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class ColumnGradient(correct.LinearMSE):
    @staticmethod
    def backward(ctx, grad_output):
        X, _, r = ctx.saved_tensors
        g = r * (2 / X.shape[0]) * grad_output
        return None, X.T @ g[:, None], g.sum().reshape(1), None


@register_problem
class LinearWrongShape(correct.LinearFunction):
    name = "fn_wrong_shape"

    def function_loss(self, p, data):
        return ColumnGradient.apply(data["X"], p["w"], p["b"], data["y"])
