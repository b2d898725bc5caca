"""A masked mean squared error, the shape of a token loss: J = sum_i m_i r_i^2 / sum_i m_i, the last
30% of rows padding (m = 0), as a new user writes one. `masked_squares` says what its loss is a
mean over (`items`: the valid rows); `masked_squares_rows` is the same loss without saying so,
so that patterns weight its micro-batches by rows, wrongly for it."""

import torch

from harness import Problem, register_problem
from harness.problems.base import normal

PADDING = 0.3  # the share of rows at the end that are padding


@register_problem
class MaskedSquares(Problem):
    """r = X w + b - y; J = sum_i m_i r_i^2 / sum_i m_i, m_i = 0 on the last 30% of rows."""

    name = "masked_squares"
    sizes = ("n", "d")
    batched = ("X", "y", "m")

    def make(self, gen):
        X, y = normal(gen, self.n, self.d), normal(gen, self.n)
        m = torch.ones(self.n, dtype=torch.bool, device=gen.device)
        m[self.n - int(PADDING * self.n) :] = False
        return {"w": normal(gen, self.d), "b": normal(gen, 1)}, {"X": X, "y": y, "m": m}

    def output(self, p, data):
        return data["X"] @ p["w"] + p["b"]

    def loss(self, p, data):
        r = data["X"] @ p["w"] + p["b"] - data["y"]
        return (data["m"] * r * r).sum() / data["m"].sum()

    def items(self, data):
        return data["m"].sum()

    # dJ/dw = 2 X^T (m r) / sum(m);  dJ/db = 2 sum(m r) / sum(m)
    def manual_grad(self, p, data):
        X, m = data["X"], data["m"]
        g = 2 * m * (X @ p["w"] + p["b"] - data["y"]) / m.sum()
        return {"w": X.T @ g, "b": g.sum().reshape(1)}


@register_problem
class MaskedSquaresByRows(MaskedSquares):
    """The same masked loss, not saying what it is a mean over: patterns weight it by rows."""

    name = "masked_squares_rows"
    items = Problem.items
