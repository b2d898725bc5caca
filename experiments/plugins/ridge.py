"""Ridge regression as a user's plugin: one class, registered by decorator."""

import torch

from harness import Problem, register_problem


@register_problem
class Ridge(Problem):
    """y_hat = X w, J = mean((X w - y)^2) + lam |w|^2, X of n x d."""

    name = "ridge"
    sizes = ("n", "d")  # the grid sizes it takes, from n, d, h
    batched = ("X", "y")  # data whose first axis is the samples (micro-batch patterns split them)
    lam = 0.1

    def make(self, gen):  # (params, data) as float32 tensors; gen is seeded on the cell's device
        def randn(*shape):
            return torch.randn(*shape, generator=gen, device=gen.device)

        X = randn(self.n, self.d)
        y = X @ randn(self.d) + 0.1 * randn(self.n)
        return {"w": randn(self.d)}, {"X": X, "y": y}

    def output(self, p, data):
        return data["X"] @ p["w"]

    def loss(self, p, data):
        return ((data["X"] @ p["w"] - data["y"]) ** 2).mean() + self.lam * (p["w"] ** 2).sum()

    # dJ/dw = 2/N X^T (X w - y) + 2 lam w
    def manual_grad(self, p, data):
        X = data["X"]
        r = (X @ p["w"] - data["y"]) * (2 / X.shape[0])
        return {"w": X.T @ r + 2 * self.lam * p["w"]}

    def min_bytes(self, itemsize):  # optional: the bandwidth floor, one read of X and y
        return (self.n * self.d + self.n) * itemsize
