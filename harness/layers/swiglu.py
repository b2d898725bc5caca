"""SwiGLU, y = silu(x W1) * (x W3), with its Function.

silu(a) = a s(a), s the sigmoid; silu'(a) = s(a) (1 + a (1 - s(a))). The matrix products run in
the inputs' dtype (accumulating in float32, as cuBLAS and the CPU do for half types); the
elementwise gate in float32, as fused kernels do. It saves x, W1, W3 and the two products.
"""

from __future__ import annotations

import torch

from .base import Layer, register_layer
from .rmsnorm import accumulator


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w3):
        a, b = x @ w1, x @ w3
        acc = accumulator(x.dtype)
        y = (torch.nn.functional.silu(a.to(acc)) * b.to(acc)).to(x.dtype)
        ctx.save_for_backward(x, w1, w3, a, b)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w1, w3, a, b = ctx.saved_tensors
        acc = accumulator(x.dtype)
        af, dyf = a.to(acc), dy.to(acc)
        s = torch.sigmoid(af)
        # da = dy b silu'(a), db = dy silu(a)
        da = (dyf * b.to(acc) * s * (1 + af * (1 - s))).to(x.dtype)
        db = (dyf * af * s).to(x.dtype)
        dx = dw1 = dw3 = None
        if ctx.needs_input_grad[0]:
            dx = da @ w1.mT + db @ w3.mT
        x2, da2, db2 = x.reshape(-1, x.shape[-1]), da.reshape(-1, da.shape[-1]), db.reshape(-1, db.shape[-1])
        if ctx.needs_input_grad[1]:
            dw1 = x2.mT @ da2
        if ctx.needs_input_grad[2]:
            dw3 = x2.mT @ db2
        return dx, dw1, dw3


@register_layer
class SwiGLU(Layer):
    """SwiGLU feed-forward gate: x (n, d), W1 and W3 (d, h); y (n, h)."""

    name = "swiglu"
    sizes = ("n", "d", "h")
    rows = ("x",)
    reductions = {"y": "d", "x": "h", "W1": "n", "W3": "n"}

    def make(self, gen):
        x = torch.randn(self.n, self.d, generator=gen, device=gen.device)
        w1 = torch.randn(self.d, self.h, generator=gen, device=gen.device) / self.d**0.5
        w3 = torch.randn(self.d, self.h, generator=gen, device=gen.device) / self.d**0.5
        return {"x": x, "W1": w1, "W3": w3}

    def function(self, x, W1, W3):
        return SwiGLUFunction.apply(x, W1, W3)

    def reference(self, x, W1, W3):
        return torch.nn.functional.silu(x @ W1) * (x @ W3)

    def min_bytes(self, itemsize):
        n, d, h = self.n, self.d, self.h
        # forward: read x, W1, W3, write y; backward: read dy, x, W1, W3, write dx, dW1, dW3
        return (2 * n * d + 4 * d * h + 2 * n * h + 2 * d * h + n * d) * itemsize

    def flops(self):
        n, d, h = self.n, self.d, self.h
        return 2.0 * n * d * h * 2 + 2.0 * n * d * h * 4  # two products forward, four backward
