"""Correct Functions written unusually, which must not raise false alarms: an RMSNorm computing
in float64 whatever it is called in and returning its dx non-contiguous (a transposed result);
SwiGLU in its split form, one weight W = [W1 W3] of d x 2h cut in two inside."""

import torch

from harness import Layer, register_layer
from harness.layers.rmsnorm import EPS, RMSNorm, accumulator


def up(t):
    """float32 for half types, as fused kernels compute; float64 stays float64."""
    return t.to(accumulator(t.dtype))


class RMSNormFloat64Inside(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        xd = x.double()
        rstd = torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + EPS)
        ctx.save_for_backward(x, g, rstd)
        return (xd * rstd * g.double()).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, g, rstd = ctx.saved_tensors
        xhat = x.double() * rstd
        gdy = dy.double() * g.double()
        dx = rstd * (gdy - xhat * (gdy * xhat).mean(-1, keepdim=True))
        dx = dx.mT.contiguous().mT.to(x.dtype) if dx.dim() == 2 else dx.to(x.dtype)  # column-major
        dg = (dy.double() * xhat).reshape(-1, x.shape[-1]).sum(0).to(g.dtype)
        return (dx if ctx.needs_input_grad[0] else None), (dg if ctx.needs_input_grad[1] else None)


@register_layer
class RMSNormFloat64InsideLayer(RMSNorm):
    name = "layer_rmsnorm_float64_inside"

    def function(self, x, g):
        return RMSNormFloat64Inside.apply(x, g)


class SwiGLUSplit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ab = x @ w
        a, b = ab.chunk(2, dim=-1)
        ctx.save_for_backward(x, w, ab)
        return (torch.nn.functional.silu(up(a)) * up(b)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, w, ab = ctx.saved_tensors
        a, b = up(ab).chunk(2, dim=-1)
        s = torch.sigmoid(a)
        dyf = up(dy)
        dab = torch.cat([dyf * b * s * (1 + a * (1 - s)), dyf * a * s], dim=-1).to(x.dtype)
        dx = dab @ w.mT if ctx.needs_input_grad[0] else None
        dw = (
            x.reshape(-1, x.shape[-1]).mT @ dab.reshape(-1, dab.shape[-1])
            if ctx.needs_input_grad[1]
            else None
        )
        return dx, dw


@register_layer
class SwiGLUSplitLayer(Layer):
    """SwiGLU in the split form: x (n, d), W (d, 2h) = [W1 W3]; y (n, h)."""

    name = "layer_swiglu_split"
    sizes = ("n", "d", "h")
    rows = ("x",)
    reductions = {"y": "d", "x": "h", "W": "n"}

    def make(self, gen):
        x = torch.randn(self.n, self.d, generator=gen, device=gen.device)
        return {"x": x, "W": torch.randn(self.d, 2 * self.h, generator=gen, device=gen.device) / self.d**0.5}

    def function(self, x, W):
        return SwiGLUSplit.apply(x, W)

    def reference(self, x, W):
        a, b = (x @ W).chunk(2, dim=-1)
        return torch.nn.functional.silu(a) * b
