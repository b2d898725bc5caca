"""RMSNorm, y = x / sqrt(mean(x^2) + eps) * g over the last dimension, with its Function.

The Function computes in float32 when called in a half type, as fused kernels do, and saves
what its backward needs: x, g and rstd = 1 / sqrt(mean(x^2) + eps), one number a row.
"""

from __future__ import annotations

import torch

from .base import Layer, register_layer

EPS = 1e-6


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the dtype itself otherwise (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, eps=EPS):
        d = x.shape[-1]
        xf = x.reshape(-1, d).to(accumulator(x.dtype))
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        y = (xf * rstd * g.to(xf.dtype)).to(x.dtype)
        ctx.save_for_backward(x, g, rstd)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x, g, rstd = ctx.saved_tensors
        d = x.shape[-1]
        acc = accumulator(x.dtype)
        xhat = x.reshape(-1, d).to(acc) * rstd
        dy = dy.reshape(-1, d).to(acc)
        gdy = dy * g.to(acc)
        dx = dg = None
        if ctx.needs_input_grad[0]:
            # dx = rstd (g dy - xhat mean(g dy xhat)): rstd depends on x too
            dx = (rstd * (gdy - xhat * (gdy * xhat).mean(-1, keepdim=True))).to(x.dtype).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            dg = (dy * xhat).sum(0).to(g.dtype)  # dg = sum over rows of dy xhat
        return dx, dg, None


@register_layer
class RMSNorm(Layer):
    """RMSNorm over the last dimension: x (n, d), weight g (d,)."""

    name = "rmsnorm"
    sizes = ("n", "d")
    rows = ("x",)
    reductions = {"y": "d", "x": "d", "g": "n"}

    def make(self, gen):
        x = torch.randn(self.n, self.d, generator=gen, device=gen.device)
        g = 1 + 0.5 * torch.randn(self.d, generator=gen, device=gen.device)
        return {"x": x, "g": g}

    def function(self, x, g):
        return RMSNormFunction.apply(x, g, EPS)

    def reference(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * g

    def min_bytes(self, itemsize):
        # read x, write y; read x and dy, write dx (g and dg are d numbers)
        return 5 * self.n * self.d * itemsize

    def flops(self):
        return 12.0 * self.n * self.d
