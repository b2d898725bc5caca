"""Huber regression as a user's plugin, its gradient written twice: by hand in torch
(`manual_grad`) and as a torch.autograd.Function whose forward makes the gradient a chunk of rows
at a time (`function_loss`). The worked example of docs/own-gradient.md."""

import torch
import torch.nn.functional as F

from harness import Problem, register_problem


@register_problem
class Huber(Problem):
    """y_hat = X w + b, J = mean(huber(X w + b - y)), huber(r) = r^2 / 2 within 1, |r| - 1/2 beyond."""

    name = "huber"
    sizes = ("n", "d")
    batched = ("X", "y")

    def make(self, gen):
        def randn(*shape):
            return torch.randn(*shape, generator=gen, device=gen.device)

        X = randn(self.n, self.d)
        outliers = randn(self.n) * (torch.rand(self.n, generator=gen, device=gen.device) < 0.1) * 10
        y = X @ randn(self.d) + 0.1 * randn(self.n) + outliers  # 10% of the targets far off: Huber's case
        return {"w": randn(self.d), "b": randn(1)}, {"X": X, "y": y}

    def output(self, p, data):
        return data["X"] @ p["w"] + p["b"]

    def loss(self, p, data):  # the truth: autograd of this, in float64
        return F.huber_loss(data["X"] @ p["w"] + p["b"], data["y"], delta=1.0)

    # r = X w + b - y;  psi(r) = clamp(r, -1, 1);  dJ/dw = X^T psi(r) / N;  dJ/db = sum psi(r) / N
    def manual_grad(self, p, data):
        X = data["X"]
        psi = (X @ p["w"] + p["b"] - data["y"]).clamp(-1, 1) / X.shape[0]
        return {"w": X.T @ psi, "b": psi.sum().reshape(1)}

    def function_loss(self, p, data):
        return ChunkedHuber.apply(data["X"], p["w"], p["b"], data["y"])


class ChunkedHuber(torch.autograd.Function):
    """The Huber loss with its gradient made in the forward, ROWS rows at a time: only the
    gradient is kept (not the residuals of every row), and backward scales it by grad_output."""

    ROWS = 4096

    @staticmethod
    def forward(ctx, X, w, b, y):
        n = X.shape[0]
        total, grad_w, grad_b = X.new_zeros(()), torch.zeros_like(w), torch.zeros_like(b)
        for a in range(0, n, ChunkedHuber.ROWS):
            x = X[a : a + ChunkedHuber.ROWS]
            r = x @ w + b - y[a : a + ChunkedHuber.ROWS]
            total += torch.where(r.abs() <= 1, r * r / 2, r.abs() - 0.5).sum()
            psi = r.clamp(-1, 1) / n
            grad_w += x.T @ psi
            grad_b += psi.sum()
        ctx.save_for_backward(grad_w, grad_b)
        return total / n

    @staticmethod
    def backward(ctx, grad_output):
        grad_w, grad_b = ctx.saved_tensors
        return None, grad_w * grad_output, grad_b * grad_output, None
