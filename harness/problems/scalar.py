"""The seed post's 0-d backpropagation: y_hat = w x, loss = (y_hat - y)^2."""

import torch

from .base import Problem, normal, register_problem


@register_problem
class Scalar(Problem):
    """0-d tensors: loss = (w x - y)^2 with respect to w."""

    name = "scalar"
    sizes = ()
    datasets = ("random", "post")

    def make(self, gen):
        if self.data == "post":  # x = 1, y = 2, w = 1
            return {"w": torch.tensor(1.0)}, {"x": torch.tensor(1.0), "y": torch.tensor(2.0)}
        x, y, w = normal(gen, 3)
        return {"w": w}, {"x": x, "y": y}

    def output(self, p, data):
        return p["w"] * data["x"]

    def loss(self, p, data):
        return (p["w"] * data["x"] - data["y"]) ** 2

    # dloss/dw = 2 x (w x - y)
    def manual_grad(self, p, data):
        x = data["x"]
        return {"w": 2 * x * (p["w"] * x - data["y"])}

    def numpy_grad(self, p, data):
        x = data["x"]
        return {"w": 2 * x * (p["w"] * x - data["y"])}
