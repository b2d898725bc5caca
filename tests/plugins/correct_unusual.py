"""Correct gradients written unusually, and correct gradients near an optimum: none may fail.

Written as a user would write plugins. Each problem subclasses a built-in one: the same data and
loss, a different but correct hand-written gradient, or parameters at (or near) the optimum,
where the gradient is tiny and the terms it sums are not.
"""

import numpy as np
import torch

from harness import register_problem
from harness.problems.linear import Linear
from harness.problems.linear1d import Linear1d
from harness.problems.logistic import Logistic
from harness.problems.mlp import MLP

BLOCK = 1000  # rows per block of the reordered sums


@register_problem
class LinearEinsum(Linear):
    """dJ/dw = 2/N X^T r written with einsum."""

    name = "linear_einsum"

    def manual_grad(self, p, data):
        r = torch.einsum("nd,d->n", data["X"], p["w"]) + p["b"] - data["y"]
        g = r * (2 / r.shape[0])
        return {"w": torch.einsum("nd,n->d", data["X"], g), "b": torch.einsum("n->", g).reshape(1)}

    def numpy_grad(self, p, data):
        r = np.einsum("nd,d->n", data["X"], p["w"]) + p["b"] - data["y"]
        g = r * (2 / r.shape[0])
        return {"w": np.einsum("nd,n->d", data["X"], g), "b": np.einsum("n->", g).reshape(1)}


@register_problem
class LinearReversed(Linear):
    """dJ/dw summed block by block from the last rows to the first, the blocks' partial sums
    accumulated in float32 at least (as torch's own sums are; accumulating a thousand partials
    in bfloat16 loses half the gradient, and is flagged): another summation order."""

    name = "linear_reversed"

    def manual_grad(self, p, data):
        X = data["X"]
        g = (X @ p["w"] + p["b"] - data["y"]) * (2 / X.shape[0])
        acc = torch.promote_types(X.dtype, torch.float32)
        w, b = torch.zeros_like(p["w"], dtype=acc), torch.zeros_like(p["b"], dtype=acc)
        for stop in range(X.shape[0], 0, -BLOCK):
            start = max(0, stop - BLOCK)
            w = w + (X[start:stop].flip(0).T @ g[start:stop].flip(0)).to(acc)
            b = b + g[start:stop].sum().reshape(1).to(acc)
        return {"w": w.to(X.dtype), "b": b.to(X.dtype)}


@register_problem
class MLPEinsum(MLP):
    """The MLP's backpropagation written with einsum, the hidden units' terms first."""

    name = "mlp_einsum"

    def manual_grad(self, p, data):
        X = data["X"]
        z = torch.einsum("nd,dh->nh", X, p["W1"]).add(p["b1"]).tanh()
        g = (torch.einsum("nh,h->n", z, p["W2"]) + p["b2"] - data["y"]) * (2 / X.shape[0])
        da = torch.einsum("n,h,nh->nh", g, p["W2"], 1 - z * z)
        return {
            "W1": torch.einsum("nd,nh->dh", X, da),
            "b1": torch.einsum("nh->h", da),
            "W2": torch.einsum("nh,n->h", z, g),
            "b2": torch.einsum("n->", g).reshape(1),
        }


def _least_squares(A: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.lstsq(A.double(), y.double().unsqueeze(1)).solution.squeeze(1)


@register_problem
class LinearAtOptimum(Linear):
    """w, b at the least-squares solution: the gradient is zero up to rounding, r is not."""

    name = "linear_optimum"

    def make(self, gen):
        params, data = super().make(gen)
        X = data["X"]
        sol = _least_squares(torch.cat([X, torch.ones(X.shape[0], 1)], 1), data["y"])
        return {"w": sol[:-1].float(), "b": sol[-1:].float()}, data


@register_problem
class Linear1dAtOptimum(Linear1d):
    """w = sum(x y) / sum(x^2), where dJ/dw = 0."""

    name = "linear1d_optimum"

    def make(self, gen):
        params, data = super().make(gen)
        x, y = data["x"].double(), data["y"].double()
        return {"w": ((x * y).sum() / (x * x).sum()).reshape(1).float()}, data


@register_problem
class LogisticNearOptimum(Logistic):
    """w, b after Newton's method from zero on the mean cross-entropy (a ridge of 1e-9 keeps
    the Hessian invertible): the gradient is at most 1e-9 |w|, its terms are not. Sizes where
    the classes are separable (n of a few dozen) have no optimum."""

    name = "logistic_optimum"

    def make(self, gen):
        params, data = super().make(gen)
        A = torch.cat([data["X"], torch.ones(data["X"].shape[0], 1)], 1).double()
        y, theta = data["y"].double(), torch.zeros(A.shape[1], dtype=A.dtype)
        for _ in range(30):
            s = torch.sigmoid(A @ theta)
            grad = A.T @ (s - y) / len(y) + 1e-9 * theta
            hess = (A.T * (s * (1 - s))) @ A / len(y) + 1e-9 * torch.eye(len(theta), dtype=A.dtype)
            theta = theta - torch.linalg.solve(hess, grad)
        return {"w": theta[:-1].float(), "b": theta[-1:].float()}, data


@register_problem
class MLPOutputAtOptimum(MLP):
    """W2, b2 at the least-squares fit of y on the hidden layer: their gradients vanish, those
    of W1, b1 do not."""

    name = "mlp_optimum"

    def make(self, gen):
        params, data = super().make(gen)
        z = (data["X"] @ params["W1"] + params["b1"]).tanh()
        sol = _least_squares(torch.cat([z, torch.ones(z.shape[0], 1)], 1), data["y"])
        return {**params, "W2": sol[:-1].float(), "b2": sol[-1:].float()}, data
