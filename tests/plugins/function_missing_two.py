"""A Function whose backward lost the 2 of d/dr r^2 = 2r, in one parameter only (w)."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class MissingTwoInW(correct.LinearMSE):
    @staticmethod
    def backward(ctx, grad_output):
        X, _, r = ctx.saved_tensors
        g = r * (2 / X.shape[0]) * grad_output
        return None, X.T @ g / 2, g.sum().reshape(1), None


@register_problem
class LinearMissingTwo(correct.LinearFunction):
    name = "fn_missing_two"

    def function_loss(self, p, data):
        return MissingTwoInW.apply(data["X"], p["w"], p["b"], data["y"])
