"""Logistic regression: binary cross-entropy with logits."""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .base import Problem, normal, register_problem, uniform


@register_problem
class Logistic(Problem):
    """p = sigmoid(X w + b), J = mean(BCE(p, y)) with labels y in {0, 1}, X of n x d."""

    name = "logistic"
    sizes = ("n", "d")
    batched = ("X", "y")

    def make(self, gen):
        X = normal(gen, self.n, self.d)
        w_true = 2 * normal(gen, self.d) / math.sqrt(self.d)
        y = (uniform(gen, self.n) < torch.sigmoid(X @ w_true)).float()
        params = {"w": normal(gen, self.d) / math.sqrt(self.d), "b": normal(gen, 1)}
        return params, {"X": X, "y": y}

    def output(self, p, data):
        return data["X"] @ p["w"] + p["b"]

    def loss(self, p, data):
        return F.binary_cross_entropy_with_logits(data["X"] @ p["w"] + p["b"], data["y"])

    # dJ/dz = (sigmoid(z) - y) / N;  dJ/dw = X^T dJ/dz;  dJ/db = sum dJ/dz
    def manual_grad(self, p, data):
        X = data["X"]
        g = (torch.sigmoid(X @ p["w"] + p["b"]) - data["y"]) / X.shape[0]
        return {"w": X.T @ g, "b": g.sum().reshape(1)}

    def numpy_grad(self, p, data):
        X = data["X"]
        z = X @ p["w"] + p["b"]
        with np.errstate(over="ignore"):  # exp(-z) = inf gives sigmoid(z) = 0, its limit
            g = (1 / (1 + np.exp(-z)) - data["y"]) / X.shape[0]
        return {"w": X.T @ g, "b": g.sum().reshape(1)}

    def min_bytes(self, itemsize):
        return (self.n * self.d + self.n) * itemsize  # one read of X and y
