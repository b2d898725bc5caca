"""The Huber Function of huber.py with the commonest Function bug: a backward that returns its
saved gradient as it is, ignoring grad_output ("the loss is the last node: it is always 1")."""

import sys

from harness import register_problem
from harness.problems import get_problem

Huber = get_problem("huber")  # registered by huber.py, which a config names first
ChunkedHuber = sys.modules[Huber.__module__].ChunkedHuber


class ChunkedHuberNoGradOutput(ChunkedHuber):
    @staticmethod
    def backward(ctx, grad_output):
        grad_w, grad_b = ctx.saved_tensors
        return None, grad_w, grad_b, None


@register_problem
class HuberBroken(Huber):
    """Huber regression whose Function's backward ignores grad_output."""

    name = "huber_broken"

    def function_loss(self, p, data):
        return ChunkedHuberNoGradOutput.apply(data["X"], p["w"], p["b"], data["y"])
