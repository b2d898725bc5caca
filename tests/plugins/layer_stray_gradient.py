"""SwiGLU whose backward returns every gradient whatever ctx.needs_input_grad says: right
values, but a frozen weight (requires_grad=False) has its gradient computed anyway (two matrix
products of n x d x h for nothing) and handed to autograd, which drops it."""

import torch

from harness import register_layer
from harness.layers.rmsnorm import accumulator
from harness.layers.swiglu import SwiGLU


def up(t):
    """float32 for half types, as fused kernels compute; float64 stays float64."""
    return t.to(accumulator(t.dtype))


class SwiGLUStray(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w3):
        a, b = x @ w1, x @ w3
        ctx.save_for_backward(x, w1, w3, a, b)
        return (torch.nn.functional.silu(up(a)) * up(b)).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, w1, w3, a, b = ctx.saved_tensors
        af = up(a)
        s = torch.sigmoid(af)
        da = (up(dy) * up(b) * s * (1 + af * (1 - s))).to(x.dtype)
        db = (up(dy) * af * s).to(x.dtype)
        return da @ w1.mT + db @ w3.mT, x.mT @ da, x.mT @ db  # needs_input_grad never read


@register_layer
class SwiGLUStrayLayer(SwiGLU):
    name = "layer_stray_gradient"

    def function(self, x, W1, W3):
        return SwiGLUStray.apply(x, W1, W3)
