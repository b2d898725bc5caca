"""RMSNorm whose backward flattens grad_output with `.view(-1, d)`: right whenever grad_output is
contiguous, a RuntimeError when its leading dimensions do not merge (a transposed or permuted
grad_output, as a (B, T, d) activation's gradient often is)."""

import torch

from harness import register_layer
from harness.layers.rmsnorm import EPS, RMSNorm, accumulator


def up(t):
    """float32 for half types, as fused kernels compute; float64 stays float64."""
    return t.to(accumulator(t.dtype))


class RMSNormView(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        d = x.shape[-1]
        x2 = up(x.reshape(-1, d))
        rstd = torch.rsqrt(x2.pow(2).mean(-1, keepdim=True) + EPS)
        ctx.save_for_backward(x, g, rstd)
        return (x2 * rstd * up(g)).to(x.dtype).reshape(x.shape)

    @staticmethod
    def backward(ctx, dy):
        x, g, rstd = ctx.saved_tensors
        d = x.shape[-1]
        dy2 = up(dy.view(-1, d))  # strides assumed: contiguous
        xhat = up(x.reshape(-1, d)) * rstd
        gdy = dy2 * up(g)
        dx = rstd * (gdy - xhat * (gdy * xhat).mean(-1, keepdim=True))
        dg = (dy2 * xhat).sum(0).to(g.dtype)
        dx = dx.to(x.dtype).reshape(x.shape)
        return (dx if ctx.needs_input_grad[0] else None), (dg if ctx.needs_input_grad[1] else None)


@register_layer
class RMSNormViewLayer(RMSNorm):
    name = "layer_view_grad_output"

    def function(self, x, g):
        return RMSNormView.apply(x, g)
