"""A Function whose forward returns the sum of squares where the mean was meant; its backward is
the mean's, right."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

correct = sys.modules[load_plugin(Path(__file__).with_name("function_correct.py"))]


class SumForMeanForward(correct.LinearMSE):
    @staticmethod
    def forward(ctx, X, w, b, y):
        r = X @ w + b - y
        ctx.save_for_backward(X, w, r)
        return (r * r).sum()


@register_problem
class LinearWrongForward(correct.LinearFunction):
    name = "fn_wrong_forward"

    def function_loss(self, p, data):
        return SumForMeanForward.apply(data["X"], p["w"], p["b"], data["y"])
