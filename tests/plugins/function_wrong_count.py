"""A Function whose backward returns three gradients for its four inputs (y's None forgotten)."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class ThreeGradients(correct.LinearMSE):
    @staticmethod
    def backward(ctx, grad_output):
        return correct.LinearMSE.backward(ctx, grad_output)[:3]


@register_problem
class LinearWrongCount(correct.LinearFunction):
    name = "fn_wrong_count"

    def function_loss(self, p, data):
        return ThreeGradients.apply(data["X"], p["w"], p["b"], data["y"])
