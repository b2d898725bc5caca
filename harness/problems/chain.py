"""The seed post's first graph: y = x + 2, z = 3 y^2, u = mean(z); gradient with respect to x."""

import torch

from .base import Problem, normal, register_problem


@register_problem
class Chain(Problem):
    """u = mean(3 (x + 2)^2) over a vector x of n entries."""

    name = "chain"
    sizes = ("n",)
    datasets = ("random", "post")

    def make(self, gen):
        x = torch.ones(self.n) if self.data == "post" else normal(gen, self.n)
        return {"x": x}, {}

    def output(self, p, data):
        return 3 * (p["x"] + 2) ** 2

    def loss(self, p, data):
        y = p["x"] + 2
        z = y * y * 3
        return z.mean()

    # du/dx_k = (1/n) 6 (x_k + 2) = 2 (x_k + 2) * 3/n; the post's n = 3 gives 2 (x_k + 2)
    def manual_grad(self, p, data):
        return {"x": (p["x"] + 2) * (6 / self.n)}

    def numpy_grad(self, p, data):
        return {"x": (p["x"] + 2) * (6 / self.n)}
