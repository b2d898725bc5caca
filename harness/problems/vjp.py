"""The seed post's `y.backward(v)`: y = x * 2^11 built by eleven doublings, a vector-Jacobian product."""

import torch

from .base import Problem, normal, register_problem

DOUBLINGS = 11


@register_problem
class VJP(Problem):
    """y = x * 2^11 (eleven doublings); the gradient of v . y is v^T dy/dx = v * 2^11."""

    name = "vjp"
    sizes = ("n",)
    datasets = ("random", "post")

    def make(self, gen):
        if self.data == "post":
            if self.n != 3:
                raise ValueError("vjp data=post is the post's 3-vector: n must be 3")
            return {"x": torch.full((3,), 1.1)}, {"v": torch.tensor([0.1, 1.0, 0.0001])}
        return {"x": normal(gen, self.n)}, {"v": normal(gen, self.n)}

    def output(self, p, data):
        y = p["x"] * 2
        for _ in range(DOUBLINGS - 1):  # the post's loop: y = y * 2, ten times
            y = y * 2
        return y

    # y.backward(v) is the gradient of the scalar v . y
    def loss(self, p, data):
        return (self.output(p, data) * data["v"]).sum()

    # (v^T J)_k = v_k * dy_k/dx_k = v_k * 2^11
    def manual_grad(self, p, data):
        return {"x": data["v"] * 2.0**DOUBLINGS}

    def numpy_grad(self, p, data):
        return {"x": data["v"] * 2.0**DOUBLINGS}
