"""The seed post's "dummy example": model_output = (weights * 3).sum()."""

import torch

from .base import Problem, normal, register_problem


@register_problem
class WeightSum(Problem):
    """u = sum(3 w) over n weights: the post's lesson that .grad accumulates until zeroed."""

    name = "weightsum"
    sizes = ("n",)
    datasets = ("random", "post")

    def make(self, gen):
        w = torch.ones(self.n) if self.data == "post" else normal(gen, self.n)
        return {"w": w}, {}

    def output(self, p, data):
        return p["w"] * 3

    def loss(self, p, data):
        return (p["w"] * 3).sum()

    # du/dw_k = 3
    def manual_grad(self, p, data):
        return {"w": torch.full_like(p["w"], 3.0)}

    def numpy_grad(self, p, data):
        return {"w": 0 * p["w"] + 3.0}
