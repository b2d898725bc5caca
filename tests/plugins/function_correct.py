"""Correct torch.autograd.Functions, written as users write them: plain, chunked, in the
setup_context style, and two Functions chained through a hidden layer. Every one must agree with
the float64 reference in every pattern and dtype. The planted Function bugs subclass these."""

import torch

from harness import register_problem
from harness.problems.linear import Linear
from harness.problems.mlp import MLP


class LinearMSE(torch.autograd.Function):
    """mean((X w + b - y)^2); backward: dJ/dw = 2/N X^T r, dJ/db = 2/N sum r, dJ/dX = 2/N r w^T,
    each times grad_output."""

    @staticmethod
    def forward(ctx, X, w, b, y):
        r = X @ w + b - y
        ctx.save_for_backward(X, w, r)
        return (r * r).mean()

    @staticmethod
    def backward(ctx, grad_output):
        X, w, r = ctx.saved_tensors
        g = r * (2 / X.shape[0]) * grad_output
        grad_X = g[:, None] * w[None, :] if ctx.needs_input_grad[0] else None
        return grad_X, X.T @ g, g.sum().reshape(1), None


class ChunkedLinearMSE(torch.autograd.Function):
    """The same loss with its gradient made in the forward, 1000 rows at a time, and only the
    gradient kept; backward scales it by grad_output (the chunked-loss technique). Half types
    sum the chunks in float32, as their matmuls do inside."""

    ROWS = 1000

    @classmethod
    def chunks(cls, X, w, b, y, acc: torch.dtype):
        """(loss, grad_w, grad_b) summed chunk by chunk in `acc`."""
        n = X.shape[0]
        total = torch.zeros((), dtype=acc)
        grad_w, grad_b = torch.zeros(w.shape, dtype=acc), torch.zeros(b.shape, dtype=acc)
        for a in range(0, n, cls.ROWS):
            r = X[a : a + cls.ROWS] @ w + b - y[a : a + cls.ROWS]
            total += (r * r).sum(dtype=acc)
            g = r * (2 / n)
            grad_w += X[a : a + cls.ROWS].T @ g
            grad_b += g.sum(dtype=acc)
        return total / n, grad_w, grad_b

    @staticmethod
    def forward(ctx, X, w, b, y):
        half = X.dtype in (torch.float16, torch.bfloat16)
        loss, grad_w, grad_b = ChunkedLinearMSE.chunks(X, w, b, y, torch.float32 if half else X.dtype)
        ctx.save_for_backward(grad_w.to(X.dtype), grad_b.to(X.dtype))
        return loss.to(X.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grad_w, grad_b = ctx.saved_tensors
        return None, grad_w * grad_output, grad_b * grad_output, None


class LinearMSEContext(torch.autograd.Function):
    """The same loss in the setup_context style (what torch.func needs), its backward run once."""

    @staticmethod
    def forward(X, w, b, y):
        r = X @ w + b - y
        return (r * r).mean(), r

    @staticmethod
    def setup_context(ctx, inputs, output):
        X, w, _, _ = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(X, output[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss, _grad_r):
        X, r = ctx.saved_tensors
        g = (2 * grad_loss / X.shape[0]) * r
        return None, X.T @ g, g.sum().reshape(1), None


class TanhLayer(torch.autograd.Function):
    """z = tanh(X W + b); backward: da = grad_z (1 - z^2), dW = X^T da, db = sum_rows da."""

    @staticmethod
    def forward(ctx, X, W, b):
        z = torch.tanh(X @ W + b)
        ctx.save_for_backward(X, W, z)
        return z

    @staticmethod
    def backward(ctx, grad_z):
        X, W, z = ctx.saved_tensors
        da = grad_z * (1 - z * z)
        grad_X = da @ W.T if ctx.needs_input_grad[0] else None
        return grad_X, X.T @ da, da.sum(0)


@register_problem
class LinearFunction(Linear):
    """Linear regression through a plain Function."""

    name = "linear_function"

    def function_loss(self, p, data):
        return LinearMSE.apply(data["X"], p["w"], p["b"], data["y"])


@register_problem
class LinearChunkedFunction(Linear):
    """Linear regression through a Function whose forward makes the gradient, chunk by chunk."""

    name = "linear_chunked_function"

    def function_loss(self, p, data):
        return ChunkedLinearMSE.apply(data["X"], p["w"], p["b"], data["y"])


@register_problem
class LinearContextFunction(Linear):
    """Linear regression through a Function in the setup_context style."""

    name = "linear_context_function"

    def function_loss(self, p, data):
        return LinearMSEContext.apply(data["X"], p["w"], p["b"], data["y"])[0]


@register_problem
class MLPFunctions(MLP):
    """The MLP through two Functions: the grad_output of the loss's Function feeds the layer's."""

    name = "mlp_functions"

    def function_loss(self, p, data):
        z = TanhLayer.apply(data["X"], p["W1"], p["b1"])
        return LinearMSE.apply(z, p["W2"], p["b2"], data["y"])
