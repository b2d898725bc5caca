"""Multivariate linear regression y_hat = X w + b with MSE."""

import math

from .base import Problem, normal, register_problem


@register_problem
class Linear(Problem):
    """y_hat = X w + b, X of n x d, J = mean((X w + b - y)^2)."""

    name = "linear"
    # the forward reads X once, the gradient twice (X w, then X^T r)
    expected_cost_ratio, expected_cost_ratio_why = 2.0, "linear regression reads X twice"
    sizes = ("n", "d")
    batched = ("X", "y")

    def make(self, gen):
        X = normal(gen, self.n, self.d)
        w_true = normal(gen, self.d) / math.sqrt(self.d)
        y = X @ w_true + 0.1 * normal(gen, self.n)
        params = {"w": normal(gen, self.d) / math.sqrt(self.d), "b": normal(gen, 1)}
        return params, {"X": X, "y": y}

    def output(self, p, data):
        return data["X"] @ p["w"] + p["b"]

    def loss(self, p, data):
        return ((data["X"] @ p["w"] + p["b"] - data["y"]) ** 2).mean()

    # r = X w + b - y;  dJ/dw = 2/N X^T r;  dJ/db = 2/N sum r
    # (2/N is applied to r before the long sum, as autograd does, so float16 does not overflow)
    def manual_grad(self, p, data):
        X = data["X"]
        g = (X @ p["w"] + p["b"] - data["y"]) * (2 / X.shape[0])
        return {"w": X.T @ g, "b": g.sum().reshape(1)}

    def numpy_grad(self, p, data):
        X = data["X"]
        g = (X @ p["w"] + p["b"] - data["y"]) * (2 / X.shape[0])
        return {"w": X.T @ g, "b": g.sum().reshape(1)}

    def min_bytes(self, itemsize):
        return (self.n * self.d + self.n) * itemsize  # one read of X and y
