"""RMSNorm whose backward uses ones for grad_output ("it is always followed by a sum"): right
only for a loss that sums the outputs."""

import torch

from harness import register_layer
from harness.layers.rmsnorm import EPS, RMSNorm, accumulator


def up(t):
    """float32 for half types, as fused kernels compute; float64 stays float64."""
    return t.to(accumulator(t.dtype))


class RMSNormOnes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        rstd = torch.rsqrt(up(x).pow(2).mean(-1, keepdim=True) + EPS)
        ctx.save_for_backward(x, g, rstd)
        return (up(x) * rstd * up(g)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, g, rstd = ctx.saved_tensors
        dyf = up(torch.ones_like(dy))  # grad_output dropped
        xhat = up(x) * rstd
        gdy = dyf * up(g)
        dx = (rstd * (gdy - xhat * (gdy * xhat).mean(-1, keepdim=True))).to(x.dtype)
        dg = (dyf * xhat).reshape(-1, x.shape[-1]).sum(0).to(g.dtype)
        return (dx if ctx.needs_input_grad[0] else None), (dg if ctx.needs_input_grad[1] else None)


@register_layer
class RMSNormOnesLayer(RMSNorm):
    name = "layer_ones_grad_output"

    def function(self, x, g):
        return RMSNormOnes.apply(x, g)
