"""A one-hidden-layer tanh network with MSE, and its backpropagation written out by hand."""

import math

import numpy as np

from .base import Problem, normal, register_problem


@register_problem
class MLP(Problem):
    """y_hat = tanh(X W1 + b1) W2 + b2, hidden width h, J = mean((y_hat - y)^2), X of n x d."""

    name = "mlp"
    sizes = ("n", "d", "h")
    batched = ("X", "y")
    layers = (("W1", "b1"), ("W2", "b2"))

    def make(self, gen):
        X = normal(gen, self.n, self.d)
        # a teacher of the same shape makes the targets; pre-activations stay O(1), so tanh'
        # is neither 1 (linear) nor 0 (saturated) and a wrong derivative shows
        y = _forward(
            X,
            normal(gen, self.d, self.h) / math.sqrt(self.d),
            normal(gen, self.h),
            normal(gen, self.h) / math.sqrt(self.h),
        )
        params = {
            "W1": normal(gen, self.d, self.h) / math.sqrt(self.d),
            "b1": 0.5 * normal(gen, self.h),
            "W2": normal(gen, self.h) / math.sqrt(self.h),
            "b2": normal(gen, 1),
        }
        return params, {"X": X, "y": y}

    def output(self, p, data):
        return _forward(data["X"], p["W1"], p["b1"], p["W2"]) + p["b2"]

    def loss(self, p, data):
        return ((self.output(p, data) - data["y"]) ** 2).mean()

    # a = X W1 + b1, z = tanh(a), r = z W2 + b2 - y
    # dJ/dW2 = z^T (2/N r);  dJ/db2 = sum 2/N r
    # da = (2/N r) W2^T * (1 - z^2)   [tanh'(a) = 1 - tanh(a)^2, at the pre-activation a]
    # dJ/dW1 = X^T da;  dJ/db1 = sum_rows da
    def manual_grad(self, p, data):
        X = data["X"]
        z = (X @ p["W1"] + p["b1"]).tanh()
        g = (z @ p["W2"] + p["b2"] - data["y"]) * (2 / X.shape[0])
        da = g[:, None] * p["W2"][None, :] * (1 - z * z)
        return {"W1": X.T @ da, "b1": da.sum(0), "W2": z.T @ g, "b2": g.sum().reshape(1)}

    def numpy_grad(self, p, data):
        X = data["X"]
        z = np.tanh(X @ p["W1"] + p["b1"])
        g = (z @ p["W2"] + p["b2"] - data["y"]) * (2 / X.shape[0])
        da = g[:, None] * p["W2"][None, :] * (1 - z * z)
        return {"W1": X.T @ da, "b1": da.sum(0), "W2": z.T @ g, "b2": g.sum().reshape(1)}

    def min_bytes(self, itemsize):
        return (self.n * self.d + self.n) * itemsize  # one read of X and y

    def flops(self):
        # X W1 and X^T da (2 n d h each), z W2 and z^T g (2 n h each); tanh and the rest are O(n h)
        return 4 * self.n * self.h * (self.d + 1)


def _forward(X, W1, b1, W2):
    return (X @ W1 + b1).tanh() @ W2
