"""The Huber Function of huber.py with the commonest Function bug: a backward that returns its
saved gradient as it is, ignoring grad_output ("the loss is the last node: it is always 1")."""

import sys
from pathlib import Path

from harness import register_problem
from harness.plugins import load_plugin

huber = sys.modules[load_plugin(Path(__file__).with_name("huber.py"))]


class ChunkedHuberNoGradOutput(huber.ChunkedHuber):
    @staticmethod
    def backward(ctx, grad_output):
        grad_w, grad_b = ctx.saved_tensors
        return None, grad_w, grad_b, None


@register_problem
class HuberBroken(huber.Huber):
    """Huber regression whose Function's backward ignores grad_output."""

    name = "huber_broken"

    def function_loss(self, p, data):
        return ChunkedHuberNoGradOutput.apply(data["X"], p["w"], p["b"], data["y"])
