"""RMSNorm whose dx takes rstd = 1 / sqrt(mean(x^2) + eps) as a constant: dx = rstd g dy, the
term -rstd xhat mean(g dy xhat) from rstd's own dependence on x dropped. dg is right."""

import torch

from harness import register_layer
from harness.layers.rmsnorm import EPS, RMSNorm, accumulator


def up(t):
    """float32 for half types, as fused kernels compute; float64 stays float64."""
    return t.to(accumulator(t.dtype))


class RMSNormRstdConstant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        rstd = torch.rsqrt(up(x).pow(2).mean(-1, keepdim=True) + EPS)
        ctx.save_for_backward(x, g, rstd)
        return (up(x) * rstd * up(g)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, g, rstd = ctx.saved_tensors
        dyf = up(dy)
        dx = (dyf * up(g) * rstd).to(x.dtype)  # rstd treated as a constant
        dg = (dyf * up(x) * rstd).reshape(-1, x.shape[-1]).sum(0).to(g.dtype)
        return (dx if ctx.needs_input_grad[0] else None), (dg if ctx.needs_input_grad[1] else None)


@register_layer
class RMSNormRstdConstantLayer(RMSNorm):
    name = "layer_rmsnorm_rstd_constant"

    def function(self, x, g):
        return RMSNormRstdConstant.apply(x, g)
