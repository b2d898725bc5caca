"""The seed post's 1-d linear regression f = w x with MSE (its numpy and autograd gradient descents)."""

import torch

from .base import Problem, normal, register_problem


@register_problem
class Linear1d(Problem):
    """f = w x over n points, J = mean((w x - y)^2)."""

    name = "linear1d"
    # the forward reads X once, the gradient twice (X w, then X^T r)
    expected_cost_ratio, expected_cost_ratio_why = 2.0, "linear regression reads X twice"
    sizes = ("n",)
    batched = ("x", "y")
    datasets = ("random", "post")

    def make(self, gen):
        if self.data == "post":  # X = [1, 2, 3, 4], Y = 2 X, w = 0
            if self.n != 4:
                raise ValueError("linear1d data=post is the post's X = [1, 2, 3, 4]: n must be 4")
            x = torch.tensor([1.0, 2.0, 3.0, 4.0])
            return {"w": torch.zeros(1)}, {"x": x, "y": 2 * x}
        x = normal(gen, self.n)
        y = 2 * x + 0.1 * normal(gen, self.n)
        return {"w": normal(gen, 1)}, {"x": x, "y": y}

    def output(self, p, data):
        return p["w"] * data["x"]

    def loss(self, p, data):
        return ((p["w"] * data["x"] - data["y"]) ** 2).mean()

    # dJ/dw = 1/N sum 2 x (w x - y)
    def manual_grad(self, p, data):
        x = data["x"]
        r = p["w"] * x - data["y"]
        return {"w": (2 * x * r).mean().reshape(1)}

    def numpy_grad(self, p, data):
        x = data["x"]
        return {"w": (2 * x * (p["w"] * x - data["y"])).mean().reshape(1)}

    def min_bytes(self, itemsize):
        return 2 * self.n * itemsize  # read x and y once
